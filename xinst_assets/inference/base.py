"""The contract every inference backend keeps, the model spec, and helpers shared by the backends.

A backend turns prompts into text (:meth:`InferenceBackend.generate`) and reads a model's probabilities for a
few single-token answers at the next position (:meth:`InferenceBackend.choice_logprobs`, used for
constrained-choice judging: a judgement can never be unparseable). ``fingerprint()`` names the function the
backend computes (model weights, tokenizer, numeric precision) so the generation cache never serves an answer
of another model.

Backends: :mod:`.transformers_backend` (CPU or one GPU, in process), :mod:`.vllm_backend` (vLLM's offline
engine, GPUs), :mod:`.http_backend` (any OpenAI-compatible server).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from xinst_assets.core.prompts import DecodingParams

FinishReason = Literal["stop", "length"]


class InferenceError(RuntimeError):
    """A model or an inference server could not do what was asked; the message says what to fix."""


class ModelNotFoundError(InferenceError, FileNotFoundError):
    """The model named in the configuration cannot be found locally (checked before any work starts)."""


class BackendUnavailableError(InferenceError, ImportError):
    """The backend's library (vLLM, ...) is not installed in this environment."""


class TransientInferenceError(InferenceError):
    """A failure that waiting may fix (server overloaded, 5xx, timeout, connection refused), after retries."""


class InferenceTimeout(TransientInferenceError, TimeoutError):
    """A request to an inference server timed out on every attempt."""


class InferenceHTTPError(InferenceError):
    """An inference server answered with an error status (``status``); not retried unless 429 or 5xx."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TransientHTTPError(InferenceHTTPError, TransientInferenceError):
    """A 429 or 5xx answer that was still there after every retry."""


@dataclass(frozen=True)
class Generation:
    """One generated text. ``finish_reason`` is "stop" (end-of-sequence token or a stop string) or "length"
    (``max_new_tokens`` reached: the output may be cut). ``completion_tokens`` counts generated tokens,
    including the end-of-sequence token when there is one."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Generation:
        return cls(
            text=str(data["text"]),
            finish_reason=data["finish_reason"],
            prompt_tokens=int(data["prompt_tokens"]),
            completion_tokens=int(data["completion_tokens"]),
        )


@runtime_checkable
class InferenceBackend(Protocol):
    """What the stages call. Outputs are aligned with the input prompts."""

    def generate(self, prompts: list[str], params: DecodingParams) -> list[Generation]:
        """Generate one continuation per prompt (a backend built for chat lays each prompt out as a user turn of
        the model's chat template; otherwise the prompt is the raw text the model continues)."""
        ...

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float]]:
        """Per prompt, the model's probabilities of each single-token choice at the next position, renormalised
        over the choices (they sum to 1)."""
        ...

    def fingerprint(self) -> str:
        """A string equal for two backends exactly when they compute the same function (for cache keys)."""
        ...

    def close(self) -> None:
        """Free the model (GPU memory, connections)."""
        ...


# --- Model spec ----------------------------------------------------------------------------------------------

# Files whose content defines the function a checkpoint computes besides its weights: hashed in full.
_DEFINING_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)
# Weight files are too large to hash on every run (tens of GB): their name, size and modification time stand
# for their content. A checkpoint rewritten in place (same size) changes its mtime, so it changes the
# fingerprint; a copy to another disk changes it too (a conservative miss, never a stale hit).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def looks_like_path(model: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything that exists on disk or starts like a path is a path."""
    if Path(model).expanduser().exists():
        return True
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


