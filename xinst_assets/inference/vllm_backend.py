"""vLLM's offline engine (``vllm.LLM``) as a backend: GPUs, continuous batching, tensor parallelism.

vLLM is an optional dependency (``pip install xinst[vllm]``) and is imported only when a backend is built, so
the rest of xinst works without it; a missing vLLM raises :class:`BackendUnavailableError` saying how to get it.
Everything that can be checked without a GPU is a pure function here (engine arguments, sampling parameters,
reading vLLM's outputs) and is unit-tested; the engine calls themselves are thin.

Decoding differences from :class:`~xinst_assets.inference.transformers_backend.TransformersBackend`:

* **no_repeat_ngram_size**: vLLM has no such sampling parameter, and its logits-processor API differs between
  releases (per-request callables in the V0 engine, engine-level classes in V1), so xinst does not emulate it.
  With ``no_repeat_ngram="warn"`` (default) the rule is dropped with one warning per backend; with ``"error"``
  a request that asks for it fails. The cache key still records the parameters and the backend name, so
  outputs of the two backends never mix.
* **seed**: vLLM seeds each request, so a prompt's sample does not depend on what else is in the batch.

Choice scoring asks for one token with ``logprobs=k`` (the top-k of the raw next-token distribution) and reads
the choice tokens from it. A prompt whose choices are not all in the top-k is scored exactly in a second pass:
the prompt plus each choice token is sent with ``prompt_logprobs=0``, which returns the log-probability of that
last token. Guided (structured-output) choice decoding is available as :meth:`VLLMBackend.guided_choice` when
only the chosen answer is needed. With ``chat=True`` prompts are laid out by the model's chat template and sent
as token ids (so vLLM adds no second BOS to what the template wrote).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from xinst_assets.core.prompts import DecodingParams
from xinst_assets.inference.base import (
    BackendUnavailableError,
    Generation,
    InferenceError,
    ModelSpec,
    check_prompts,
    choice_variant_table,
    normalise_choice_logprobs,
    truncate_at_stop,
)
from xinst_assets.inference.chat import chat_prompt

_log = logging.getLogger("xinst.inference")

# vLLM's default --max-logprobs is 20: the most top-k entries a request may ask for without raising it.
DEFAULT_CHOICE_TOP_LOGPROBS = 20
_CHOICE_CONTEXT_CHARS = 16


@dataclass(frozen=True)
class VLLMConfig:
    """Engine settings passed through to ``vllm.LLM``; ``None`` leaves vLLM's own default.

    ``gpu_memory_utilization`` 0.9 is vLLM's default share of GPU memory for weights + KV cache.
    ``data_parallel_size`` > 1 needs vLLM's data-parallel launch (one process per replica); running several
    language partitions at once, one GPU each, is the simpler way to use many GPUs with xinst.
    ``engine_args`` is passed as it is (for settings not named here, e.g. ``quantization``).
    """

    tensor_parallel_size: int = 1
    data_parallel_size: int | None = None
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    enforce_eager: bool = False
    enable_prefix_caching: bool | None = None
    seed: int = 0
    choice_top_logprobs: int = DEFAULT_CHOICE_TOP_LOGPROBS
    no_repeat_ngram: Literal["warn", "error"] = "warn"
    engine_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if self.data_parallel_size is not None and self.data_parallel_size < 1:
            raise ValueError(f"data_parallel_size must be >= 1 or None, got {self.data_parallel_size}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"max_model_len must be positive or None, got {self.max_model_len}")
        if self.choice_top_logprobs < 1:
            raise ValueError(f"choice_top_logprobs must be >= 1, got {self.choice_top_logprobs}")
        if self.no_repeat_ngram not in ("warn", "error"):
            raise ValueError(f"no_repeat_ngram must be 'warn' or 'error', got {self.no_repeat_ngram!r}")


# --- pure mapping functions (unit-tested without vLLM) ---------------------------------------------------------


def engine_kwargs(spec: ModelSpec, config: VLLMConfig) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM(...)``.

    ``dtype`` "auto" lets vLLM use the checkpoint's dtype (bfloat16 for current models); ``device`` is not
    passed (vLLM runs on the GPUs it sees). ``max_logprobs`` is raised to the top-k the choice scoring asks for.
    """
    kwargs: dict[str, Any] = {
        "model": spec.load_path(),
        "trust_remote_code": spec.trust_remote_code,
        "dtype": spec.dtype,
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "enforce_eager": config.enforce_eager,
        "seed": config.seed,
        "max_logprobs": max(DEFAULT_CHOICE_TOP_LOGPROBS, config.choice_top_logprobs),
    }
    if spec.revision is not None:
        kwargs["revision"] = spec.revision
        kwargs["tokenizer_revision"] = spec.revision
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    if config.enable_prefix_caching is not None:
        kwargs["enable_prefix_caching"] = config.enable_prefix_caching
    if config.data_parallel_size is not None and config.data_parallel_size > 1:
        kwargs["data_parallel_size"] = config.data_parallel_size
    overlap = set(config.engine_args) & set(kwargs)
    if overlap:
        raise ValueError(f"engine_args repeats settings that have their own field: {sorted(overlap)}")
    kwargs.update(config.engine_args)
    return kwargs


