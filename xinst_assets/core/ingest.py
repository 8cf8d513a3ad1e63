"""Reading raw web-text shards: streaming parse with bounded memory, and quarantine of bad records.

A shard is one file of documents for one language: JSONL (optionally gzip-compressed) or Parquet, with
CulturaX-style columns (``text``, ``url``, ``timestamp``, ``source``; the text column name is configurable),
and optionally the source's own ``id`` and ``lang``, kept as provenance (``source_id``, ``source_lang``).
Shards are parsed in batches into a staged Parquet file. A bad record never costs the good records around it:
it becomes a quarantine row with a reason (record rules: :mod:`xinst_assets.core.records`).

Memory is bounded whatever the input:

* JSONL is read line by line with a byte cap (``max_record_bytes``, 8 MiB) enforced *before* decoding and
  parsing, inside gzip too: a longer line is skipped in 1 MiB pieces (never held whole) and quarantined as
  ``record_too_large``;
* good rows are flushed to the staged file every ``batch_rows`` rows or ``batch_chars`` characters of text;
* Parquet is read row group by row group in batches sized from the row group's own byte count (at most
  ``batch_chars`` bytes of text per batch, one row at the least), through a 1 MiB read buffer; cells over the
  caps are quarantined without being turned into Python strings. Arrow must hold one cell to measure it, so a
  Parquet file's peak also includes its largest cell.

Problems of a whole file (empty, unreadable, truncated, not UTF-8, changed while read) are quarantine rows too,
with a null or first-affected position and a reason from :data:`FILE_REASONS`; they are the file-level rows of
the shard report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

# The ingestion API in one place for callers (assets, sensor, tests, bench).
from xinst_assets.core.discovery import (  # noqa: F401
    READER_VERSION,
    SUFFIXES,
    Discovery,
    Shard,
    SourceError,
    discover_shards,
)
from xinst_assets.core.jsonl_reader import bounded_lines, read_jsonl  # noqa: F401
from xinst_assets.core.parquet_reader import read_parquet
from xinst_assets.core.records import (  # noqa: F401
    BINARY_CONTENT,
    EMPTY_TEXT,
    FIELD_TOO_LONG,
    INVALID_FIELD,
    INVALID_UNICODE,
    NON_STRING_TEXT,
    NULL_TEXT,
    TOO_LONG,
    FieldCaps,
)
from xinst_assets.core.staging import (  # noqa: F401
    CHANGED_DURING_READ,
    DAMAGED_ROW_GROUP,
    DOC_SCHEMA,
    DUPLICATE_KEY,
    EMPTY_FILE,
    FILE_REASONS,
    IGNORED_COLUMN,
    INVALID_UTF8,
    JSON_ARRAY_FILE,
    MALFORMED_JSON,
    MISSING_TEXT,
    NOT_AN_OBJECT,
    NOT_UTF8_FILE,
    OVERSIZED_PAGE,
    QUARANTINE_SCHEMA,
    RECORD_TOO_LARGE,
    SCHEMA_MISMATCH,
    SNIPPET_CHARS,
    TRUNCATED_FILE,
    UNREADABLE_FILE,
    ReadOptions,
    ShardStats,
    Sink,
)


def stage_shard(
    shard: Shard,
    lang: str,
    docs_path: Path,
    quarantine_path: Path,
    options: ReadOptions = ReadOptions(),
    on_bytes: Callable[[int], None] = lambda n: None,
) -> ShardStats:
    """Parse ``shard`` into two Parquet files: good documents and quarantined records (and file-level rows).

    ``on_bytes`` is called with the number of input bytes consumed (compressed bytes for gzip), for progress.
    """
    sink = Sink(lang, shard.key, docs_path, quarantine_path, options)
    try:
        if shard.path.endswith(".parquet"):
            read_parquet(shard, sink, options, on_bytes)
        else:
            read_jsonl(shard, sink, options, on_bytes)
    finally:
        stats = sink.close()
    stats.bytes_read = shard.size_bytes
    return stats