@dataclass(frozen=True)
class ModelSpec:
    """Which checkpoint to load: a local folder or a hub id (with ``revision``), and how.

    ``dtype`` "auto" is bfloat16 on a GPU and float32 on CPU; ``device`` "auto" is the first GPU if there is one.
    ``trust_remote_code`` runs Python code shipped with a hub model: off unless the user turns it on.
    ``allow_download`` lets a hub id be fetched when it is not in the local Hugging Face cache (off: nothing in
    xinst downloads unless told to).
    """

    model: str
    revision: str | None = None
    trust_remote_code: bool = False
    dtype: str = "auto"
    device: str = "auto"
    allow_download: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"ModelSpec.model must be a non-empty path or hub id, got {self.model!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")

    @property
    def is_local(self) -> bool:
        return looks_like_path(self.model)

    @property
    def local_path(self) -> Path | None:
        return Path(self.model).expanduser().resolve() if self.is_local else None

    def validate(self) -> ModelSpec:
        """Fail now, with the fix in the message, when the model cannot be loaded offline; return ``self``."""
        if self.is_local:
            path = self.local_path
            assert path is not None
            if not path.exists():
                raise ModelNotFoundError(
                    f"Model folder not found: {path}. Point the model setting at a folder holding config.json, "
                    "the tokenizer files and the weights, or give a hub id (owner/name) already in the local "
                    "Hugging Face cache."
                )
            if not path.is_dir() or not (path / "config.json").is_file():
                raise ModelNotFoundError(
                    f"{path} is not a model folder: it has no config.json. Point the model setting at the folder "
                    "that save_pretrained() wrote."
                )
            return self
        if self.allow_download:
            return self
        if _cached_hub_file(self.model, "config.json", self.revision) is None:
            raise ModelNotFoundError(
                f"Model {self.model!r}"
                + (f" at revision {self.revision!r}" if self.revision else "")
                + " is not in the local Hugging Face cache "
                f"({_hf_cache_dir()}), and downloading is off. Download it first "
                f"(`huggingface-cli download {self.model}`), point the model setting at a local folder, or set "
                "allow_download to true."
            )
        return self

    def fingerprint(self) -> str:
        """``local:<name>:<digest>`` for a folder, ``hub:<id>@<commit>`` for a hub id (commit from the cache)."""
        if self.is_local:
            path = self.local_path
            assert path is not None
            return f"local:{path.name}:{folder_fingerprint(path)}"
        commit = self.revision
        cached = _cached_hub_file(self.model, "config.json", self.revision)
        if cached is not None:
            parts = Path(cached).parts
            if "snapshots" in parts:  # .../models--owner--name/snapshots/<commit>/config.json
                commit = parts[parts.index("snapshots") + 1]
        return f"hub:{self.model}@{commit or 'main'}"

    def load_path(self) -> str:
        """What to pass to ``from_pretrained`` / vLLM: the resolved folder, or the hub id."""
        return str(self.local_path) if self.is_local else self.model


def folder_fingerprint(folder: Path) -> str:
    """A digest of a checkpoint folder: defining files by content, weight files by name, size and mtime."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        if path.name in _DEFINING_FILES:
            digest.update(b"C" + rel.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
        elif path.suffix in _WEIGHT_SUFFIXES:
            stat = path.stat()
            digest.update(f"W{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001 - only used in a message
        return os.path.expanduser("~/.cache/huggingface/hub")


def _cached_hub_file(repo_id: str, filename: str, revision: str | None) -> str | None:
    """The local path of a hub file if it is in the cache (no network), else ``None``."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
    except Exception:  # noqa: BLE001 - an invalid repo id is simply "not cached"
        return None
    return found if isinstance(found, str) else None


# --- Choice scoring helpers ----------------------------------------------------------------------------------


