"""Where raw web text comes from."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from xinst_assets.core.ingest import ReadOptions, Shard, discover_shards


class RawSources(ConfigurableResource):
    """Source folders or globs of raw web-text shards, and how to read their records.

    A pattern is a folder laid out as ``<folder>/<lang>/...`` or a glob containing ``{lang}``.
    """

    patterns: list[str] = Field(description="Folders (<folder>/<lang>/...) or globs with '{lang}'.")
    text_column: str = Field(default="text", description="Column or JSON field that holds the document text.")
    max_doc_chars: int = Field(default=1_000_000, description="Longer documents are quarantined as too_long.")
    batch_rows: int = Field(default=5_000, description="Records parsed per batch (bounds memory).")

    def read_options(self) -> ReadOptions:
        return ReadOptions(
            text_column=self.text_column, max_doc_chars=self.max_doc_chars, batch_rows=self.batch_rows
        )

    def shards(self, lang: str) -> list[Shard]:
        return discover_shards(self.patterns, lang)
