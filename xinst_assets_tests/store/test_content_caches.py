"""The generation and embedding caches on both backends: a write keeps the entries already cached and adds the
new ones, on the embedded file (key a PRIMARY KEY) as on a DuckLake lakehouse (no constraints: the absent keys
are inserted), and concurrent writers of one lakehouse all get their entries in."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from xinst_assets.embedding import lookup, store as store_vectors
from xinst_assets.embedding.cache import embed_with_cache
from xinst_assets.inference.cache import GenerationCache
from xinst_assets.store import Store


@pytest.fixture(params=["embedded", "lakehouse"])
def any_store(request, tmp_path: Path) -> Store:
    if request.param == "embedded":
        return Store(path=str(tmp_path / "warehouse.duckdb"))
    return request.getfixturevalue("lake_store")


def test_a_generation_cache_write_keeps_cached_outputs_and_adds_only_new_keys(any_store: Store):
    with GenerationCache.from_warehouse(any_store) as cache:
        cache.add("k1", "m", "task", {"text": "first"})
        cache.add("k2", "m", "task", {"text": "second"})
    with GenerationCache.from_warehouse(any_store) as cache:
        cache.add("k1", "m", "task", {"text": "computed again"})  # already cached: kept as it was
        cache.add("k3", "m", "task", {"text": "third"})
    found = GenerationCache.from_warehouse(any_store).lookup(["k1", "k2", "k3", "k4"])
    assert found == {"k1": {"text": "first"}, "k2": {"text": "second"}, "k3": {"text": "third"}}
    with any_store.read() as con:
        assert con.execute("SELECT count(*), count(DISTINCT key) FROM generation_cache").fetchone() == (3, 3)


def test_an_embedding_cache_write_keeps_cached_vectors_and_adds_only_new_keys(any_store: Store):
    backend = any_store.open()
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    backend.transaction(lambda con: store_vectors(con, ["k1", "k2", "k1"], np.vstack([vectors, vectors[:1]]), "m"))
    backend.transaction(lambda con: store_vectors(con, ["k1", "k3"], np.zeros((2, 3), dtype=np.float32), "m"))
    with backend.read() as con:
        found = lookup(con, ["k1", "k2", "k3", "unknown"])
        assert con.execute("SELECT count(*), count(DISTINCT key) FROM embedding_cache").fetchone() == (3, 3)
    assert sorted(found) == ["k1", "k2", "k3"]
    assert np.array_equal(found["k1"], vectors[0]) and np.array_equal(found["k3"], np.zeros(3))


def test_the_embedded_file_keeps_the_cache_key_a_primary_key(tmp_path: Path):
    store = Store(path=str(tmp_path / "warehouse.duckdb"))
    GenerationCache.from_warehouse(store).add("k", "m", "t", "x")  # buffered only
    with GenerationCache.from_warehouse(store) as cache:
        cache.add("k", "m", "t", "x")
    with store.read() as con:
        assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'generation_cache' "
                           "AND constraint_type = 'PRIMARY KEY'").fetchone()[0] == 1


class _Constant:
    """An embedder whose vector for a text is a function of the text (enough for the cache's bookkeeping)."""

    dim = 4

    def fingerprint(self) -> str:
        return "constant:v1"

    def embed(self, texts):
        return np.array([[len(t), t.count("a"), t.count("e"), 1.0] for t in texts], dtype=np.float32)


def test_concurrent_writers_of_one_lakehouse_cache_all_get_their_entries_in(lake_store: Store):
    """Four threads (each its own transactions, as four runs would be) write overlapping keys to both caches at
    once: every key ends cached, with the same output whoever wrote it."""
    backend = lake_store.open()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(n: int) -> None:
        try:
            start.wait()
            texts = [f"text {i}" for i in range(n * 5, n * 5 + 10)]  # neighbours overlap by 5
            embed_with_cache(_Constant(), texts, backend.read, backend.write, chunk=3,
                             transaction=backend.transaction)
            with GenerationCache.from_warehouse(backend, flush_every=4) as cache:
                for text in texts:
                    cache.add(f"g:{text}", "m", "task", {"text": text.upper()})
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    texts = [f"text {i}" for i in range(25)]
    again = embed_with_cache(_Constant(), texts, backend.read, None)
    assert (again.hits, again.misses) == (25, 0)
    assert np.array_equal(again.matrix, _Constant().embed(texts))
    found = GenerationCache.from_warehouse(backend).lookup([f"g:{t}" for t in texts])
    assert found == {f"g:{t}": {"text": t.upper()} for t in texts}
