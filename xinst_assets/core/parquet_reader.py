"""Reading Parquet shards row group by row group, in batches sized from the row group's own byte count, never
decoding a page larger than ``max_page_bytes`` (see :mod:`xinst_assets.core.parquet_pages`)."""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xinst_assets.core import records as rules
from xinst_assets.core.discovery import Shard
from xinst_assets.core.parquet_pages import PageHeaderError, largest_page
from xinst_assets.core.records import FIELD_TOO_LONG, Rejection
from xinst_assets.core.staging import (
    CHANGED_DURING_READ,
    DAMAGED_ROW_GROUP,
    EMPTY_FILE,
    IGNORED_COLUMN,
    INVALID_UTF8,
    OVERSIZED_PAGE,
    READ_BUFFER,
    RECORD_TOO_LARGE,
    SCHEMA_MISMATCH,
    SNIPPET_CHARS,
    UNREADABLE_FILE,
    ReadOptions,
    Sink,
    file_changed,
    open_problem,
    open_regular,
)


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


def read_parquet(shard: Shard, sink: Sink, options: ReadOptions, on_bytes: Callable[[int], None]) -> None:
    try:
        raw = open_regular(shard.path)
    except OSError as exc:
        sink.file_issue(UNREADABLE_FILE, open_problem(exc))
        sink.stats.read_again = True
        return
    with raw:
        before = os.fstat(raw.fileno())
        try:
            parquet = pq.ParquetFile(raw, buffer_size=READ_BUFFER, pre_buffer=False)
            schema = parquet.schema_arrow
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            sink.file_issue(UNREADABLE_FILE, f"not a readable Parquet file: {exc}")
            return
        fields = _parquet_fields(schema, sink, options)
        if fields is None:
            return
        plans = _row_group_plans(parquet, raw, sink, options, fields)
        _parquet_rows(parquet, shard, sink, options, plans, on_bytes)
        if file_changed(before, os.fstat(raw.fileno())):
            sink.file_issue(CHANGED_DURING_READ, "the file changed while it was read; its rows as read are kept "
                                                 "and it is read again next run")
            sink.stats.read_again = True
    if sink.stats.records == 0 and not sink.stats.file_issues:
        sink.file_issue(EMPTY_FILE, "the file holds no row" + (" (0 bytes)" if shard.size_bytes == 0 else ""))


def _parquet_fields(schema: pa.Schema, sink: Sink, options: ReadOptions) -> dict[str, str] | None:
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


def _row_group_plans(parquet: pq.ParquetFile, raw: BinaryIO, sink: Sink, options: ReadOptions,
                     fields: dict[str, str]) -> list[dict[str, str] | str]:
    """For each row group, the field columns to read with the text, or why it cannot be read at all.

    A page over ``max_page_bytes`` (Arrow decodes a page whole) in the text column leaves the row group unread
    (``oversized_page``); in a field column, that column is left out of the row group (``ignored_column``).
    The page headers are walked here, before any row group is read, on the same file."""
    meta = parquet.metadata
    limit = options.max_page_bytes
    plans: list[dict[str, str] | str] = []
    for group in range(meta.num_row_groups):
        info = meta.row_group(group)
        chunks = {info.column(j).path_in_schema: info.column(j) for j in range(info.num_columns)}
        wanted = {options.text_column: None, **{column: name for name, column in fields.items()}}
        kept = dict(fields)
        problem = None
        for column, name in wanted.items():
            chunk = chunks.get(column)
            if chunk is None:
                continue
            start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
            try:
                largest = largest_page(raw, start, chunk.total_compressed_size, chunk.total_uncompressed_size, limit)
            except (PageHeaderError, OSError, ValueError) as exc:
                problem = f"{DAMAGED_ROW_GROUP}: a page header of column {column!r} cannot be read: {exc}"
                break
            if largest <= limit:
                continue
            if name is None:
                problem = (f"{OVERSIZED_PAGE}: column {column!r} has a page of {largest:,} bytes > max_page_bytes "
                           f"{limit:,} (a cell that large, or a writer's oversized pages: rewrite the file with "
                           "smaller pages)")
                break
            kept.pop(name, None)
            sink.file_issue(IGNORED_COLUMN, f"row group {group}: column {column!r} has a page of {largest:,} bytes "
                                            f"> max_page_bytes {limit:,}: not read in this row group")
        plans.append(problem if problem else kept)
    return plans


def _parquet_rows(parquet: pq.ParquetFile, shard: Shard, sink: Sink, options: ReadOptions,
                  plans: list[dict[str, str] | str], on_bytes: Callable[[int], None]) -> None:
    """Read every row group in batches sized from its byte count; a damaged row group, or one with a page too
    large to decode, costs its own rows only."""
    meta = parquet.metadata
    file_per_row = shard.size_bytes / max(meta.num_rows, 1)  # progress in file bytes
    position = 0
    for group, plan in enumerate(plans):
        info = meta.row_group(group)
        rows = info.num_rows
        start = position
        if isinstance(plan, str):
            reason, detail = plan.split(": ", 1)
            sink.file_issue(reason, f"row group {group} (rows {start + 1:,}-{start + rows:,}, {rows:,} rows) not "
                                    f"read: {detail}", start + 1)
            position += rows
            on_bytes(int(file_per_row * rows))
            continue
        fields = plan
        columns = [options.text_column, *dict.fromkeys(fields.values())]
        chunks = [info.column(j) for j in range(info.num_columns)]
        size = sum(c.total_uncompressed_size for c in chunks if c.path_in_schema in columns)
        per_row = max(size // max(rows, 1), 1)
        batch_rows = max(1, min(options.batch_rows, options.batch_chars // per_row))
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


def _parquet_batch(batch: pa.RecordBatch, offset: int, sink: Sink, options: ReadOptions, fields: dict[str, str]) -> None:
    texts, big_texts = _cells(_normalise(batch.column(options.text_column)), options.max_record_bytes)
    values: dict[str, list[Any]] = {}
    big_fields: dict[str, dict[int, tuple[int, str]]] = {}
    for name, column in fields.items():
        cap = options.field_caps.cap(name) * 4  # a longer cell has more characters than the cap for sure
        values[name], big_fields[name] = _cells(_normalise(batch.column(column)), cap)
    aligned = [values.get(name) for name in rules.FIELDS]  # None: the file has no such column
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
            row = [None if column is None else _decode(column[i]) for column in aligned]
        except UnicodeDecodeError as exc:
            sink.bad(position, INVALID_UTF8, f"invalid UTF-8 byte at offset {exc.start}",
                     exc.object.decode("utf-8", "replace"))
            continue
        result = rules.clean_record(text, row, options.max_doc_chars, options.field_caps)
        if isinstance(result, Rejection):
            sink.bad(position, result.reason, result.detail, result.snippet)
        else:
            sink.good(position, result)

