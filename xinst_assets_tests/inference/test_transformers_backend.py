"""The transformers backend generates and scores with a real (tiny) model, batched with left padding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from xinst_assets.core.prompts import JUDGE_CHOICES, DecodingParams, greedy, judge_prompt
from xinst_assets.inference.base import InferenceBackend, InferenceError, ModelSpec
from xinst_assets.inference.transformers_backend import TransformersBackend
from xinst_assets_tests.inference.conftest import PAIRS, PROMPTS


def test_the_backend_keeps_the_inference_contract(backend: TransformersBackend) -> None:
    assert isinstance(backend, InferenceBackend)
    assert backend.fingerprint().startswith("transformers:local:tiny:") and backend.fingerprint().endswith(":float32")
    assert backend.tokenizer.padding_side == "left"


def test_greedy_output_is_the_same_alone_and_batched_with_longer_prompts(backend: TransformersBackend) -> None:
    batched = backend.generate(PROMPTS, greedy(12))
    alone = [backend.generate([p], greedy(12))[0] for p in PROMPTS]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [g.prompt_tokens for g in batched] == [len(backend.tokenizer(p)["input_ids"]) for p in PROMPTS]


def test_a_token_budget_per_batch_gives_the_same_outputs_in_input_order(tiny_model_dir: Path) -> None:
    budgeted = TransformersBackend(ModelSpec(str(tiny_model_dir), device="cpu"), batch_size=8, max_batch_tokens=64, num_threads=1)
    plain = TransformersBackend(ModelSpec(str(tiny_model_dir), device="cpu"), batch_size=1, num_threads=1)
    assert [g.text for g in budgeted.generate(PROMPTS, greedy(6))] == [g.text for g in plain.generate(PROMPTS, greedy(6))]


def test_seeded_sampling_repeats_and_another_seed_samples_differently(backend: TransformersBackend) -> None:
    params = DecodingParams(max_new_tokens=16, seed=7)
    first = [g.text for g in backend.generate(PROMPTS, params)]
    assert [g.text for g in backend.generate(PROMPTS, params)] == first
    assert [g.text for g in backend.generate(PROMPTS, DecodingParams(max_new_tokens=16, seed=8))] != first


def test_endless_output_stops_at_max_new_tokens_with_finish_reason_length(backend: TransformersBackend) -> None:
    [generation] = backend.generate(["Pasar"], DecodingParams(max_new_tokens=5, no_repeat_ngram_size=None))
    assert generation.finish_reason == "length"
    assert generation.completion_tokens == 5


def test_a_model_that_ends_at_once_gives_an_empty_text_with_finish_reason_stop(
    backend: TransformersBackend, tiny_model_dir: Path, tmp_path: Path
) -> None:
    first_token = backend.top_logprobs(["Pasar"], 1)[0][0][0]
    copy = Path(shutil.copytree(tiny_model_dir, tmp_path / "ends-at-once"))
    config_path = copy / "generation_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token_id"] = [backend.tokenizer.eos_token_id, first_token]  # its greedy first token ends it
    config_path.write_text(json.dumps(config))
    [generation] = TransformersBackend(ModelSpec(str(copy), device="cpu"), num_threads=1).generate(["Pasar"], greedy(8))
    assert (generation.text, generation.finish_reason, generation.completion_tokens) == ("", "stop", 1)


def test_a_stop_string_ends_the_text_before_it(backend: TransformersBackend) -> None:
    [free] = backend.generate(["Hujan"], greedy(12))
    stop = free.text[3:5]
    assert stop.strip(), "the tiny model's greedy text should have visible characters to stop on"
    [stopped] = backend.generate(["Hujan"], greedy(12, stop=(stop,)))
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.find(stop)]


def test_no_repeat_ngram_size_reaches_generation_and_breaks_loops(backend: TransformersBackend) -> None:
    [looping] = backend.generate(["Hujan"], greedy(24))
    assert looping.text == "an" * 24  # this random tiny model loops on one token
    [blocked] = backend.generate(["Hujan"], DecodingParams(do_sample=False, no_repeat_ngram_size=1, max_new_tokens=24))
    assert "anan" not in blocked.text  # no token twice


def test_choice_probabilities_sum_to_one_and_are_deterministic(backend: TransformersBackend) -> None:
    prompts = [judge_prompt(i, r, "Indonesian") for i, r in PAIRS]
    first = backend.choice_logprobs(prompts, list(JUDGE_CHOICES))
    assert all(set(d) == {"1", "2", "3"} and sum(d.values()) == pytest.approx(1.0, abs=1e-9) for d in first)
    assert backend.choice_logprobs(prompts, list(JUDGE_CHOICES)) == first


def test_choice_probabilities_are_the_same_alone_and_left_padded_in_a_batch(backend: TransformersBackend) -> None:
    prompts = [judge_prompt(i, r, "Indonesian") for i, r in PAIRS] + ["1 2 3\n"]
    batched = backend.choice_logprobs(prompts, list(JUDGE_CHOICES))
    for prompt, dist in zip(prompts, batched):
        [single] = backend.choice_logprobs([prompt], list(JUDGE_CHOICES))
        assert single == pytest.approx(dist, abs=1e-5)


def test_sequence_logprobs_do_not_depend_on_batching(backend: TransformersBackend) -> None:
    prompts, continuations = ["Pasar pagi", "Tubuh kita membutuhkan air untuk"], [" selalu ramai", " mengatur"]
    batched = backend.sequence_logprobs(prompts, continuations)
    alone = [backend.sequence_logprobs([p], [c])[0] for p, c in zip(prompts, continuations)]
    assert batched == pytest.approx(alone, abs=1e-4)
    assert all(v < 0 for v in batched)


def test_a_prompt_longer_than_the_context_is_refused_with_its_index(backend: TransformersBackend) -> None:
    too_long = "Pasar pagi di desa kami selalu ramai. " * 400
    with pytest.raises(InferenceError, match=r"prompt #1 has \d+ tokens"):
        backend.generate(["Pasar", too_long], greedy(4))


def test_a_single_string_instead_of_a_list_is_refused(backend: TransformersBackend) -> None:
    with pytest.raises(TypeError, match="list of prompts"):
        backend.generate("Pasar", greedy(4))  # type: ignore[arg-type]
    assert backend.generate([], greedy(4)) == []
