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

import codecs
import errno
import gzip
import json
import os
import stat
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xinst_assets.core import records as rules
from xinst_assets.core.discovery import (  # noqa: F401  (re-exported: the shard API lives here for callers)
    READER_VERSION,
    SUFFIXES,
    Discovery,
    Shard,
    SourceError,
    discover_shards,
)
from xinst_assets.core.records import (  # noqa: F401  (re-exported reasons)
    BINARY_CONTENT,
    EMPTY_TEXT,
    FIELD_TOO_LONG,
    INVALID_FIELD,
    INVALID_UNICODE,
    NON_STRING_TEXT,
    NULL_TEXT,
    TOO_LONG,
    CleanRecord,
    FieldCaps,
    Rejection,
)
from xinst_assets.core.text import content_id

SNIPPET_CHARS = 200
_SKIP_CHUNK = 1 << 20  # an oversized line is skipped in pieces of this size
_READ_BUFFER = 1 << 20
_PROGRESS_EVERY_LINES = 4096

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
FILE_REASONS = frozenset({EMPTY_FILE, TRUNCATED_FILE, SCHEMA_MISMATCH, UNREADABLE_FILE, NOT_UTF8_FILE,
                          JSON_ARRAY_FILE, CHANGED_DURING_READ, IGNORED_COLUMN, DAMAGED_ROW_GROUP})


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


class _Sink:
    """Buffers good rows and quarantine rows, flushing each to its Parquet file in bounded batches."""

    def __init__(self, lang: str, shard: str, docs_path: Path, quarantine_path: Path, options: ReadOptions) -> None:
        self.lang, self.shard = lang, shard
        self.batch_rows, self.batch_chars = options.batch_rows, options.batch_chars
        self._docs = pq.ParquetWriter(docs_path, DOC_SCHEMA)
        self._quarantine = pq.ParquetWriter(quarantine_path, QUARANTINE_SCHEMA)
        self._doc_rows: list[dict[str, Any]] = []
        self._doc_chars = 0
        self._bad_rows: list[dict[str, Any]] = []
        self.stats = ShardStats()

    def good(self, position: int, record: CleanRecord) -> None:
        self._doc_rows.append(
            {"lang": self.lang, "doc_id": content_id(record.text), "text": record.text, **record.fields,
             "shard": self.shard, "position": position, "control_chars": record.control_chars}
        )
        self.stats.records += 1
        self.stats.rows += 1
        self.stats.rows_with_control_chars += record.control_chars > 0
        self._doc_chars += len(record.text)
        if len(self._doc_rows) >= self.batch_rows or self._doc_chars >= self.batch_chars:
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
        if self._doc_rows:
            self._docs.write_table(pa.Table.from_pylist(self._doc_rows, schema=DOC_SCHEMA))
            self._doc_rows, self._doc_chars = [], 0

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


