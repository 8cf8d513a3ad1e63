import numpy as np
import pytest

from xinst_assets.embedding import Embedder, EmbedderError, SentenceTransformerEmbedder, default_model_path


def test_the_default_embedder_is_minilm_from_the_wheel_and_gives_unit_float32_rows(minilm):
    assert isinstance(minilm, Embedder)
    assert minilm.model_name == default_model_path()
    vectors = minilm.embed(["Write a news article about the floods.", "Summarize the report.", ""])
    assert vectors.shape == (3, 384) and minilm.dim == 384
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_similar_instructions_are_closer_than_unrelated_ones(minilm):
    a, b, c = minilm.embed(
        [
            "Write a news article about the floods in Kenya.",
            "Write a report on flooding in Kenya.",
            "Create a recipe for banana bread.",
        ]
    )
    assert a @ b > 0.7 > 0.3 > a @ c


def test_the_fingerprint_is_stable_and_names_the_model_contents(minilm):
    fingerprint = minilm.fingerprint()
    assert fingerprint == minilm.fingerprint()
    assert fingerprint.startswith("st:model:") and fingerprint.endswith(":len256:dim384")
    assert default_model_path() not in fingerprint  # no machine path: the cache is valid across machines


def test_an_empty_list_gives_an_empty_matrix(minilm):
    assert minilm.embed([]).shape == (0, 384)


def test_one_string_instead_of_a_list_is_rejected(minilm):
    with pytest.raises(TypeError, match="list of texts"):
        minilm.embed("Write a poem.")


def test_a_missing_model_folder_fails_early_with_its_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(EmbedderError, match="folder not found: .*no-such-model"):
        SentenceTransformerEmbedder(missing)


def test_a_hub_id_that_is_not_cached_fails_without_downloading(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EmbedderError, match="not in the local Hugging Face cache"):
        SentenceTransformerEmbedder("xinst-test/not-a-model")
