"""The vLLM backend up to vLLM's boundary: engine and sampling arguments, reading its outputs, clear errors.

vLLM cannot run on these machines; its output objects are stood in for by plain namespaces with the same
attribute names (``RequestOutput.outputs[0].text`` ...), which is what the mapping functions read.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from xinst_assets.core.prompts import DecodingParams, greedy
from xinst_assets.inference.base import (
    BackendUnavailableError,
    InferenceError,
    ModelNotFoundError,
    ModelSpec,
    normalise_choice_logprobs,
)
from xinst_assets.inference.vllm_backend import (
    VLLMBackend,
    VLLMConfig,
    choice_sampling_kwargs,
    engine_kwargs,
    exact_choice_sampling_kwargs,
    generation_from_output,
    last_prompt_logprob,
    sampling_kwargs,
    top_logprobs_from_output,
)

VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None


def test_engine_arguments_pass_through_and_unset_ones_are_left_to_vllm(tiny_model_dir: Path) -> None:
    spec = ModelSpec(str(tiny_model_dir), revision="abc123", dtype="bfloat16")
    kwargs = engine_kwargs(spec, VLLMConfig(tensor_parallel_size=2, gpu_memory_utilization=0.8, max_model_len=4096,
                                            engine_args={"quantization": "awq"}))
    assert kwargs == {
        "model": str(tiny_model_dir.resolve()), "trust_remote_code": False, "dtype": "bfloat16",
        "tensor_parallel_size": 2, "gpu_memory_utilization": 0.8, "enforce_eager": False, "seed": 0,
        "max_logprobs": 20, "revision": "abc123", "tokenizer_revision": "abc123", "max_model_len": 4096,
        "quantization": "awq",
    }
    plain = engine_kwargs(ModelSpec("owner/model"), VLLMConfig())
    assert "max_model_len" not in plain and "data_parallel_size" not in plain and "revision" not in plain
    assert engine_kwargs(ModelSpec("owner/model"), VLLMConfig(data_parallel_size=4))["data_parallel_size"] == 4


def test_engine_args_may_not_shadow_named_settings() -> None:
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        engine_kwargs(ModelSpec("owner/model"), VLLMConfig(engine_args={"tensor_parallel_size": 8}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"tensor_parallel_size": 0}, "tensor_parallel_size"), ({"gpu_memory_utilization": 1.5}, "gpu_memory"),
     ({"max_model_len": 0}, "max_model_len"), ({"no_repeat_ngram": "ignore"}, "no_repeat_ngram")],
)
def test_bad_engine_settings_are_rejected_with_the_field_named(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        VLLMConfig(**kwargs)


def test_released_decoding_maps_to_sampling_params_and_the_ngram_rule_is_dropped_with_a_warning() -> None:
    kwargs, warnings = sampling_kwargs(DecodingParams(max_new_tokens=128, stop=("###",)))
    assert kwargs == {"n": 1, "max_tokens": 128, "skip_special_tokens": True, "temperature": 0.7, "top_p": 0.9,
                      "top_k": 50, "seed": 0, "stop": ["###"]}
    assert len(warnings) == 1 and "no_repeat_ngram_size=6 is not supported by vLLM" in warnings[0]


def test_greedy_decoding_is_temperature_zero_without_top_k_or_seed() -> None:
    kwargs, warnings = sampling_kwargs(greedy(16))
    assert kwargs == {"n": 1, "max_tokens": 16, "skip_special_tokens": True, "temperature": 0.0, "top_p": 1.0,
                      "top_k": -1}
    assert warnings == []
    assert sampling_kwargs(DecodingParams(top_k=None, no_repeat_ngram_size=None))[0]["top_k"] == -1


def test_the_ngram_rule_can_be_made_an_error() -> None:
    with pytest.raises(InferenceError, match="not supported by vLLM"):
        sampling_kwargs(DecodingParams(), no_repeat_ngram="error")


def _request_output(text: str, finish: str, prompt_ids: list[int], token_ids: list[int], logprobs=None,
                    prompt_logprobs=None) -> SimpleNamespace:
    completion = SimpleNamespace(text=text, finish_reason=finish, token_ids=token_ids, logprobs=logprobs)
    return SimpleNamespace(outputs=[completion], prompt_token_ids=prompt_ids, prompt_logprobs=prompt_logprobs)


def test_request_outputs_become_generations() -> None:
    cut = generation_from_output(_request_output("ulang ulang", "length", [1, 2, 3], [7, 8, 9, 10]))
    assert (cut.text, cut.finish_reason, cut.prompt_tokens, cut.completion_tokens) == ("ulang ulang", "length", 3, 4)
    stopped = generation_from_output(_request_output("Hujan\n###", "stop", [1], [5, 6]), stop=("###",))
    assert (stopped.text, stopped.finish_reason) == ("Hujan\n", "stop")


def test_choice_distributions_are_read_from_the_top_logprobs_by_token_id() -> None:
    Logprob = lambda v: SimpleNamespace(logprob=v)
    top = {20: Logprob(math.log(0.3)), 303: Logprob(math.log(0.1)), 21: Logprob(math.log(0.4)), 5: Logprob(-0.1)}
    output = _request_output("2", "length", [1, 2], [21], logprobs=[top])
    found = top_logprobs_from_output(output)
    dist, missing = normalise_choice_logprobs(found, {"1": (20, 303), "2": (21,), "3": (22,)})
    assert missing == ["3"] and dist == pytest.approx({"1": 0.5, "2": 0.5, "3": 0.0})
    assert choice_sampling_kwargs(20) == {"n": 1, "max_tokens": 1, "temperature": 0.0, "logprobs": 20}


def test_the_exact_pass_reads_the_logprob_of_the_last_prompt_token() -> None:
    Logprob = lambda v: SimpleNamespace(logprob=v)
    output = _request_output("", "length", [1, 2, 22], [0], prompt_logprobs=[None, {2: Logprob(-1.0)},
                                                                             {22: Logprob(-3.5), 9: Logprob(-0.2)}])
    assert last_prompt_logprob(output) == -3.5
    assert exact_choice_sampling_kwargs()["prompt_logprobs"] == 0
    with pytest.raises(InferenceError, match="no prompt log-probability"):
        last_prompt_logprob(_request_output("", "length", [1, 23], [0], prompt_logprobs=[None, {2: Logprob(-1.0)}]))


def test_a_missing_model_is_reported_before_vllm_is_even_imported(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="Model folder not found"):
        VLLMBackend(ModelSpec(str(tmp_path / "absent")))


@pytest.mark.skipif(VLLM_INSTALLED, reason="vLLM is installed here")
def test_without_vllm_installed_the_backend_says_how_to_get_it(tiny_model_dir: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"pip install xinst\[vllm\]"):
        VLLMBackend(ModelSpec(str(tiny_model_dir)))