def _open_regular(path: str) -> BinaryIO:
    """Open ``path`` for reading only if it is still a regular file (not a link swapped in since discovery,
    not a FIFO that would block the open for ever)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=_READ_BUFFER)
    except BaseException:
        os.close(fd)
        raise


def _open_problem(exc: OSError) -> str:
    """One line saying why a shard cannot be opened, and what to do."""
    if isinstance(exc, PermissionError):
        return "permission denied: give the pipeline's user read permission on the file; it is read again next run"
    if exc.errno == errno.ELOOP:
        return "the path became a symbolic link after discovery; it is checked again next run"
    if exc.errno == errno.ENOENT:
        return "the file disappeared after discovery; it is checked again next run"
    return f"cannot open it: {exc.strerror or exc}; it is read again next run"


def bounded_lines(handle: BinaryIO, max_bytes: int) -> Iterator[tuple[bytes, int, bool]]:
    """Yield ``(data, size, oversized)`` for each line of ``handle``, never holding more than ``max_bytes + 1``
    bytes of one line: a longer line is skipped in pieces, and only its first bytes (for a snippet) and its
    size come back, with ``oversized`` set."""
    while True:
        data = handle.readline(max_bytes + 1)
        if not data:
            return
        if len(data) <= max_bytes or data.endswith(b"\n"):
            yield data, len(data), False
            continue
        head, size = data[: SNIPPET_CHARS * 4], len(data)
        del data
        while True:
            piece = handle.readline(_SKIP_CHUNK)
            size += len(piece)
            if not piece or piece.endswith(b"\n"):
                break
        yield head, size, True


class _JsonlReader:
    """Reads one JSONL shard's lines into a sink."""

    def __init__(self, sink: _Sink, options: ReadOptions) -> None:
        self.sink, self.options = sink, options
        self.columns = options.field_columns()
        keys = [options.text_column, *self.columns.values()]
        self.quoted_keys = [json.dumps(k, ensure_ascii=False) for k in keys]
        self.first_record_is_array = False

    def line(self, position: int, data: bytes) -> None:
        sink, options = self.sink, self.options
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            sink.bad(position, INVALID_UTF8, f"invalid UTF-8 byte at offset {exc.start}", data.decode("utf-8", "replace"))
            return
        try:
            record = json.loads(line)
        except RecursionError:
            sink.bad(position, MALFORMED_JSON, "nested too deeply to parse", line)
            return
        except ValueError as exc:  # JSONDecodeError, or an integer of more than 4,300 digits
            detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            sink.bad(position, MALFORMED_JSON, detail, line)
            return
        if not isinstance(record, dict):
            sink.bad(position, NOT_AN_OBJECT, f"record is a JSON {type(record).__name__}, not an object", line)
            return
        duplicate = self._duplicate_key(line)
        if duplicate:
            sink.bad(position, DUPLICATE_KEY, f"field {duplicate!r} appears more than once: JSON readers disagree "
                                              "on which value wins", line)
            return
        if options.text_column not in record:
            sink.bad(position, MISSING_TEXT, f"no {options.text_column!r} field", line)
            return
        fields = {name: record.get(column) for name, column in self.columns.items()}
        result = rules.clean_record(record[options.text_column], fields, options.max_doc_chars, options.field_caps)
        if isinstance(result, Rejection):
            sink.bad(position, result.reason, result.detail, result.snippet if result.snippet is not None else line)
        else:
            sink.good(position, result)

    def _duplicate_key(self, line: str) -> str | None:
        """A field read that the line's object holds more than once (checked exactly only when a key's quoted
        name appears twice in the line, which is rare)."""
        if not any(line.count(q) > 1 for q in self.quoted_keys):
            return None
        pairs = json.loads(line, object_pairs_hook=lambda p: p)
        counts = Counter(key for key, _ in pairs)
        wanted = {self.options.text_column, *self.columns.values()}
        return next((key for key, n in counts.items() if n > 1 and key in wanted), None)


def _read_jsonl(shard: Shard, sink: _Sink, options: ReadOptions, on_bytes: Callable[[int], None]) -> None:
    try:
        raw = _open_regular(shard.path)
    except OSError as exc:
        sink.file_issue(UNREADABLE_FILE, _open_problem(exc))
        sink.stats.read_again = True
        return
    reader = _JsonlReader(sink, options)
    compressed = shard.path.endswith(".gz")
    position = reported = 0
    with raw:
        before = os.fstat(raw.fileno())
        handle: Any = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            for data, size, oversized in bounded_lines(handle, options.max_record_bytes):
                position += 1
                if position == 1:
                    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                        sink.file_issue(NOT_UTF8_FILE, "the file starts with a UTF-16 byte-order mark: re-encode it "
                                                       "as UTF-8 (iconv -f UTF-16 -t UTF-8)")
                        return
                    if data.startswith(codecs.BOM_UTF8):
                        data = data[len(codecs.BOM_UTF8):]  # a byte-order mark is not part of the first record
                if position % _PROGRESS_EVERY_LINES == 0:
                    reported = _report(raw, reported, on_bytes)
                if oversized:
                    sink.bad(position, RECORD_TOO_LARGE,
                             f"line of {size:,} bytes > max_record_bytes {options.max_record_bytes:,}; not parsed",
                             data.decode("utf-8", "replace"))
                    continue
                if not data.strip():
                    sink.stats.blank_lines += 1
                    continue
                if sink.stats.records == 0 and data.lstrip().startswith(b"["):
                    reader.first_record_is_array = True
                reader.line(position, data)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            if compressed and position == 0 and isinstance(exc, gzip.BadGzipFile):
                sink.file_issue(UNREADABLE_FILE, f"not a gzip file ({exc}): remove the .gz suffix if it is plain "
                                                 "JSONL, or compress it")
            else:
                # A truncated or corrupt file: every record read before the damage is kept.
                sink.file_issue(TRUNCATED_FILE, f"file ends or breaks after line {position}: {exc}", position + 1)
        _report(raw, reported, on_bytes)
        if _changed(before, os.fstat(raw.fileno())):
            sink.file_issue(CHANGED_DURING_READ, "the file changed while it was read; its records as read are kept "
                                                 "and it is read again next run")
            sink.stats.read_again = True
    if reader.first_record_is_array and sink.stats.rows == 0:
        sink.file_issue(JSON_ARRAY_FILE, "the file looks like one JSON array, not JSON Lines (one object per line): "
                                         "convert it, e.g. with jq -c '.[]'")
    if sink.stats.records == 0 and not sink.stats.file_issues:
        sink.file_issue(EMPTY_FILE, _empty_detail(shard, sink.stats))


