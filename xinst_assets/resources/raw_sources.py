"""Where raw web text comes from."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from xinst_assets.core.discovery import Discovery, discover_shards
from xinst_assets.core.ingest import ReadOptions
from xinst_assets.core.records import FieldCaps


class RawSources(ConfigurableResource):
    """Source folders or globs of raw web-text shards, and how to read their records.

    A pattern is a folder laid out as ``<folder>/<lang>/...`` or a glob containing ``{lang}``; links that leave
    the patterns' folders are not followed (see :mod:`xinst_assets.core.discovery`).
    """

    patterns: list[str] = Field(description="Folders (<folder>/<lang>/...) or globs with '{lang}'.")
    text_column: str = Field(default="text", description="Column or JSON field that holds the document text.")
    id_column: str = Field(default="id", description="Column or JSON field of the source's own record id "
                                                     "(kept as source_id).")
    lang_column: str = Field(default="lang", description="Column or JSON field of the source's own language "
                                                         "label (kept as source_lang).")
    max_doc_chars: int = Field(default=1_000_000, description="Longer documents are quarantined as too_long.")
    max_record_bytes: int = Field(default=8 << 20, description="Longer JSONL lines (or Parquet cells) are "
                                  "quarantined as record_too_large before they are decoded.")
    max_url_chars: int = Field(default=8_192, description="Longer urls are quarantined as field_too_long.")
    max_page_bytes: int = Field(default=32 << 20, description="Parquet row groups with a larger page in the text "
                                "column are not read (oversized_page): Arrow decodes a page whole.")
    batch_rows: int = Field(default=5_000, description="Records parsed per batch (bounds memory).")

    def read_options(self) -> ReadOptions:
        return ReadOptions(
            text_column=self.text_column, id_column=self.id_column, lang_column=self.lang_column,
            max_doc_chars=self.max_doc_chars, max_record_bytes=self.max_record_bytes,
            field_caps=FieldCaps(url=self.max_url_chars), max_page_bytes=self.max_page_bytes,
            batch_rows=self.batch_rows,
        )

    def discover(self, lang: str) -> Discovery:
        """The shards of ``lang`` and the paths skipped on the way (links out of the roots, loops, ...).

        Raises :class:`xinst_assets.core.discovery.SourceError` (one line, with what to do) for a pattern that
        cannot be used.
        """
        return discover_shards(self.patterns, lang)
