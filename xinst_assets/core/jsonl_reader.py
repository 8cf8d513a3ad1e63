"""Reading JSONL and JSONL.gz shards line by line, with a byte cap per line enforced before decoding."""

from __future__ import annotations

import codecs
import gzip
import json
import os
import zlib
from collections import Counter
from typing import Any, BinaryIO, Callable, Iterator

from xinst_assets.core import records as rules
from xinst_assets.core.discovery import Shard
from xinst_assets.core.records import Rejection
from xinst_assets.core.staging import (
    CHANGED_DURING_READ,
    DUPLICATE_KEY,
    EMPTY_FILE,
    INVALID_UTF8,
    JSON_ARRAY_FILE,
    MALFORMED_JSON,
    MISSING_TEXT,
    NOT_AN_OBJECT,
    NOT_UTF8_FILE,
    RECORD_TOO_LARGE,
    SNIPPET_CHARS,
    TRUNCATED_FILE,
    UNREADABLE_FILE,
    ReadOptions,
    ShardStats,
    Sink,
    file_changed,
    open_problem,
    open_regular,
)

_SKIP_CHUNK = 1 << 20  # an oversized line is skipped in pieces of this size
_loads = json.JSONDecoder(strict=False).decode
_PROGRESS_EVERY_LINES = 4096


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

    def __init__(self, sink: Sink, options: ReadOptions) -> None:
        self.sink, self.options = sink, options
        self.columns = options.field_columns()
        self.field_keys = list(self.columns.values())  # in records.FIELDS order
        keys = dict.fromkeys([options.text_column, *self.columns.values()])
        self.quoted_keys = [(k, json.dumps(k, ensure_ascii=False)) for k in keys]
        self.first_record_is_array = False

    def line(self, position: int, data: bytes) -> None:
        sink, options = self.sink, self.options
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            sink.bad(position, INVALID_UTF8, f"invalid UTF-8 byte at offset {exc.start}", data.decode("utf-8", "replace"))
            return
        try:
            # strict=False: raw control characters inside strings (a tab, a NUL from a sloppy writer) are read,
            # then cleaned by the record rules, instead of costing the record
            record = _loads(line)
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
        duplicate = self._duplicate_key(line, record)
        if duplicate:
            sink.bad(position, DUPLICATE_KEY, f"field {duplicate!r} appears more than once: JSON readers disagree "
                                              "on which value wins", line)
            return
        if options.text_column not in record:
            sink.bad(position, MISSING_TEXT, f"no {options.text_column!r} field", line)
            return
        get = record.get
        fields = [get(key) for key in self.field_keys]
        result = rules.clean_record(record[options.text_column], fields, options.max_doc_chars, options.field_caps)
        if isinstance(result, Rejection):
            sink.bad(position, result.reason, result.detail, result.snippet if result.snippet is not None else line)
        else:
            sink.good(position, result)

    def _duplicate_key(self, line: str, record: dict) -> str | None:
        """A field read that the line's object holds more than once (checked exactly only when the quoted name
        of a key the record has appears twice in the line, which is rare)."""
        for key, quoted in self.quoted_keys:
            if key in record and line.count(quoted) > 1:
                break
        else:
            return None
        pairs = json.JSONDecoder(strict=False, object_pairs_hook=lambda p: p).decode(line)
        counts = Counter(key for key, _ in pairs)
        wanted = {self.options.text_column, *self.columns.values()}
        return next((key for key, n in counts.items() if n > 1 and key in wanted), None)


def read_jsonl(shard: Shard, sink: Sink, options: ReadOptions, on_bytes: Callable[[int], None]) -> None:
    """Read a JSONL or JSONL.gz shard into ``sink``: records, quarantined lines and file-level problems."""
    try:
        raw = open_regular(shard.path)
    except OSError as exc:
        sink.file_issue(UNREADABLE_FILE, open_problem(exc))
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
                        data = data.removeprefix(codecs.BOM_UTF8)  # a byte-order mark is not part of the first record
                if position % _PROGRESS_EVERY_LINES == 0:
                    reported = _report(raw, reported, on_bytes)
                if oversized:
                    sink.bad(position, RECORD_TOO_LARGE,
                             f"line of {size:,} bytes > max_record_bytes {options.max_record_bytes:,}; not parsed",
                             data.decode("utf-8", "replace"))
                    continue
                if data.isspace():
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
                # A truncated or corrupt file: every record read before the damage is kept. Deflate may notice
                # damage only some way after it (at the latest by the checksum at the end of the stream).
                garbled = ("; lines decoded shortly before the break may be garbled: replace the file"
                           if compressed and not isinstance(exc, EOFError) else "")
                sink.file_issue(TRUNCATED_FILE, f"file ends or breaks after line {position}: {exc}{garbled}",
                                position + 1)
        _report(raw, reported, on_bytes)
        if file_changed(before, os.fstat(raw.fileno())):
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


def _empty_detail(shard: Shard, stats: ShardStats) -> str:
    if shard.size_bytes == 0:
        return "the file is empty (0 bytes)"
    if stats.blank_lines:
        return f"the file holds no record, only {stats.blank_lines:,} blank or whitespace-only lines"
    return "the file holds no record"

