"""The sentence-embedding model as a resource."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from xinst_assets.embedding.embedders import SentenceTransformerEmbedder, default_model_path


class EmbeddingModel(ConfigurableResource):
    """Sentence embeddings of English instructions: all-MiniLM-L6-v2 shipped in a wheel by default, or any
    sentence-transformers model by path or hub id."""

    model: str | None = Field(default=None, description="Path or hub id (default: the packaged MiniLM).")
    device: str = Field(default="cpu", description="cpu | cuda")
    batch_size: int = Field(default=64, description="Sentences per forward pass.")

    def load(self) -> SentenceTransformerEmbedder:
        return SentenceTransformerEmbedder(self.model or default_model_path(), device=self.device,
                                           batch_size=self.batch_size)