def _report(raw: BinaryIO, reported: int, on_bytes: Callable[[int], None]) -> int:
    """Report the input bytes consumed since ``reported`` (compressed bytes for gzip); return the new mark."""
    try:
        now = raw.tell()
    except (OSError, ValueError):
        return reported
    if now > reported:
        on_bytes(now - reported)
    return max(now, reported)


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ino) != (after.st_size, after.st_mtime_ns, after.st_ino)


def _empty_detail(shard: Shard, stats: ShardStats) -> str:
    if shard.size_bytes == 0:
        return "the file is empty (0 bytes)"
    if stats.blank_lines:
        return f"the file holds no record, only {stats.blank_lines:,} blank or whitespace-only lines"
    return "the file holds no record"


# ---------------------------------------------------------------------------------------------------- Parquet

def _text_like(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind) or kind in (pa.string_view(), pa.binary_view()))


def _scalar_like(kind: pa.DataType) -> bool:
    return _text_like(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(
        kind) or pa.types.is_temporal(kind) or pa.types.is_decimal(kind)


def _normalise(column: pa.Array) -> pa.Array:
    """A text-like column as (large) string or binary, and any scalar column as string."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if column.type == pa.string_view():
        return column.cast(pa.large_string())
    if column.type == pa.binary_view():
        return column.cast(pa.large_binary())
    if _text_like(column.type):
        return column
    return column.cast(pa.string())


def _cells(column: pa.Array, cap_bytes: int) -> tuple[list[Any], dict[int, tuple[int, str]]]:
    """The column's values as Python objects, with cells over ``cap_bytes`` bytes left out (None) and returned
    apart as row -> (bytes, first characters): a huge cell is never turned into a Python string."""
    lengths = pc.binary_length(column)
    over = pc.fill_null(pc.greater(lengths, cap_bytes), False)
    big: dict[int, tuple[int, str]] = {}
    if pc.any(over).as_py():
        for i in pc.indices_nonzero(over).to_pylist():
            head = column.slice(i, 1)
            head = (pc.utf8_slice_codeunits(head, 0, SNIPPET_CHARS) if pa.types.is_string(head.type)
                    or pa.types.is_large_string(head.type) else pc.binary_slice(head, 0, SNIPPET_CHARS))
            value = head[0].as_py()
            big[i] = (lengths[i].as_py(), value if isinstance(value, str) else value.decode("utf-8", "replace"))
        column = pc.if_else(over, pa.scalar(None, column.type), column)
    try:
        values = column.to_pylist()
    except UnicodeDecodeError:  # a string column holding invalid UTF-8: decode cell by cell below
        values = column.view(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()).to_pylist()
    return values, big


def _decode(value: Any) -> Any:
    """A binary cell as text, or an ``UnicodeDecodeError``."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _read_parquet(shard: Shard, sink: _Sink, options: ReadOptions, on_bytes: Callable[[int], None]) -> None:
    try:
        raw = _open_regular(shard.path)
    except OSError as exc:
        sink.file_issue(UNREADABLE_FILE, _open_problem(exc))
        sink.stats.read_again = True
        return
    with raw:
        before = os.fstat(raw.fileno())
        try:
            parquet = pq.ParquetFile(raw, buffer_size=_READ_BUFFER, pre_buffer=False)
            schema = parquet.schema_arrow
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            sink.file_issue(UNREADABLE_FILE, f"not a readable Parquet file: {exc}")
            return
        fields = _parquet_fields(schema, sink, options)
        if fields is None:
            return
        _parquet_rows(parquet, shard, sink, options, fields, on_bytes)
        if _changed(before, os.fstat(raw.fileno())):
            sink.file_issue(CHANGED_DURING_READ, "the file changed while it was read; its rows as read are kept "
                                                 "and it is read again next run")
            sink.stats.read_again = True
    if sink.stats.records == 0 and not sink.stats.file_issues:
        sink.file_issue(EMPTY_FILE, "the file holds no row" + (" (0 bytes)" if shard.size_bytes == 0 else ""))


def _parquet_fields(schema: pa.Schema, sink: _Sink, options: ReadOptions) -> dict[str, str] | None:
    """Check the text column and pick the field columns to read, as field name -> column (a field column of
    a nested type is left out, with a file-level row); None when the file cannot be read."""
    names = set(schema.names)
    if options.text_column not in names:
        sink.file_issue(SCHEMA_MISMATCH, f"no column {options.text_column!r}; columns are {sorted(names)}: set "
                                         "raw_sources.text_column to the column that holds the text")
        return None
    text_type = schema.field(options.text_column).type
    if not _text_like(text_type):
        sink.file_issue(SCHEMA_MISMATCH, f"column {options.text_column!r} has type {text_type}, not string")
        return None
    fields = {}
    for name, column in options.field_columns().items():
        if column not in names:
            continue
        kind = schema.field(column).type
        if _scalar_like(kind):
            fields[name] = column
        else:
            sink.file_issue(IGNORED_COLUMN, f"column {column!r} has type {kind}, not a scalar: not read")
    return fields


def _parquet_rows(parquet: pq.ParquetFile, shard: Shard, sink: _Sink, options: ReadOptions, fields: dict[str, str],
                  on_bytes: Callable[[int], None]) -> None:
    """Read every row group in batches sized from its byte count; a damaged row group costs its own rows only."""
    columns = [options.text_column, *dict.fromkeys(fields.values())]
    meta = parquet.metadata
    file_per_row = shard.size_bytes / max(meta.num_rows, 1)  # progress in file bytes
    position = 0
    for group in range(meta.num_row_groups):
        info = meta.row_group(group)
        rows = info.num_rows
        chunks = [info.column(j) for j in range(info.num_columns)]
        size = sum(c.total_uncompressed_size for c in chunks if c.path_in_schema in columns)
        per_row = max(size // max(rows, 1), 1)
        batch_rows = max(1, min(options.batch_rows, options.batch_chars // per_row))
        start = position
        try:
            for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns,
                                              use_threads=False):
                _parquet_batch(batch, position, sink, options, fields)
                position += batch.num_rows
                on_bytes(int(file_per_row * batch.num_rows))
        except Exception as exc:  # a damaged row group: keep what came before it, go on with the next
            lost = start + rows - position
            sink.file_issue(DAMAGED_ROW_GROUP, f"row group {group} (rows {start + 1:,}-{start + rows:,}) breaks "
                                               f"after row {position:,}: {lost:,} rows not read: {exc}", position + 1)
            position = start + rows


def _parquet_batch(batch: pa.RecordBatch, offset: int, sink: _Sink, options: ReadOptions, fields: dict[str, str]) -> None:
    texts, big_texts = _cells(_normalise(batch.column(options.text_column)), options.max_record_bytes)
    values: dict[str, list[Any]] = {}
    big_fields: dict[str, dict[int, tuple[int, str]]] = {}
    for name, column in fields.items():
        cap = options.field_caps.cap(name) * 4  # a longer cell has more characters than the cap for sure
        values[name], big_fields[name] = _cells(_normalise(batch.column(column)), cap)
    for i in range(batch.num_rows):
        position = offset + i + 1
        if i in big_texts:
            size, head = big_texts[i]
            sink.bad(position, RECORD_TOO_LARGE, f"text cell of {size:,} bytes > max_record_bytes "
                                                 f"{options.max_record_bytes:,}; not read", head)
            continue
        over = next((name for name, big in big_fields.items() if i in big), None)
        if over:
            size, head = big_fields[over][i]
            sink.bad(position, FIELD_TOO_LONG, f"{over} has {size:,} bytes > {options.field_caps.cap(over):,} "
                                               "characters", head)
            continue
        try:
            text = _decode(texts[i])
            row = {name: _decode(values[name][i]) for name in values}
        except UnicodeDecodeError as exc:
            sink.bad(position, INVALID_UTF8, f"invalid UTF-8 byte at offset {exc.start}",
                     exc.object.decode("utf-8", "replace"))
            continue
        result = rules.clean_record(text, row, options.max_doc_chars, options.field_caps)
        if isinstance(result, Rejection):
            sink.bad(position, result.reason, result.detail, result.snippet)
        else:
            sink.good(position, result)


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
    sink = _Sink(lang, shard.path, docs_path, quarantine_path, options)
    try:
        if shard.path.endswith(".parquet"):
            _read_parquet(shard, sink, options, on_bytes)
        else:
            _read_jsonl(shard, sink, options, on_bytes)
    finally:
        stats = sink.close()
    stats.bytes_read = shard.size_bytes
    return stats
