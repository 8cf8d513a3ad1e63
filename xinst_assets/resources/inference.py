"""The inference layer as a Dagster resource: one configuration, three backends.

``transformers`` (CPU or CUDA; what tests and the demo run), ``vllm`` (offline engine on GPUs) and ``openai``
(any OpenAI-compatible completions server, e.g. a served vLLM). The model is chosen by the stage (the
instruction generator's checkpoint, the curation model, the judge), the backend and its knobs here.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from dagster import ConfigurableResource, Failure
from pydantic import Field

from xinst_assets.inference.base import InferenceBackend, InferenceError, ModelSpec


class InferenceSettings(ConfigurableResource):
    """Which backend serves model calls, and how."""

    backend: str = Field(default="transformers", description="transformers | vllm | openai")
    batch_size: int = Field(default=16, description="Prompts per forward pass (transformers).")
    max_batch_tokens: int | None = Field(default=None, description="Bound on padded tokens per batch.")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N (transformers).")
    num_threads: int | None = Field(
        default=None, description="CPU threads per call (transformers); None: torch's default. Set 1 when "
        "several stages or partitions share a few cores: oversubscribed threads slow small models many-fold."
    )
    dtype: str = Field(default="auto", description="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16")
    trust_remote_code: bool = Field(default=False, description="Run code shipped with a hub model (off).")
    allow_download: bool = Field(default=False, description="Fetch hub ids missing from the local cache.")
    # vLLM engine settings
    tensor_parallel_size: int = Field(default=1, description="vLLM tensor parallelism (GPUs per model).")
    gpu_memory_utilization: float = Field(default=0.9, description="vLLM share of GPU memory.")
    max_model_len: int | None = Field(default=None, description="vLLM context length (default: the model's).")
    # OpenAI-compatible server
    base_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8000/v1 (openai backend).")
    served_model: str | None = Field(default=None, description="The served model name (default: the model).")
    served_revision: str | None = Field(
        default=None, description="Version of the served weights (part of cache keys: change it when the server "
        "starts serving other weights under the same name)."
    )
    api_key_env: str | None = Field(default=None, description="Name of the env var holding the API key.")
    timeout_s: float = Field(default=120.0, description="HTTP read timeout per request.")
    max_retries: int = Field(default=5, description="HTTP retries with exponential backoff on 429/5xx.")
    max_concurrency: int = Field(default=16, description="Concurrent HTTP requests.")
    guided_choice: bool = Field(default=False, description="Use vLLM-server guided_choice for labels.")

    def open(self, model: str) -> InferenceBackend:
        """A backend serving ``model`` (a local folder or hub id); a missing model fails here, before work."""
        spec = ModelSpec(
            model=model, trust_remote_code=self.trust_remote_code, dtype=self.dtype, device=self.device,
            allow_download=self.allow_download,
        )
        if self.backend == "transformers":
            from xinst_assets.inference.transformers_backend import TransformersBackend

            return TransformersBackend(spec, batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens,
                                       num_threads=self.num_threads)
        if self.backend == "vllm":
            from xinst_assets.inference.vllm_backend import VLLMBackend, VLLMConfig

            return VLLMBackend(spec, VLLMConfig(
                tensor_parallel_size=self.tensor_parallel_size,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len,
            ))
        if self.backend == "openai":
            from xinst_assets.inference.http_backend import HTTPBackend, HTTPConfig

            if not self.base_url:
                raise ValueError("the openai backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
            return HTTPBackend(HTTPConfig(
                base_url=self.base_url, model=self.served_model or model, api_key_env=self.api_key_env,
                model_revision=self.served_revision,
                timeout_s=self.timeout_s, max_retries=self.max_retries, max_concurrency=self.max_concurrency,
                guided_choice=self.guided_choice,
            ))
        raise ValueError(f"unknown inference backend {self.backend!r}: use transformers, vllm or openai")


class LazyBackend:
    """A backend that loads its model on the first call that needs it.

    A rerun whose every prompt is cached never loads the model (no GPU memory, no load time). The fingerprint
    (part of every cache key) is computed from the model folder or hub revision and the precision, without
    loading anything. ``loads`` counts model loads (0 on a fully cached rerun).
    """

    def __init__(self, settings: InferenceSettings, model: str) -> None:
        self.settings, self.model = settings, model
        self.spec = ModelSpec(model=model, trust_remote_code=settings.trust_remote_code, dtype=settings.dtype,
                              device=settings.device, allow_download=settings.allow_download)
        if settings.backend != "openai":  # a served model is named by the server, not a local folder
            self.spec.validate()
        self._backend: InferenceBackend | None = None
        self.loads = 0

    def _loaded(self) -> InferenceBackend:
        if self._backend is None:
            self._backend = self.settings.open(self.model)
            self.loads += 1
        return self._backend

    def fingerprint(self) -> str:
        if self.settings.backend == "openai":
            served = self.settings.served_model or self.model
            return f"http:{served}@{self.settings.served_revision or 'unversioned'}"
        precision = self.settings.dtype
        if precision == "auto":
            import torch

            gpu = self.settings.device != "cpu" and torch.cuda.is_available()
            precision = "bfloat16-or-float16" if gpu else "float32"
        return f"{self.settings.backend}:{self.spec.fingerprint()}:{precision}"

    def generate(self, prompts, params):
        return self._loaded().generate(prompts, params)

    def choice_logprobs(self, prompts, choices):
        return self._loaded().choice_logprobs(prompts, choices)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    @contextlib.contextmanager
    def closed_on_failure(self, what: str) -> Iterator[None]:
        """A block of work with this backend: if it fails, the backend is closed (the next language of the run
        loads the model afresh rather than reuse a failed one), and an inference error becomes a Dagster
        ``Failure`` saying ``what`` failed."""
        try:
            yield
        except InferenceError as exc:
            self.close()
            raise Failure(f"{what}: {exc}") from exc
        except BaseException:
            self.close()
            raise