def sampling_kwargs(params: DecodingParams, no_repeat_ngram: str = "warn") -> tuple[dict[str, Any], list[str]]:
    """Keyword arguments for ``vllm.SamplingParams`` and the warnings about what could not be mapped.

    Greedy decoding is temperature 0 (vLLM's convention). ``top_k=None`` is -1 (off). The per-request seed is
    set only when sampling. ``no_repeat_ngram_size`` has no vLLM counterpart: dropped with a warning, or an
    error when ``no_repeat_ngram="error"``.
    """
    warnings: list[str] = []
    kwargs: dict[str, Any] = {"n": 1, "max_tokens": params.max_new_tokens, "skip_special_tokens": True}
    if params.do_sample:
        kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or -1)
        if params.seed is not None:
            kwargs["seed"] = params.seed
    else:
        kwargs.update(temperature=0.0, top_p=1.0, top_k=-1)
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.no_repeat_ngram_size is not None:
        message = (
            f"no_repeat_ngram_size={params.no_repeat_ngram_size} is not supported by vLLM and is not applied "
            "(outputs may repeat n-grams that the transformers backend would block)"
        )
        if no_repeat_ngram == "error":
            raise InferenceError(message + "; set no_repeat_ngram_size=None or no_repeat_ngram='warn'")
        warnings.append(message)
    return kwargs, warnings


def choice_sampling_kwargs(top_logprobs: int) -> dict[str, Any]:
    """``SamplingParams`` for reading the next-token top-k: one greedy token with ``logprobs=top_logprobs``."""
    return {"n": 1, "max_tokens": 1, "temperature": 0.0, "logprobs": top_logprobs}


def exact_choice_sampling_kwargs() -> dict[str, Any]:
    """``SamplingParams`` for the exact pass: the log-probability of the last prompt token (the choice)."""
    return {"n": 1, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}


def engine_inputs(tokenizer: Any, prompts: Sequence[str], chat: bool) -> tuple[list[Any], list[str]]:
    """What ``vllm.LLM.generate`` gets for ``prompts`` and the texts the model sees: the prompts themselves, or,
    in chat mode, the chat-templated texts sent as token ids without added special tokens."""
    if not chat:
        return list(prompts), list(prompts)
    texts = [chat_prompt(tokenizer, p) for p in prompts]
    inputs = [{"prompt_token_ids": tokenizer.encode(t, add_special_tokens=False)} for t in texts]
    return inputs, texts


def generation_from_output(output: Any, stop: Sequence[str] = ()) -> Generation:
    """A :class:`Generation` from a ``vllm.RequestOutput`` (its first completion)."""
    completion = output.outputs[0]
    text, _ = truncate_at_stop(completion.text, stop)
    finish = "length" if completion.finish_reason == "length" else "stop"
    return Generation(
        text=text,
        finish_reason=finish,
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(completion.token_ids),
    )


def top_logprobs_from_output(output: Any) -> dict[int, float]:
    """Token id -> log-probability at the first generated position of a ``RequestOutput`` (top-k plus the
    sampled token)."""
    positions = output.outputs[0].logprobs or []
    if not positions:
        return {}
    return {int(token_id): float(entry.logprob) for token_id, entry in positions[0].items()}


def last_prompt_logprob(output: Any) -> float:
    """The log-probability of the last prompt token of a ``RequestOutput`` run with ``prompt_logprobs=0``."""
    last_id = output.prompt_token_ids[-1]
    entries = output.prompt_logprobs[-1]
    if entries is None or last_id not in entries:
        raise InferenceError("vLLM returned no prompt log-probability for the last prompt token")
    return float(entries[last_id].logprob)


# --- the backend ---------------------------------------------------------------------------------------------


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise BackendUnavailableError(
            "The vLLM backend needs the 'vllm' package, which is not installed here. Install it on a GPU machine "
            "(`pip install xinst[vllm]`), or use the transformers backend, or an OpenAI-compatible server with "
            "the http backend."
        ) from exc
    return vllm


