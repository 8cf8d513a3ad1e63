import numpy as np
import pytest

from xinst_assets.embedding import cache_key, embed_with_cache, lookup, store
from xinst_assets.resources.warehouse import Warehouse

TEXTS = [
    "Write a news article about the floods in Kenya.",
    "Summarize the main points of the speech.",
    "Explain how vaccines work.",
    "Write a news article about the floods in Kenya.",  # repeated: embedded once
]


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(path=str(tmp_path / "warehouse.duckdb"))


def test_the_second_call_is_served_from_the_cache(minilm, warehouse):
    first = embed_with_cache(minilm, TEXTS, warehouse.read, warehouse.write)
    assert (first.hits, first.misses) == (0, 3)
    again = embed_with_cache(minilm, TEXTS, warehouse.read, warehouse.write)
    assert (again.hits, again.misses) == (3, 0)
    assert np.array_equal(first.matrix, again.matrix)
    assert np.allclose(first.matrix, minilm.embed(TEXTS), atol=1e-6)
    with warehouse.read() as con:
        assert con.execute("SELECT count(*), min(dim), min(model) FROM embedding_cache").fetchone() == (
            3,
            384,
            minilm.fingerprint(),
        )


def test_only_new_texts_are_embedded_and_stored_in_chunks(minilm, warehouse):
    embed_with_cache(minilm, TEXTS[:2], warehouse.read, warehouse.write)
    chunks: list[int] = []
    result = embed_with_cache(minilm, TEXTS, warehouse.read, warehouse.write, chunk=1, on_chunk=chunks.append)
    assert (result.hits, result.misses) == (2, 1)
    assert chunks == [1]


def test_lookup_finds_stored_vectors_in_one_batch_and_skips_unknown_keys(warehouse):
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    with warehouse.write() as con:
        assert store(con, ["k1", "k2", "k1"], np.vstack([vectors, vectors[:1]]), "test-model") == 2
        store(con, ["k1"], np.zeros((1, 3), dtype=np.float32), "test-model")  # an existing key is kept
    with warehouse.read() as con:
        found = lookup(con, ["k2", "unknown", "k1"])
    assert sorted(found) == ["k1", "k2"]
    assert np.array_equal(found["k1"], vectors[0]) and np.array_equal(found["k2"], vectors[1])


def test_a_warehouse_without_the_table_is_an_empty_cache(warehouse):
    with warehouse.read() as con:
        assert lookup(con, ["anything"]) == {}


def test_the_key_depends_on_the_embedder_and_the_exact_text():
    assert cache_key("st:a", "Write a poem.") != cache_key("st:b", "Write a poem.")
    assert cache_key("st:a", "Write a poem.") != cache_key("st:a", "Write a poem")
    assert cache_key("st:a", "Write a poem.") == cache_key("st:a", "Write a poem.")


def test_without_connections_nothing_is_cached(minilm):
    result = embed_with_cache(minilm, TEXTS, None, None)
    assert (result.hits, result.misses) == (0, 3) and result.matrix.shape == (4, 384)


def test_store_rejects_misaligned_vectors(warehouse):
    with warehouse.write() as con, pytest.raises(ValueError, match="2 keys"):
        store(con, ["a", "b"], np.zeros((3, 4), dtype=np.float32), "m")
