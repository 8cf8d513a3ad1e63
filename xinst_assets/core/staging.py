"""What reading a shard produces, shared by the JSONL and Parquet readers: the staged tables' schemas, the
quarantine reasons, the read options and caps, the per-shard counts, and the sink that writes both tables in
bounded batches. Also the one safe way to open a shard."""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from xinst_assets.core import records as rules
from xinst_assets.core.records import CleanRecord, FieldCaps
from xinst_assets.core.text import content_id

SNIPPET_CHARS = 200
READ_BUFFER = 1 << 20

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
        ("source_id", pa.string()),  # the record's own id, as the source wrote it
        ("source_lang", pa.string()),  # the record's own language field, if any
        ("control_chars", pa.int32()),  # control characters removed or replaced (records.py's rule)
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

# Quarantine reasons of one record (stable strings: counted in metadata and queried in tests).
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
DUPLICATE_KEY = "duplicate_key"
RECORD_TOO_LARGE = "record_too_large"
INVALID_UTF8 = "invalid_utf8"
# Reasons of a whole file (or a part of one): no record count, the file-level rows of the shard report.
EMPTY_FILE = "empty_file"
TRUNCATED_FILE = "truncated_file"
SCHEMA_MISMATCH = "schema_mismatch"
UNREADABLE_FILE = "unreadable_file"
NOT_UTF8_FILE = "not_utf8_file"
JSON_ARRAY_FILE = "json_array_file"
CHANGED_DURING_READ = "changed_during_read"
IGNORED_COLUMN = "ignored_column"
DAMAGED_ROW_GROUP = "damaged_row_group"
OVERSIZED_PAGE = "oversized_page"
FILE_REASONS = frozenset({EMPTY_FILE, TRUNCATED_FILE, SCHEMA_MISMATCH, UNREADABLE_FILE, NOT_UTF8_FILE,
                          JSON_ARRAY_FILE, CHANGED_DURING_READ, IGNORED_COLUMN, DAMAGED_ROW_GROUP, OVERSIZED_PAGE})


@dataclass(frozen=True)
class ReadOptions:
    """How to read records: which columns hold what, and the caps that bound a record and memory."""

    text_column: str = "text"
    url_column: str = "url"
    timestamp_column: str = "timestamp"
    source_column: str = "source"
    id_column: str = "id"
    lang_column: str = "lang"
    # 1M characters: CulturaX/FineWeb documents are almost all under 100k; larger ones are dumps or binaries.
    max_doc_chars: int = 1_000_000
    # The longest JSONL line (or Parquet cell) read at all, checked before decoding: 8 MiB holds a 1M-character
    # document even when written with \uXXXX escapes (6 bytes a character) plus its fields.
    max_record_bytes: int = 8 << 20
    field_caps: FieldCaps = FieldCaps()
    # The largest Parquet page decoded (Arrow decodes a page whole, so this bounds a Parquet read's memory):
    # four records' worth; writers cut pages at about 1 MB unless one value is larger.
    max_page_bytes: int = 32 << 20
    batch_rows: int = 5_000
    # Good rows are flushed when their texts reach this many characters: bounds the buffer whatever the rows.
    batch_chars: int = 16 << 20

    def field_columns(self) -> dict[str, str]:
        """Raw field name (records.FIELDS) -> the column or JSON key it is read from."""
        return {"url": self.url_column, "timestamp": self.timestamp_column, "source": self.source_column,
                "source_id": self.id_column, "source_lang": self.lang_column}


@dataclass
class ShardStats:
    """What reading one shard produced. Every record read is a good row or a quarantined one:
    ``records == rows + sum(quarantined.values())``; file-level problems are listed apart."""

    records: int = 0
    rows: int = 0
    quarantined: Counter = field(default_factory=Counter)
    file_issues: list[tuple[str, str]] = field(default_factory=list)
    blank_lines: int = 0
    rows_with_control_chars: int = 0
    bytes_read: int = 0
    # The read cannot be trusted as the shard's current state (unreadable, changed while read): its
    # fingerprint is not recorded, so the next run reads it again.
    read_again: bool = False


