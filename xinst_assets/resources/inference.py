"""The inference layer as Dagster resources: backend settings, and one resource per model role.

Backends: ``transformers`` (CPU or CUDA; what tests and the demo run), ``vllm`` (offline engine on GPUs) and
``openai`` (any OpenAI-compatible server, e.g. a served vLLM or a hosted chat model: completions or chat).

``inference`` (:class:`InferenceSettings`) serves the instruction generator and is the default backend of every
role. Each role (``curator``, ``refiner``, ``answer_model``, ``judge``: :class:`ModelRole`) names its model and,
when it sets ``backend``, its own backend settings; :mod:`xinst_assets.assets.model_roles` turns a role into
the model and backend a stage uses.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from dagster import ConfigurableResource, Failure
from pydantic import Field

from xinst_assets.inference.base import InferenceBackend, InferenceError, ModelSpec


class InferenceSettings(ConfigurableResource):
    """Which backend serves model calls, and how."""

    backend: str = Field(
        default="transformers", description="transformers | vllm | openai (an OpenAI-compatible server: "
        "completions, or chat with chat: true)"
    )
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
    top_logprobs: int = Field(
        default=20, description="Top tokens asked of an HTTP server for constrained choice (OpenAI's chat API and "
        "vLLM's default allow at most 20); choices missing from them are scored exactly where the server can."
    )
    chat: bool | None = Field(
        default=None, description="Send each prompt as a chat message (the model's chat template; the server's "
        "/chat/completions). None: by role: the curator, refiner and judge chat when the model has a chat "
        "template (always over HTTP); the generator and the answer model get the raw prompt they were trained on."
    )

    def open(self, model: str, chat: bool = False) -> InferenceBackend:
        """A backend serving ``model`` (a local folder or hub id), prompts sent as chat messages when ``chat``;
        a missing model fails here, before work."""
        spec = ModelSpec(
            model=model, trust_remote_code=self.trust_remote_code, dtype=self.dtype, device=self.device,
            allow_download=self.allow_download,
        )
        if self.backend == "transformers":
            from xinst_assets.inference.transformers_backend import TransformersBackend

            return TransformersBackend(spec, batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens,
                                       num_threads=self.num_threads, chat=chat)
        if self.backend == "vllm":
            from xinst_assets.inference.vllm_backend import VLLMBackend, VLLMConfig

            return VLLMBackend(spec, VLLMConfig(
                tensor_parallel_size=self.tensor_parallel_size,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len,
            ), chat=chat)
        if self.backend == "openai":
            from xinst_assets.inference.http_backend import HTTPBackend, HTTPConfig

            if not self.base_url:
                raise ValueError("the openai backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
            return HTTPBackend(HTTPConfig(
                base_url=self.base_url, model=self.served_model or model, api_key_env=self.api_key_env,
                model_revision=self.served_revision,
                timeout_s=self.timeout_s, max_retries=self.max_retries, max_concurrency=self.max_concurrency,
                guided_choice=self.guided_choice, top_logprobs=self.top_logprobs, chat=chat,
            ))
        raise ValueError(f"unknown inference backend {self.backend!r}: use transformers, vllm or openai")

    def backend_fields(self) -> dict:
        """The backend settings as plain values (what :class:`InferenceSettings` takes)."""
        return {name: getattr(self, name) for name in InferenceSettings.model_fields}


class ModelRole(InferenceSettings):
    """One model role (curator, refiner, answer model, judge): which model plays it and which backend serves it.

    ``model`` is a local folder, a hub id, a served model name (``openai`` backend) or ``checkpoint:<name>``,
    the checkpoint an asset recorded (``checkpoint:curator``, ``checkpoint:tuned_checkpoint``). ``None`` is the
    role's default (see :mod:`xinst_assets.assets.model_roles`). With ``backend`` unset, the role is served as
    its default is, with all those settings (the ``inference`` resource for the curator and the answer model,
    the curator's backend for the refiner and the judge), and this role's other backend fields are not used;
    set ``backend`` (transformers | vllm | openai) and this role has its own backend settings.
    """

    model: str | None = Field(
        default=None, description="Local folder, hub id, served model name, or checkpoint:<asset checkpoint> "
        "(None: the role's default)."
    )
    backend: str | None = Field(  # type: ignore[assignment]
        default=None, description="None: served as the role's default is (inference resource, or the curator's "
        "backend for refiner and judge), all its settings | transformers | vllm | openai: this role's own "
        "backend settings below."
    )

    def settings(self, shared: InferenceSettings) -> InferenceSettings:
        """The backend settings that serve this role: ``shared`` when ``backend`` is unset, else its own."""
        if self.backend is None:
            return shared
        return InferenceSettings(**self.backend_fields())


class AnswerModelRole(ModelRole):
    """The model under evaluation and the baseline its answers are compared with (same backend)."""

    baseline: str | None = Field(
        default=None, description="The model the answers are compared with (None: the base model the tuned "
        "checkpoint was trained from)."
    )


class LazyBackend:
    """A backend that loads its model on the first call that needs it.

    A rerun whose every prompt is cached never loads the model (no GPU memory, no load time). The fingerprint
    (part of every cache key) is computed from the model folder or hub revision and the precision, without
    loading anything. ``loads`` counts model loads (0 on a fully cached rerun).
    """

    def __init__(self, settings: InferenceSettings, model: str, chat: bool | None = None) -> None:
        # chat None: as the settings say (off unless they turn it on); roles pass what they resolved.
        self.settings, self.model, self.chat = settings, model, bool(settings.chat) if chat is None else chat
        self.spec = ModelSpec(model=model, trust_remote_code=settings.trust_remote_code, dtype=settings.dtype,
                              device=settings.device, allow_download=settings.allow_download)
        if settings.backend != "openai":  # a served model is named by the server, not a local folder
            self.spec.validate()
        self._backend: InferenceBackend | None = None
        self.loads = 0

    def _loaded(self) -> InferenceBackend:
        if self._backend is None:
            self._backend = self.settings.open(self.model, chat=self.chat)
            self.loads += 1
        return self._backend

    def fingerprint(self) -> str:
        # Chat formatting changes every prompt the model sees: it splits the cache.
        chat = ":chat" if self.chat else ""
        if self.settings.backend == "openai":
            served = self.settings.served_model or self.model
            return f"http:{served}@{self.settings.served_revision or 'unversioned'}{chat}"
        precision = self.settings.dtype
        if precision == "auto":
            import torch

            gpu = self.settings.device != "cpu" and torch.cuda.is_available()
            precision = "bfloat16-or-float16" if gpu else "float32"
        return f"{self.settings.backend}:{self.spec.fingerprint()}:{precision}{chat}"

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