def choice_token_variants(tokenizer: Any, choice: str, context: str = "\n") -> tuple[int, ...]:
    """The token ids that spell ``choice`` as the next token after ``context``, for a Hugging Face tokenizer.

    Which token a model emits for the answer "1" depends on its tokenizer and on how the prompt ends: GPT-2 /
    Qwen style byte-level BPE has both ``1`` and ``Ġ1`` (" 1"); SentencePiece (Llama 2, Gemma) encodes a lone
    "1" as a bare ``▁`` followed by ``1``; Llama 3 splits " 1" into " " + "1". We collect, in this order:

    1. the token that follows ``context`` when ``context + choice`` is encoded (the spelling in place: the
       prompt's own tail is passed as ``context``);
    2. the single token of ``choice`` encoded alone, and of ``" " + choice``, after dropping tokens that decode
       to whitespace only (SentencePiece's bare ``▁``).

    Only ids that decode exactly to ``choice`` once surrounding whitespace is stripped are kept; the answer's
    probability is the sum over them (the model saying "1" in any spelling). Raises :class:`InferenceError` when
    no single token spells the choice (a multi-token choice cannot be read from one next-token distribution).
    """
    found: list[int] = []

    def decoded(token_id: int) -> str:
        return tokenizer.decode([token_id], skip_special_tokens=False)

    ctx = tokenizer.encode(context, add_special_tokens=False) if context else []
    full = tokenizer.encode(context + choice, add_special_tokens=False)
    if full[: len(ctx)] == ctx and len(full) == len(ctx) + 1:
        found.append(full[-1])
    for text in (choice, " " + choice):
        ids = [t for t in tokenizer.encode(text, add_special_tokens=False) if decoded(t).strip() != ""]
        if len(ids) == 1:
            found.append(ids[0])
    kept = tuple(dict.fromkeys(t for t in found if decoded(t).strip() == choice.strip()))
    if not kept:
        raise InferenceError(
            f"The choice {choice!r} is not a single token of this tokenizer, so its probability cannot be read "
            "from one next-token distribution. Use single-token choices such as '1', '2', '3' or 'A', 'B'."
        )
    return kept


def choice_variant_table(tokenizer: Any, choices: Sequence[str], context: str = "\n") -> dict[str, tuple[int, ...]]:
    """:func:`choice_token_variants` for each choice; raises if two choices share a token."""
    if len(set(choices)) != len(choices) or not choices:
        raise ValueError(f"choices must be distinct and non-empty, got {list(choices)!r}")
    table = {c: choice_token_variants(tokenizer, c, context) for c in choices}
    seen: dict[int, str] = {}
    for choice, ids in table.items():
        for token_id in ids:
            if token_id in seen:
                raise InferenceError(f"choices {seen[token_id]!r} and {choice!r} map to the same token {token_id}")
            seen[token_id] = choice
    return table


def normalise_choice_logprobs(
    logprobs: Mapping[Any, float], variants: Mapping[str, Iterable[Any]]
) -> tuple[dict[str, float], list[str]]:
    """Renormalise next-token log-probabilities over the choices.

    ``logprobs`` maps a token key (an id, or a token's text for HTTP servers) to its log-probability over the
    whole vocabulary; ``variants`` maps each choice to the keys that spell it. A choice's probability is the sum
    over its keys. Returns the distribution over the choices (summing to 1) and the choices of which no key was
    present (``logprobs`` may be only a top-k list); when every choice is missing the distribution is empty.
    """
    mass: dict[str, float] = {}
    missing: list[str] = []
    for choice, keys in variants.items():
        values = [logprobs[k] for k in keys if k in logprobs and logprobs[k] is not None]
        if not values:
            missing.append(choice)
            mass[choice] = 0.0
        else:
            mass[choice] = sum(math.exp(v) for v in values)
    total = sum(mass.values())
    if total <= 0:
        return {}, missing
    return {c: m / total for c, m in mass.items()}, missing


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """Return ``prompts`` as a list, raising a clear error for a single string or a non-string item."""
    if isinstance(prompts, str):
        raise TypeError("pass a list of prompts, not one string")
    prompts = list(prompts)
    bad = next((i for i, p in enumerate(prompts) if not isinstance(p, str)), None)
    if bad is not None:
        raise TypeError(f"prompt #{bad} is {type(prompts[bad]).__name__}, not str")
    return prompts


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string; return the text and whether a stop string was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
