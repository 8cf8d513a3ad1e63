"""Model specs fail early and clearly; fingerprints follow the checkpoint; choice tokens are picked robustly."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest

from xinst_assets.inference.base import (
    InferenceError,
    ModelNotFoundError,
    ModelSpec,
    choice_token_variants,
    choice_variant_table,
    normalise_choice_logprobs,
    truncate_at_stop,
)
from xinst_assets.inference.transformers_backend import TransformersBackend


def test_a_missing_model_folder_fails_before_any_work_with_the_path_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError, match=f"Model folder not found: {missing}"):
        ModelSpec(str(missing)).validate()


def test_building_a_backend_on_a_missing_path_raises_before_loading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    loads: list[str] = []
    for name in ("AutoTokenizer", "AutoModelForCausalLM"):  # record any load instead of timing the call
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained",
                            lambda *args, _name=name, **kwargs: loads.append(_name))
    with pytest.raises(ModelNotFoundError, match="Model folder not found"):
        TransformersBackend(ModelSpec(str(tmp_path / "absent")))
    assert loads == []


def test_a_folder_without_config_json_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        ModelSpec(str(tmp_path / "weights")).validate()


def test_a_hub_id_not_in_the_local_cache_fails_offline_with_the_download_command() -> None:
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache") as info:
        ModelSpec("xinst-tests/no-such-model-anywhere").validate()
    assert "huggingface-cli download xinst-tests/no-such-model-anywhere" in str(info.value)


def test_a_hub_id_in_the_local_cache_validates_and_is_fingerprinted_by_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--owner--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    spec = ModelSpec("owner/tiny").validate()
    assert spec.fingerprint() == f"hub:owner/tiny@{commit}"
    assert not spec.is_local


def test_a_spec_with_an_unknown_dtype_is_rejected() -> None:
    with pytest.raises(ValueError, match="dtype"):
        ModelSpec("some/model", dtype="int3")


def test_a_local_fingerprint_is_stable_and_changes_with_config_or_rewritten_weights(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_model_dir, tmp_path / "copy"))
    spec = ModelSpec(str(copy))
    first = spec.fingerprint()
    assert spec.fingerprint() == first and first.startswith("local:copy:")
    weights = next(copy.glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # rewritten in place, same size
    second = spec.fingerprint()
    assert second != first
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("}", ', "note": 1}', 1))
    assert spec.fingerprint() != second


def test_choice_tokens_include_the_plain_and_the_space_prefixed_spelling(backend: TransformersBackend) -> None:
    tokenizer = backend.tokenizer
    ids = choice_token_variants(tokenizer, "1", context="(1, 2 or 3):\n")
    assert [tokenizer.decode([i]) for i in ids] == ["1", " 1"]


def test_a_choice_that_is_not_one_token_is_refused(backend: TransformersBackend) -> None:
    with pytest.raises(InferenceError, match="not a single token"):
        choice_token_variants(backend.tokenizer, "pencernaan sayur ikan", context="\n")


def test_choices_must_be_distinct(backend: TransformersBackend) -> None:
    with pytest.raises(ValueError, match="distinct"):
        choice_variant_table(backend.tokenizer, ["1", "1"])


def test_choice_probabilities_sum_the_spellings_and_renormalise_over_the_choices() -> None:
    logprobs = {10: math.log(0.2), 11: math.log(0.1), 20: math.log(0.1), 99: math.log(0.6)}
    dist, missing = normalise_choice_logprobs(logprobs, {"1": (10, 11), "2": (20,), "3": (30,)})
    assert missing == ["3"]
    assert dist == pytest.approx({"1": 0.75, "2": 0.25, "3": 0.0})
    assert normalise_choice_logprobs({99: 0.0}, {"1": (10,)}) == ({}, ["1"])


def test_text_is_cut_before_the_earliest_stop_string() -> None:
    assert truncate_at_stop("an answer\n###\nmore", ["\n\n", "###"]) == ("an answer\n", True)
    assert truncate_at_stop("no stop here", ["###"]) == ("no stop here", False)


def test_choice_tokens_are_found_for_a_sentencepiece_style_tokenizer() -> None:
    """SentencePiece-style vocabularies (Llama 2, Gemma) spell a lone "1" as "▁1" and "1" after a newline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    raw.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], show_progress=False)
    raw.train_from_iterator(["Rating 1 2 3 the answer is 1 and 2 or 3 .\n rating: 3\n"] * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    table = choice_variant_table(tokenizer, ["1", "2", "3"], context=":\n")
    for choice, ids in table.items():
        assert tokenizer.convert_ids_to_tokens(list(ids)) == [choice, "▁" + choice]