def _snippet(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)[: SNIPPET_CHARS * 4]
    text = rules.clean_text(text[:SNIPPET_CHARS])[0]
    return text.encode("utf-8", "replace").decode("utf-8")


class Sink:
    """Buffers good rows and quarantine rows, flushing each to its Parquet file in bounded batches."""

    def __init__(self, lang: str, shard: str, docs_path: Path, quarantine_path: Path, options: ReadOptions) -> None:
        self.lang, self.shard = lang, shard
        self.batch_rows, self.batch_chars = options.batch_rows, options.batch_chars
        self._docs = pq.ParquetWriter(docs_path, DOC_SCHEMA)
        self._quarantine = pq.ParquetWriter(quarantine_path, QUARANTINE_SCHEMA)
        # good rows column by column (cheaper than a dict a row); the fields in records.FIELDS order
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._fields: list[tuple] = []
        self._positions: list[int] = []
        self._controls: list[int] = []
        self._doc_chars = 0
        self._bad_rows: list[dict[str, Any]] = []
        self.stats = ShardStats()

    def good(self, position: int, record: CleanRecord) -> None:
        """Keep one document."""
        self._ids.append(content_id(record.text))
        self._texts.append(record.text)
        self._fields.append(record.fields)
        self._positions.append(position)
        self._controls.append(record.control_chars)
        stats = self.stats
        stats.records += 1
        stats.rows += 1
        if record.control_chars:
            stats.rows_with_control_chars += 1
        self._doc_chars += len(record.text)
        if len(self._ids) >= self.batch_rows or self._doc_chars >= self.batch_chars:
            self._flush_docs()

    def bad(self, position: int | None, reason: str, detail: str, snippet: Any = None) -> None:
        """Quarantine one record."""
        self.stats.records += 1
        self.stats.quarantined[reason] += 1
        self._add_bad(position, reason, detail, snippet)

    def file_issue(self, reason: str, detail: str, position: int | None = None) -> None:
        """Record a problem of the whole file (or of a part of it that cannot be split into records)."""
        self.stats.file_issues.append((reason, detail))
        self._add_bad(position, reason, detail, None)

    def _add_bad(self, position: int | None, reason: str, detail: str, snippet: Any) -> None:
        self._bad_rows.append(
            {"lang": self.lang, "shard": self.shard, "position": position, "reason": reason, "detail": detail,
             "snippet": None if snippet is None else _snippet(snippet)}
        )
        if len(self._bad_rows) >= self.batch_rows:
            self._flush_bad()

    def _flush_docs(self) -> None:
        n = len(self._ids)
        if not n:
            return
        columns = {"lang": [self.lang] * n, "doc_id": self._ids, "text": self._texts,
                   **dict(zip(rules.FIELDS, map(list, zip(*self._fields)))),
                   "shard": [self.shard] * n, "position": self._positions, "control_chars": self._controls}
        self._docs.write_table(pa.Table.from_pydict(columns, schema=DOC_SCHEMA))
        self._ids, self._texts, self._fields, self._positions, self._controls = [], [], [], [], []
        self._doc_chars = 0

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


def open_regular(path: str) -> BinaryIO:
    """Open ``path`` for reading only if it is still a regular file (not a link swapped in since discovery,
    not a FIFO that would block the open for ever)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=READ_BUFFER)
    except BaseException:
        os.close(fd)
        raise


def open_problem(exc: OSError) -> str:
    """One line saying why a shard cannot be opened, and what to do."""
    if isinstance(exc, PermissionError):
        return "permission denied: give the pipeline's user read permission on the file; it is read again next run"
    if exc.errno == errno.ELOOP:
        return "the path became a symbolic link after discovery; it is checked again next run"
    if exc.errno == errno.ENOENT:
        return "the file disappeared after discovery; it is checked again next run"
    return f"cannot open it: {exc.strerror or exc}; it is read again next run"



def file_changed(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether a file's status changed between two reads of it (size, modification time, inode)."""
    return (before.st_size, before.st_mtime_ns, before.st_ino) != (after.st_size, after.st_mtime_ns, after.st_ino)
