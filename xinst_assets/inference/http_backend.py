"""An OpenAI-compatible server (vLLM's server, TGI, llama.cpp, a hosted API) as a backend, through the ``openai``
client package.

* ``chat=False``: raw prompts go to ``{base_url}/completions`` (base models and the X-Instruction plain-text
  formats). ``chat=True``: each prompt is one user message to ``{base_url}/chat/completions`` (instruction
  models; the server applies the model's chat template). One request per prompt, at most ``max_concurrency``
  in flight (a thread pool over one client); the server batches concurrent requests itself.
* Retries with exponential backoff and full jitter on 429, 5xx, timeouts and connection errors (a
  ``Retry-After`` header is honoured, capped at ``backoff_max_s``); other 4xx fail at once with the server's
  message. What is still failing after the retries raises a :class:`TransientInferenceError` subclass, which the
  stage may retry as a whole. The ``openai`` client's own retries are off: these are counted and logged here.
* The API key is read from the environment variable named by ``api_key_env`` when the backend is built; it is
  never logged and never part of ``repr``. Without one, the placeholder key ``EMPTY`` is sent (servers started
  without a key ignore it), never ``$OPENAI_API_KEY``: a key goes only where configuration sends it.
* Choice scoring asks for one token with the top ``top_logprobs`` alternatives and sums the probabilities of the
  listed tokens whose text, stripped of whitespace, is a choice ("1", " 1"). Choices absent from that top-k (or
  every choice, from a server that returns no log-probabilities) are scored exactly (``exact_fallback``):
  completions send the prompt followed by the choice with ``echo=true`` and read the echoed choice token's
  log-probability; chat sends the conversation with the assistant's turn begun by the choice
  (``continue_final_message``) and reads the log-probabilities of the tokens after the generation prompt from
  vLLM's ``prompt_logprobs``. A server that offers neither fails with that reason: a label is never guessed.
  ``guided_choice`` adds vLLM's ``guided_choice`` field (``guided_choice_field="structured_outputs"`` for newer
  vLLM servers), which forces the generated token to be a choice, so its log-probability is always present.
* ``no_repeat_ngram_size`` is not part of the OpenAI API: dropped with a warning (or an error, see
  ``no_repeat_ngram``). ``top_k`` is sent as an extra field (vLLM, TGI and llama.cpp accept it) unless
  ``send_top_k`` is off.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

from xinst_assets.core.prompts import DecodingParams
from xinst_assets.inference.base import (
    Generation,
    InferenceError,
    InferenceHTTPError,
    InferenceTimeout,
    TransientHTTPError,
    TransientInferenceError,
    check_prompts,
    normalise_choice_logprobs,
    truncate_at_stop,
)
from xinst_assets.inference.chat import chat_messages

_log = logging.getLogger("xinst.inference")

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_BODY_EXCERPT_CHARS = 300
COMPLETIONS, CHAT = "completions", "chat/completions"
# What the openai client takes as named arguments; every other field of a body goes in ``extra_body`` (vLLM's
# top_k, guided_choice, prompt_logprobs, continue_final_message, ...).
_CLIENT_FIELDS = {
    COMPLETIONS: {"model", "prompt", "max_tokens", "n", "temperature", "top_p", "seed", "stop", "logprobs", "echo"},
    CHAT: {"model", "messages", "max_completion_tokens", "n", "temperature", "top_p", "seed", "stop", "logprobs",
           "top_logprobs"},
}
# A server without authentication still needs some key in the client; vLLM's documentation uses this one.
NO_KEY = "EMPTY"
# Statuses with which a server says it does not take a request's fields (vLLM 400, others 404/422).
_UNSUPPORTED_STATUSES = frozenset({400, 404, 422})


@dataclass(frozen=True)
class HTTPConfig:
    """Where the server is and how to talk to it.

    ``model`` is the served model name. The cache key uses ``model`` and ``model_revision``: set the revision
    (a commit, a date, a checkpoint name) whenever the server starts serving other weights under the same name.
    """

    base_url: str
    model: str
    api_key_env: str | None = None
    model_revision: str | None = None
    # A completion of a few hundred tokens takes seconds; two minutes leaves room for a queue on a busy server.
    timeout_s: float = 120.0
    connect_timeout_s: float = 10.0
    # 5 retries with backoff 1, 2, 4, 8, 16 s (full jitter, capped at 60 s): up to ~30 s of waiting on average,
    # enough to ride out a server restart or a burst of 429s.
    max_retries: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    max_concurrency: int = 16
    # vLLM's default --max-logprobs is 20; OpenAI's own completions API allows at most 5.
    top_logprobs: int = 20
    exact_fallback: bool = True
    guided_choice: bool = False
    guided_choice_field: Literal["guided_choice", "structured_outputs"] = "guided_choice"
    send_top_k: bool = True
    no_repeat_ngram: Literal["warn", "error"] = "warn"
    chat: bool = False

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise ValueError("model (the served model name) must be set")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_retries < 0 or self.max_concurrency < 1 or self.top_logprobs < 1:
            raise ValueError("max_retries must be >= 0, max_concurrency and top_logprobs >= 1")


# --- pure request/response mapping (unit-tested) -------------------------------------------------------------


def _decoding_fields(
    params: DecodingParams, send_top_k: bool, no_repeat_ngram: str, api: str
) -> tuple[dict[str, Any], list[str]]:
    """The sampling fields of a request for ``params`` (shared by both APIs), and what could not be mapped."""
    warnings: list[str] = []
    fields: dict[str, Any] = {}
    if params.do_sample:
        fields.update(temperature=params.temperature, top_p=params.top_p)
        if params.top_k is not None and send_top_k:
            fields["top_k"] = params.top_k
        if params.seed is not None:
            fields["seed"] = params.seed
    else:
        fields.update(temperature=0.0, top_p=1.0)
    if params.stop:
        fields["stop"] = list(params.stop)
    if params.no_repeat_ngram_size is not None:
        message = (
            f"no_repeat_ngram_size={params.no_repeat_ngram_size} is not part of the OpenAI {api} API and "
            "is not applied by the server"
        )
        if no_repeat_ngram == "error":
            raise InferenceError(message + "; set no_repeat_ngram_size=None or no_repeat_ngram='warn'")
        warnings.append(message)
    return fields, warnings


def completion_body(
    model: str, prompt: str, params: DecodingParams, send_top_k: bool = True, no_repeat_ngram: str = "warn"
) -> tuple[dict[str, Any], list[str]]:
    """The JSON body of a completions request for ``params``, and warnings about what was not mapped."""
    fields, warnings = _decoding_fields(params, send_top_k, no_repeat_ngram, "completions")
    return {"model": model, "prompt": prompt, "max_tokens": params.max_new_tokens, "n": 1, **fields}, warnings


def chat_body(
    model: str, prompt: str, params: DecodingParams, send_top_k: bool = True, no_repeat_ngram: str = "warn"
) -> tuple[dict[str, Any], list[str]]:
    """The JSON body of a chat request for ``params`` (the prompt as one user message), and warnings.
    ``max_completion_tokens`` is OpenAI's current name for the output bound (vLLM takes it too)."""
    fields, warnings = _decoding_fields(params, send_top_k, no_repeat_ngram, "chat")
    body = {"model": model, "messages": chat_messages(prompt), "max_completion_tokens": params.max_new_tokens,
            "n": 1, **fields}
    return body, warnings


