"""Reading raw web-text shards: discovery, streaming parse, and quarantine of bad records.

A shard is one file of documents for one language: JSONL (optionally gzip-compressed) or Parquet, with
CulturaX-style columns (``text``, ``url``, ``timestamp``, ``source``; the text column name is configurable).
Shards are parsed in batches into a staged Parquet file, so memory stays bounded whatever the shard's size.
A bad record never costs the good records around it: it becomes a quarantine row with a reason.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from xinst_assets.core.text import content_id

SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
SNIPPET_CHARS = 200

DOC_SCHEMA = pa.schema(
    [
        ("lang", pa.string()),
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("url", pa.string()),
        ("timestamp", pa.string()),
        ("source", pa.string()),
        ("shard", pa.string()),
        ("position", pa.int64()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("lang", pa.string()),
        ("shard", pa.string()),
        ("position", pa.int64()),  # 1-based line (JSONL) or row (Parquet); null when the whole file is bad
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("snippet", pa.string()),
    ]
)

# Quarantine reasons (stable strings: they are counted in metadata and queried in tests).
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
NULL_TEXT = "null_text"
NON_STRING_TEXT = "non_string_text"
EMPTY_TEXT = "empty_text"
TOO_LONG = "too_long"
INVALID_UTF8 = "invalid_utf8"
INVALID_UNICODE = "invalid_unicode"
TRUNCATED_FILE = "truncated_file"
SCHEMA_MISMATCH = "schema_mismatch"
UNREADABLE_FILE = "unreadable_file"


@dataclass(frozen=True)
class Shard:
    """A source file and the facts that tell whether it changed since it was last read."""

    path: str
    size_bytes: int
    mtime_ns: int

    @property
    def fingerprint(self) -> str:
        return f"{self.size_bytes}:{self.mtime_ns}"

    @classmethod
    def of(cls, path: str | Path) -> "Shard":
        stat = os.stat(path)
        return cls(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class ReadOptions:
    """How to read records: which column holds the text, and the largest document accepted."""

    text_column: str = "text"
    url_column: str = "url"
    timestamp_column: str = "timestamp"
    source_column: str = "source"
    # 1M characters: CulturaX/FineWeb documents are almost all under 100k; larger ones are dumps or binaries.
    max_doc_chars: int = 1_000_000
    batch_rows: int = 5_000


@dataclass
class ShardStats:
    """What reading one shard produced."""

    rows: int = 0
    quarantined: Counter = field(default_factory=Counter)
    bytes_read: int = 0


def _is_supported(path: str) -> bool:
    return path.endswith(SUFFIXES)


def discover_shards(patterns: list[str], lang: str) -> list[Shard]:
    """Find the shards of ``lang`` under the configured source patterns.

    Each pattern is either a folder laid out as ``<folder>/<lang>/**/<file>`` or a glob containing ``{lang}``
    (``/data/culturax/{lang}/*.parquet``, ``/data/{lang}_*.jsonl.gz``). Results are sorted and unique.
    """
    found: set[str] = set()
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if "{lang}" in expanded:
            matches = glob.glob(expanded.format(lang=lang), recursive=True)
        elif os.path.isdir(expanded):
            matches = glob.glob(os.path.join(expanded, lang, "**", "*"), recursive=True)
        else:
            raise ValueError(
                f"raw source {pattern!r} is neither a folder (laid out as <folder>/<lang>/...) "
                "nor a glob containing '{lang}'"
            )
        found.update(m for m in matches if os.path.isfile(m) and _is_supported(m))
    return [Shard.of(p) for p in sorted(found)]


def _snippet(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:SNIPPET_CHARS]


def check_text(value: Any, max_chars: int) -> tuple[str, str] | None:
    """Why ``value`` is not a usable document text, as (reason, detail); ``None`` if it is usable."""
    if value is None:
        return NULL_TEXT, "text is null"
    if not isinstance(value, str):
        return NON_STRING_TEXT, f"text is a {type(value).__name__}, not a string"
    if not value.strip():
        return EMPTY_TEXT, "text is empty or whitespace only"
    if len(value) > max_chars:
        return TOO_LONG, f"{len(value):,} characters > max_doc_chars {max_chars:,}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return INVALID_UNICODE, f"unpaired surrogate at character {exc.start}"
    return None


class _Sink:
    """Buffers good rows and quarantine rows, flushing each to its Parquet file in batches."""

    def __init__(self, lang: str, shard: str, docs_path: Path, quarantine_path: Path, batch_rows: int) -> None:
        self.lang, self.shard, self.batch_rows = lang, shard, batch_rows
        self._docs = pq.ParquetWriter(docs_path, DOC_SCHEMA)
        self._quarantine = pq.ParquetWriter(quarantine_path, QUARANTINE_SCHEMA)
        self._doc_rows: list[dict[str, Any]] = []
        self._bad_rows: list[dict[str, Any]] = []
        self.stats = ShardStats()

    def good(self, position: int, text: str, url: Any, timestamp: Any, source: Any) -> None:
        self._doc_rows.append(
            {
                "lang": self.lang,
                "doc_id": content_id(text),
                "text": text,
                "url": None if url is None else str(url),
                "timestamp": None if timestamp is None else str(timestamp),
                "source": None if source is None else str(source),
                "shard": self.shard,
                "position": position,
            }
        )
        self.stats.rows += 1
        if len(self._doc_rows) >= self.batch_rows:
            self._flush_docs()

    def bad(self, position: int | None, reason: str, detail: str, snippet: Any = None) -> None:
        self._bad_rows.append(
            {
                "lang": self.lang,
                "shard": self.shard,
                "position": position,
                "reason": reason,
                "detail": detail,
                "snippet": None if snippet is None else _snippet(snippet).encode("utf-8", "replace").decode(),
            }
        )
        self.stats.quarantined[reason] += 1
        if len(self._bad_rows) >= self.batch_rows:
            self._flush_bad()

    def _flush_docs(self) -> None:
        if self._doc_rows:
            self._docs.write_table(pa.Table.from_pylist(self._doc_rows, schema=DOC_SCHEMA))
            self._doc_rows = []

    def _flush_bad(self) -> None:
        if self._bad_rows:
            self._quarantine.write_table(pa.Table.from_pylist(self._bad_rows, schema=QUARANTINE_SCHEMA))
            self._bad_rows = []

    def close(self) -> ShardStats:
        self._flush_docs()
        self._flush_bad()
        self._docs.close()
        self._quarantine.close()
        return self.stats


def _read_jsonl(shard: Shard, sink: _Sink, options: ReadOptions, on_bytes: Callable[[int], None]) -> None:
    opener = gzip.open if shard.path.endswith(".gz") else open
    position = 0
    try:
        with opener(shard.path, "rb") as handle:
            for raw_line in handle:
                position += 1
                on_bytes(len(raw_line))
                if not raw_line.strip():
                    continue  # blank lines are not records
                try:
                    line = raw_line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    sink.bad(position, INVALID_UTF8, f"invalid UTF-8 byte at offset {exc.start}",
                             raw_line.decode("utf-8", "replace"))
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    sink.bad(position, MALFORMED_JSON, f"{exc.msg} at column {exc.colno}", line)
                    continue
                if not isinstance(record, dict):
                    sink.bad(position, NOT_AN_OBJECT, f"record is a JSON {type(record).__name__}", line)
                    continue
                if options.text_column not in record:
                    sink.bad(position, MISSING_TEXT, f"no {options.text_column!r} field", line)
                    continue
                text = record[options.text_column]
                problem = check_text(text, options.max_doc_chars)
                if problem:
                    sink.bad(position, *problem, snippet=text)
                    continue
                sink.good(
                    position,
                    text,
                    record.get(options.url_column),
                    record.get(options.timestamp_column),
                    record.get(options.source_column),
                )
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        # A truncated or corrupt compressed file: keep every record read before the damage.
        sink.bad(position + 1, TRUNCATED_FILE, f"file ends or breaks after line {position}: {exc}")


def _read_parquet(shard: Shard, sink: _Sink, options: ReadOptions, on_bytes: Callable[[int], None]) -> None:
    try:
        parquet = pq.ParquetFile(shard.path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        sink.bad(None, UNREADABLE_FILE, f"not a readable Parquet file: {exc}")
        return
    schema = parquet.schema_arrow
    names = set(schema.names)
    if options.text_column not in names:
        sink.bad(None, SCHEMA_MISMATCH,
                 f"no column {options.text_column!r}; columns are {sorted(names)}")
        return
    text_type = schema.field(options.text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        sink.bad(None, SCHEMA_MISMATCH, f"column {options.text_column!r} has type {text_type}, not string")
        return
    optional = [options.url_column, options.timestamp_column, options.source_column]
    columns = [options.text_column] + [c for c in optional if c in names]
    per_row_bytes = max(shard.size_bytes // max(parquet.metadata.num_rows, 1), 1)
    position = 0
    try:
        for batch in parquet.iter_batches(batch_size=options.batch_rows, columns=columns):
            data = batch.to_pydict()
            texts = data[options.text_column]
            empty = [None] * len(texts)
            urls = data.get(options.url_column, empty)
            stamps = data.get(options.timestamp_column, empty)
            sources = data.get(options.source_column, empty)
            for i, text in enumerate(texts):
                position += 1
                problem = check_text(text, options.max_doc_chars)
                if problem:
                    sink.bad(position, *problem, snippet=text)
                else:
                    sink.good(position, text, urls[i], stamps[i], sources[i])
            on_bytes(per_row_bytes * len(texts))
    except Exception as exc:  # a damaged row group: keep what came before it
        sink.bad(position + 1, TRUNCATED_FILE, f"Parquet read failed after row {position}: {exc}")


def stage_shard(
    shard: Shard,
    lang: str,
    docs_path: Path,
    quarantine_path: Path,
    options: ReadOptions = ReadOptions(),
    on_bytes: Callable[[int], None] = lambda n: None,
) -> ShardStats:
    """Parse ``shard`` into two Parquet files: good documents and quarantined records.

    ``on_bytes`` is called with the number of input bytes consumed, for progress reporting.
    """
    sink = _Sink(lang, shard.path, docs_path, quarantine_path, options.batch_rows)
    try:
        if shard.path.endswith(".parquet"):
            _read_parquet(shard, sink, options, on_bytes)
        else:
            _read_jsonl(shard, sink, options, on_bytes)
    finally:
        stats = sink.close()
    stats.bytes_read = shard.size_bytes
    return stats