class VLLMBackend:
    """An :class:`~xinst_assets.inference.base.InferenceBackend` on ``vllm.LLM`` (offline, in process)."""

    def __init__(self, spec: ModelSpec, config: VLLMConfig | None = None, chat: bool = False) -> None:
        spec.validate()
        self.spec, self.config, self.chat = spec, config or VLLMConfig(), chat
        vllm = _import_vllm()
        self._vllm = vllm
        try:
            self._llm = vllm.LLM(**engine_kwargs(spec, self.config))
        except Exception as exc:
            raise InferenceError(f"vLLM could not load {spec.model!r}: {exc}") from exc
        self._tokenizer = self._llm.get_tokenizer()
        self._warned: set[str] = set()
        self._variants: dict[tuple[str, tuple[str, ...]], dict[str, tuple[int, ...]]] = {}

    def fingerprint(self) -> str:
        return f"vllm:{self.spec.fingerprint()}:{self.spec.dtype}" + (":chat" if self.chat else "")

    def generate(self, prompts: list[str], params: DecodingParams) -> list[Generation]:
        prompts = check_prompts(prompts)
        if not prompts:
            return []
        kwargs, warnings = sampling_kwargs(params, self.config.no_repeat_ngram)
        for message in warnings:
            if message not in self._warned:
                self._warned.add(message)
                _log.warning(message)
        inputs, _ = engine_inputs(self._tokenizer, prompts, self.chat)
        outputs = self._llm.generate(inputs, self._vllm.SamplingParams(**kwargs), use_tqdm=False)
        return [generation_from_output(o, params.stop) for o in outputs]

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float]]:
        prompts = check_prompts(prompts)
        if not prompts:
            return []
        SamplingParams = self._vllm.SamplingParams
        inputs, texts = engine_inputs(self._tokenizer, prompts, self.chat)
        variants = [self._choice_variants(t, choices) for t in texts]
        outputs = self._llm.generate(
            inputs, SamplingParams(**choice_sampling_kwargs(self.config.choice_top_logprobs)), use_tqdm=False
        )
        results: list[dict[str, float]] = []
        exact_requests: list[tuple[int, int, dict[str, Any]]] = []  # (prompt index, token id, request)
        for index, output in enumerate(outputs):
            dist, missing = normalise_choice_logprobs(top_logprobs_from_output(output), variants[index])
            results.append(dist)
            if missing:
                ids = list(output.prompt_token_ids)
                for token_ids in variants[index].values():
                    for token_id in token_ids:
                        exact_requests.append((index, token_id, {"prompt_token_ids": ids + [token_id]}))
        if exact_requests:
            exact_outputs = self._llm.generate(
                [r for _, _, r in exact_requests], SamplingParams(**exact_choice_sampling_kwargs()), use_tqdm=False
            )
            by_prompt: dict[int, dict[int, float]] = {}
            for (index, token_id, _), output in zip(exact_requests, exact_outputs):
                by_prompt.setdefault(index, {})[token_id] = last_prompt_logprob(output)
            for index, logprobs in by_prompt.items():
                results[index], _ = normalise_choice_logprobs(logprobs, variants[index])
        return results

    def guided_choice(self, prompts: list[str], choices: list[str]) -> list[str]:
        """The answer among ``choices`` that guided (structured-output) decoding picks greedily, per prompt."""
        prompts = check_prompts(prompts)
        vllm = self._vllm
        try:  # vLLM >= 0.10.2 names it structured outputs
            from vllm.sampling_params import StructuredOutputsParams

            sampling = vllm.SamplingParams(
                temperature=0.0, max_tokens=16, structured_outputs=StructuredOutputsParams(choice=list(choices))
            )
        except ImportError:
            from vllm.sampling_params import GuidedDecodingParams

            sampling = vllm.SamplingParams(
                temperature=0.0, max_tokens=16, guided_decoding=GuidedDecodingParams(choice=list(choices))
            )
        inputs, _ = engine_inputs(self._tokenizer, prompts, self.chat)
        outputs = self._llm.generate(inputs, sampling, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]

    def close(self) -> None:
        """Drop the engine (vLLM frees GPU memory when its engine is garbage collected)."""
        import gc

        self._llm = None
        gc.collect()

    def _choice_variants(self, prompt: str, choices: Sequence[str]) -> dict[str, tuple[int, ...]]:
        context = prompt[-_CHOICE_CONTEXT_CHARS:]
        key = (context, tuple(choices))
        if key not in self._variants:
            self._variants[key] = choice_variant_table(self._tokenizer, list(choices), context)
        return self._variants[key]

    def __repr__(self) -> str:
        return f"VLLMBackend({self.spec.model!r}, tp={self.config.tensor_parallel_size})"