def split_body(body: Mapping[str, Any], endpoint: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request body as the openai client's named arguments and its ``extra_body`` (the server's extensions)."""
    known = _CLIENT_FIELDS[endpoint]
    return {k: v for k, v in body.items() if k in known}, {k: v for k, v in body.items() if k not in known}


def generation_from_chat_response(data: Mapping[str, Any], stop: Sequence[str] = ()) -> Generation:
    """A :class:`Generation` from a chat completions response (its first choice's message)."""
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as exc:
        raise InferenceError(f"unexpected chat response (no choices[0].message): {str(data)[:200]}") from exc
    text, _ = truncate_at_stop(text, stop)
    usage = data.get("usage") or {}
    return Generation(
        text=text,
        finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def chat_top_logprobs(data: Mapping[str, Any]) -> dict[str, float]:
    """Token text -> log-probability at the first generated position of a chat response (top-k plus the
    generated token); empty when the server returned no log-probabilities."""
    logprobs = (data.get("choices") or [{}])[0].get("logprobs") or {}
    content = logprobs.get("content") or []
    if not content:
        return {}
    first = content[0] or {}
    found = {str(t["token"]): float(t["logprob"])
             for t in first.get("top_logprobs") or [] if t.get("logprob") is not None}
    if first.get("token") is not None and first.get("logprob") is not None:
        found.setdefault(str(first["token"]), float(first["logprob"]))
    return found


def continued_turn_logprob(data: Mapping[str, Any], prompt_tokens: int) -> float | None:
    """The log-probability of what continues a conversation's generation prompt, from a response to that
    conversation continued by it with vLLM's ``prompt_logprobs=0``: the sum over the prompt tokens after the
    first ``prompt_tokens`` (the length of the prompt the answer starts after). ``None`` when the server returned
    no prompt log-probabilities, or no token follows the generation prompt (the continuation merged with it)."""
    entries = data.get("prompt_logprobs")
    if not isinstance(entries, list) or len(entries) <= prompt_tokens or prompt_tokens < 1:
        return None
    total = 0.0
    for entry in entries[prompt_tokens:]:
        if not entry:
            return None
        values = [v.get("logprob") if isinstance(v, Mapping) else v for v in entry.values()]
        if len(values) != 1 or values[0] is None:  # prompt_logprobs=0: the prompt token's own entry only
            return None
        total += float(values[0])
    return total


def generation_from_response(data: Mapping[str, Any], stop: Sequence[str] = ()) -> Generation:
    """A :class:`Generation` from a completions response (its first choice)."""
    try:
        choice = data["choices"][0]
        text = choice["text"]
    except (KeyError, IndexError, TypeError) as exc:
        raise InferenceError(f"unexpected completions response (no choices[0].text): {str(data)[:200]}") from exc
    text, _ = truncate_at_stop(text, stop)
    usage = data.get("usage") or {}
    return Generation(
        text=text,
        finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def top_logprobs_from_response(data: Mapping[str, Any]) -> dict[str, float]:
    """Token text -> log-probability at the first generated position (the top-k list plus the sampled token)."""
    logprobs = (data.get("choices") or [{}])[0].get("logprobs") or {}
    found: dict[str, float] = {}
    top = logprobs.get("top_logprobs") or []
    if top and top[0]:
        found.update({str(k): float(v) for k, v in top[0].items()})
    tokens, values = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []
    if tokens and values and values[0] is not None:
        found.setdefault(str(tokens[0]), float(values[0]))
    return found


def text_choice_variants(logprobs: Mapping[str, float], choices: Sequence[str]) -> dict[str, list[str]]:
    """For each choice, the listed token texts that spell it once whitespace is stripped ("1", " 1", "\\n1")."""
    return {c: [token for token in logprobs if token.strip() == c] for c in choices}


def echoed_continuation_logprob(data: Mapping[str, Any], prompt_chars: int, continuation: str) -> float | None:
    """The log-probability of ``continuation`` from an ``echo=true`` response to ``prompt + continuation``.

    Sums the echoed tokens from character ``prompt_chars`` to the end of the continuation. ``None`` when no token
    starts exactly at ``prompt_chars`` (the continuation merged with the prompt's last characters into one token)
    or the server returned no offsets.
    """
    logprobs = (data.get("choices") or [{}])[0].get("logprobs") or {}
    offsets = logprobs.get("text_offset") or []
    values = logprobs.get("token_logprobs") or []
    end = prompt_chars + len(continuation)
    if prompt_chars not in offsets:
        return None
    start = offsets.index(prompt_chars)
    total = 0.0
    for i in range(start, len(offsets)):
        if offsets[i] >= end:
            break
        if i >= len(values) or values[i] is None:
            return None
        total += float(values[i])
    return total


def backoff_delay(attempt: int, initial_s: float, max_s: float, retry_after_s: float | None, rng: random.Random) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): full jitter over ``initial * 2**attempt``, capped;
    at least the server's ``Retry-After`` (also capped)."""
    delay = rng.uniform(0, min(max_s, initial_s * 2**attempt))
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return delay


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare for inference servers; fall back to the computed backoff


# --- the backend ---------------------------------------------------------------------------------------------


class HTTPBackend:
    """An :class:`~xinst_assets.inference.base.InferenceBackend` over an OpenAI-compatible server: its completions
    endpoint, or its chat endpoint when ``config.chat``. ``http_client`` replaces the ``openai`` client's HTTP
    client (proxies, custom TLS)."""

    def __init__(
        self,
        config: HTTPConfig,
        http_client: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        import openai

        self.config = config
        key = NO_KEY
        if config.api_key_env:
            key = os.environ.get(config.api_key_env) or ""
            if not key:
                raise InferenceError(
                    f"The environment variable {config.api_key_env} (named by api_key_env) is not set or empty; "
                    "set it to the server's API key, or leave api_key_env unset for a server without one."
                )
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=config.base_url.rstrip("/"),
            api_key=key,
            max_retries=0,  # retried here, with our backoff, counts and messages
            timeout=openai.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            http_client=http_client,  # None: the client's own (its pool exceeds max_concurrency threads)
        )
        self._sleep, self._rng = sleep, rng or random.Random()
        self._rng_lock = threading.Lock()
        self._warned: set[str] = set()
        self.requests_sent = 0  # every attempt, retries included (for metadata and tests)
        self.retries = 0
        self._count_lock = threading.Lock()

    def fingerprint(self) -> str:
        chat = ":chat" if self.config.chat else ""
        return f"http:{self.config.model}@{self.config.model_revision or 'unversioned'}{chat}"

    def generate(self, prompts: list[str], params: DecodingParams) -> list[Generation]:
        prompts = check_prompts(prompts)
        make_body = chat_body if self.config.chat else completion_body
        bodies = []
        for prompt in prompts:
            body, warnings = make_body(
                self.config.model, prompt, params, self.config.send_top_k, self.config.no_repeat_ngram
            )
            self._warn(warnings)
            bodies.append(body)
        if self.config.chat:
            return self._map(lambda body: generation_from_chat_response(self._call(CHAT, body), params.stop), bodies)
        return self._map(lambda body: generation_from_response(self._call(COMPLETIONS, body), params.stop), bodies)

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float]]:
        prompts = check_prompts(prompts)
        if len(set(choices)) != len(choices) or not choices:
            raise ValueError(f"choices must be distinct and non-empty, got {list(choices)!r}")
        one = self._chat_choice_one if self.config.chat else self._choice_one
        return self._map(lambda prompt: one(prompt, list(choices)), prompts)

    def close(self) -> None:
        self._client.close()

    # --- internals -------------------------------------------------------------------------------------------

    def _guided(self, body: dict[str, Any], choices: list[str]) -> dict[str, Any]:
        if self.config.guided_choice:
            if self.config.guided_choice_field == "structured_outputs":
                body["structured_outputs"] = {"choice": choices}
            else:
                body["guided_choice"] = choices
        return body

    def _from_top(self, top: Mapping[str, float], choices: list[str]) -> dict[str, float] | None:
        """The distribution from a top-k list when it holds every choice (or fallback is off), else None."""
        dist, missing = normalise_choice_logprobs(top, text_choice_variants(top, choices))
        if not missing:
            return dist
        if not self.config.exact_fallback:
            if dist:
                return dist  # the missing choices are below the top-k: counted as 0
            raise InferenceError(
                f"none of the choices {choices} is among the server's top {self.config.top_logprobs} tokens and "
                "exact_fallback is off; turn it on or raise top_logprobs"
            )
        return None

    def _choice_one(self, prompt: str, choices: list[str]) -> dict[str, float]:
        body = self._guided({"model": self.config.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                             "logprobs": self.config.top_logprobs}, choices)
        dist = self._from_top(top_logprobs_from_response(self._call(COMPLETIONS, body)), choices)
        if dist is not None:
            return dist
        exact: dict[str, float] = {}
        variants: dict[str, list[str]] = {}
        for choice in choices:
            for spelling in (choice, " " + choice):
                echo_body = {
                    "model": self.config.model,
                    "prompt": prompt + spelling,
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "echo": True,
                    "logprobs": 1,
                }
                logprob = echoed_continuation_logprob(self._call(COMPLETIONS, echo_body), len(prompt), spelling)
                if logprob is not None:
                    exact[spelling] = logprob
                    variants.setdefault(choice, []).append(spelling)
        dist, missing = normalise_choice_logprobs(exact, {c: variants.get(c, []) for c in choices})
        if not dist:
            raise InferenceError(
                f"the server returned no usable log-probabilities for the choices {choices} (echo offsets missing); "
                "it may not support echo with logprobs"
            )
        return dist

    def _chat_choice_one(self, prompt: str, choices: list[str]) -> dict[str, float]:
        messages = chat_messages(prompt)
        body = self._guided({"model": self.config.model, "messages": messages, "max_completion_tokens": 1,
                             "temperature": 0.0, "logprobs": True, "top_logprobs": self.config.top_logprobs},
                            choices)
        data = self._call(CHAT, body)
        dist = self._from_top(chat_top_logprobs(data), choices)
        if dist is not None:
            return dist
        # Exact: the assistant's turn begun by each spelling of each choice; the tokens after the generation
        # prompt (as long as the first request's prompt) are the answer's.
        prompt_tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        exact: dict[str, float] = {}
        variants: dict[str, list[str]] = {}
        for choice in choices:
            for spelling in (choice, " " + choice):
                continued = {
                    "model": self.config.model,
                    "messages": messages + [{"role": "assistant", "content": spelling}],
                    "max_completion_tokens": 1,
                    "temperature": 0.0,
                    "add_generation_prompt": False,
                    "continue_final_message": True,
                    "prompt_logprobs": 0,
                }
                try:
                    answer = self._call(CHAT, continued)
                except InferenceHTTPError as exc:
                    if exc.status not in _UNSUPPORTED_STATUSES:
                        raise
                    raise InferenceError(
                        f"the server gave no log-probabilities for the choices {choices} in its top "
                        f"{self.config.top_logprobs} and refused the exact fallback (vLLM's prompt_logprobs with "
                        f"continue_final_message): {exc}. Serve the model with vLLM, or use a server that returns "
                        "chat log-probabilities (logprobs with top_logprobs)"
                    ) from exc
                logprob = continued_turn_logprob(answer, prompt_tokens)
                if logprob is not None:
                    exact[spelling] = logprob
                    variants.setdefault(choice, []).append(spelling)
        dist, _ = normalise_choice_logprobs(exact, {c: variants.get(c, []) for c in choices})
        if not dist:
            raise InferenceError(
                f"the server returned no usable log-probabilities for the choices {choices}: neither top "
                "log-probabilities nor vLLM's prompt_logprobs; serve the model with vLLM, or use a server that "
                "returns chat log-probabilities"
            )
        return dist

    def _map(self, func: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """``func`` over ``items`` with at most ``max_concurrency`` at once; the first error cancels the rest."""
        if not items:
            return []
        if self.config.max_concurrency == 1 or len(items) == 1:
            return [func(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.config.max_concurrency, len(items))) as pool:
            futures = [pool.submit(func, item) for item in items]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                for future in pending:
                    future.cancel()
                raise failed.exception()  # type: ignore[misc]
            return [f.result() for f in futures]

    def _call(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request through the openai client, retried on transient failures; the response as a dict."""
        openai = self._openai
        url = f"{self.config.base_url.rstrip('/')}/{endpoint}"
        create = self._client.chat.completions.create if endpoint == CHAT else self._client.completions.create
        named, extra = split_body(body, endpoint)
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            retry_after: float | None = None
            with self._count_lock:
                self.requests_sent += 1
            try:
                response = create(**named, extra_body=extra or None)
            except openai.APITimeoutError as exc:
                error: TransientInferenceError = InferenceTimeout(
                    f"POST {url} timed out after {self.config.timeout_s:g} s "
                    f"(connect timeout {self.config.connect_timeout_s:g} s) on attempt {attempt + 1} of {attempts}; "
                    "the server is overloaded or the request is too long: raise timeout_s, lower max_concurrency "
                    "or max_new_tokens"
                )
                error.__cause__ = exc
            except openai.APIConnectionError as exc:
                error = TransientInferenceError(
                    f"POST {url} failed on attempt {attempt + 1} of {attempts}: {type(exc.__cause__ or exc).__name__}: "
                    f"{exc.__cause__ or exc}; is the server running at base_url?"
                )
                error.__cause__ = exc
            except openai.APIStatusError as exc:
                excerpt = exc.response.text[:_BODY_EXCERPT_CHARS]
                if exc.status_code not in RETRY_STATUSES:
                    raise InferenceHTTPError(
                        f"POST {url} failed with HTTP {exc.status_code}: {excerpt}", exc.status_code
                    ) from exc
                error = TransientHTTPError(
                    f"POST {url} failed with HTTP {exc.status_code} on attempt {attempt + 1} of {attempts}: "
                    f"{excerpt}",
                    exc.status_code,
                )
                retry_after = _retry_after(exc.response)
            except openai.APIError as exc:  # a 200 whose body is not the expected JSON
                raise InferenceError(f"POST {url} returned an unreadable answer: {exc}") from exc
            else:
                return response.model_dump()
            if attempt + 1 == attempts:
                raise error
            with self._rng_lock:
                delay = backoff_delay(
                    attempt, self.config.backoff_initial_s, self.config.backoff_max_s, retry_after, self._rng
                )
            with self._count_lock:
                self.retries += 1
            _log.warning("%s; retrying in %.2f s", error, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")

    def _warn(self, warnings: list[str]) -> None:
        for message in warnings:
            if message not in self._warned:
                self._warned.add(message)
                _log.warning(message)

    def __repr__(self) -> str:  # never the key
        api = "chat" if self.config.chat else "completions"
        return f"HTTPBackend({self.config.base_url!r}, model={self.config.model!r}, api={api})"
