"""Hostile and odd shards: every good record is kept, every bad one is quarantined with its reason, nothing is
lost silently (the records read add up to the rows kept plus the rows quarantined), and file-level problems are
file-level rows."""

from __future__ import annotations

import codecs
import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xinst_assets.core import ingest
from xinst_assets.core.ingest import FILE_REASONS, ReadOptions, Shard, bounded_lines, stage_shard
from xinst_assets.core.text import content_id
from xinst_assets_tests.conftest import write_jsonl
from xinst_assets_tests.core.unprivileged import run_unprivileged, shared_folder

GOOD_A = {"text": "Habari za asubuhi kutoka Dar es Salaam.", "url": "https://a.example/1"}
GOOD_B = {"text": "Mvua kubwa inatarajiwa kesho mkoani Mbeya.", "url": "https://a.example/2"}


def _stage(path: Path, out: Path, options: ReadOptions = ReadOptions(), shard: Shard | None = None, **kwargs):
    """Stage one shard; check that nothing went missing; return (documents, record rows, file rows, stats)."""
    docs, bad = out / "docs.parquet", out / "bad.parquet"
    stats = stage_shard(shard or Shard.of(path), "sw", docs, bad, options, **kwargs)
    documents = pq.read_table(docs).to_pylist()
    quarantined = pq.read_table(bad).to_pylist()
    records = [q for q in quarantined if q["reason"] not in FILE_REASONS]
    files = [q for q in quarantined if q["reason"] in FILE_REASONS]
    assert len(documents) == stats.rows and len(records) == sum(stats.quarantined.values())
    assert stats.records == stats.rows + sum(stats.quarantined.values())  # no silent loss
    assert [(f["reason"], f["detail"]) for f in files] == stats.file_issues
    return documents, records, files, stats


def _reasons(rows: list[dict]) -> list[tuple]:
    return [(r["position"], r["reason"]) for r in rows]


# ------------------------------------------------------------------------------------------------ JSONL


def test_a_leading_utf8_byte_order_mark_does_not_cost_the_first_record(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps(GOOD_A).encode() + b"\n" + json.dumps(GOOD_B).encode() + b"\n")
    docs, records, files, _ = _stage(path, tmp_path)
    assert [d["text"] for d in docs] == [GOOD_A["text"], GOOD_B["text"]] and records == [] and files == []


@pytest.mark.parametrize("content, detail", [
    (b"", "0 bytes"),
    (b"\n   \n\t\r\n  ", "only 4 blank"),
])
def test_an_empty_or_whitespace_only_file_is_one_file_level_row(tmp_path, content, detail):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    docs, records, files, stats = _stage(path, tmp_path)
    assert docs == [] and records == [] and stats.records == 0
    assert [f["reason"] for f in files] == [ingest.EMPTY_FILE] and detail in files[0]["detail"]
    assert files[0]["position"] is None


def test_a_zero_byte_gzip_is_an_empty_file_not_a_crash(tmp_path):
    path = tmp_path / "nothing.jsonl.gz"
    path.write_bytes(b"")
    docs, _, files, _ = _stage(path, tmp_path)
    assert docs == [] and [f["reason"] for f in files] == [ingest.EMPTY_FILE]


def test_a_gzip_of_only_blank_lines_is_an_empty_file(tmp_path):
    path = tmp_path / "blank.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n\n  \n"))
    _, _, files, _ = _stage(path, tmp_path)
    assert [f["reason"] for f in files] == [ingest.EMPTY_FILE]


def test_a_line_over_the_byte_cap_inside_gzip_is_skipped_unparsed_and_its_neighbours_kept(tmp_path):
    # 3 MiB of one line: more than the skip piece (1 MiB), so the line is skipped in several pieces.
    huge = b'{"text": "' + b"a" * (3 << 20) + b'"}'
    path = write_jsonl(tmp_path / "bomb.jsonl.gz", [GOOD_A, huge, GOOD_B], compress=True)
    docs, records, _, _ = _stage(path, tmp_path, ReadOptions(max_record_bytes=64 << 10))
    assert [d["text"] for d in docs] == [GOOD_A["text"], GOOD_B["text"]]
    assert [d["position"] for d in docs] == [1, 3]
    assert _reasons(records) == [(2, ingest.RECORD_TOO_LARGE)]
    assert f"{len(huge) + 1:,} bytes" in records[0]["detail"]  # its size, newline included
    assert len(records[0]["snippet"]) <= ingest.SNIPPET_CHARS


def test_bounded_lines_never_returns_more_than_the_cap_and_counts_every_byte(tmp_path):
    import io

    data = b"short\n" + b"x" * 5000 + b"\n" + b"y" * 4096 + b"\n" + b"tail-without-newline"
    lines = list(bounded_lines(io.BufferedReader(io.BytesIO(data), buffer_size=64), 4096))
    assert [(size, oversized) for _, size, oversized in lines] == [(6, False), (5001, True), (4097, False), (20, False)]
    assert all(len(chunk) <= 4097 for chunk, _, _ in lines)
    assert sum(size for _, size, _ in lines) == len(data)


def test_a_huge_url_is_quarantined_as_field_too_long_and_never_copied_whole(tmp_path):
    long_url = "https://x.example/" + "a" * 100_000
    path = write_jsonl(tmp_path / "url.jsonl", [GOOD_A, {"text": "Maandishi mafupi.", "url": long_url}, GOOD_B])
    docs, records, _, _ = _stage(path, tmp_path)
    assert len(docs) == 2 and _reasons(records) == [(2, ingest.FIELD_TOO_LONG)]
    assert "url has 100,018 characters > 8,192" in records[0]["detail"]
    assert len(records[0]["snippet"]) <= ingest.SNIPPET_CHARS


@pytest.mark.parametrize("field, value", [("source", "s" * 300), ("timestamp", "2024-" * 60),
                                          ("id", "i" * 2_000), ("lang", "l" * 100)])
def test_every_short_field_has_its_own_cap(tmp_path, field, value):
    path = write_jsonl(tmp_path / "f.jsonl", [{**GOOD_A, field: value}, GOOD_B])
    docs, records, _, _ = _stage(path, tmp_path)
    assert len(docs) == 1 and _reasons(records) == [(1, ingest.FIELD_TOO_LONG)]


def test_nul_and_other_control_characters_are_removed_and_counted_per_document(tmp_path):
    records = [
        {"text": "Habari\x00 za\x07 leo", "url": "https://a.example/\x00x"},
        {"text": "Ukurasa wa kwanza\x0cUkurasa wa pili\x0bmstari"},
        {"text": "Tabo\tna mistari\r\nni sawa"},
    ]
    docs, bad, _, stats = _stage(write_jsonl(tmp_path / "c.jsonl", records), tmp_path)
    assert bad == []
    assert docs[0]["text"] == "Habari za leo" and docs[0]["url"] == "https://a.example/x"
    assert docs[0]["control_chars"] == 3 and docs[0]["doc_id"] == content_id("Habari za leo")
    assert docs[1]["text"] == "Ukurasa wa kwanza\nUkurasa wa pili\nmstari" and docs[1]["control_chars"] == 2
    assert docs[2]["text"] == records[2]["text"] and docs[2]["control_chars"] == 0
    assert stats.rows_with_control_chars == 2


def test_a_text_made_mostly_of_control_characters_is_binary_content(tmp_path):
    utf16_as_utf8 = "Hello world, this is text".encode("utf-16-le").decode("utf-8")  # a NUL after every letter
    docs, records, _, _ = _stage(write_jsonl(tmp_path / "b.jsonl", [{"text": utf16_as_utf8}, GOOD_A]), tmp_path)
    assert len(docs) == 1 and _reasons(records) == [(1, ingest.BINARY_CONTENT)]
    assert "\x00" not in records[0]["snippet"]


def test_a_text_that_is_only_control_characters_is_empty(tmp_path):
    docs, records, _, _ = _stage(write_jsonl(tmp_path / "e.jsonl", [{"text": "\x00\x01 \x02"}, GOOD_A]), tmp_path)
    assert len(docs) == 1 and _reasons(records) == [(1, ingest.EMPTY_TEXT)]


def test_the_records_own_id_and_lang_are_kept_as_provenance(tmp_path):
    records = [{**GOOD_A, "id": "cx-000017", "lang": "sw"}, {**GOOD_B, "id": 42}, {"text": "Bila kitambulisho."}]
    docs, bad, _, _ = _stage(write_jsonl(tmp_path / "p.jsonl", records), tmp_path)
    assert bad == []
    assert [(d["source_id"], d["source_lang"]) for d in docs] == [("cx-000017", "sw"), ("42", None), (None, None)]


def test_id_and_lang_columns_are_configurable(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"content": "Habari njema.", "doc_key": "k1", "language": "swh"}])
    options = ReadOptions(text_column="content", id_column="doc_key", lang_column="language")
    docs, _, _, _ = _stage(path, tmp_path, options)
    assert (docs[0]["source_id"], docs[0]["source_lang"]) == ("k1", "swh")


@pytest.mark.parametrize("value, kind", [({"a": 1}, "an object"), ([1, 2], "a list")])
def test_a_field_that_is_an_object_or_a_list_is_an_invalid_field(tmp_path, value, kind):
    path = write_jsonl(tmp_path / "o.jsonl", [{**GOOD_A, "url": value}, GOOD_B])
    docs, records, _, _ = _stage(path, tmp_path)
    assert len(docs) == 1 and _reasons(records) == [(1, ingest.INVALID_FIELD)]
    assert f"url is {kind}" in records[0]["detail"]


def test_numbers_and_booleans_in_fields_are_kept_as_strings(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", [{**GOOD_A, "timestamp": 1704067200, "source": True}])
    docs, _, _, _ = _stage(path, tmp_path)
    assert (docs[0]["timestamp"], docs[0]["source"]) == ("1704067200", "true")


def test_a_truncated_gzip_keeps_every_record_before_the_damage_and_says_where_it_broke(tmp_path):
    records = [{"text": f"Nakala ya {i} ni nzuri sana kwa wasomaji wote, bila shaka."} for i in range(3000)]
    data = gzip.compress(b"\n".join(json.dumps(r).encode() for r in records))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) * 2 // 3])  # cut in the middle of a record
    docs, bad, files, stats = _stage(path, tmp_path)
    assert 0 < len(docs) < 3000 and bad == []
    assert [d["text"] for d in docs] == [r["text"] for r in records[: len(docs)]]
    assert [f["reason"] for f in files] == [ingest.TRUNCATED_FILE]
    assert files[0]["position"] == len(docs) + 1 and f"after line {len(docs)}" in files[0]["detail"]


def test_a_gzip_with_corrupt_bytes_keeps_the_records_before_them_and_flags_the_file(tmp_path):
    records = [{"text": f"Hati ya {i} yenye maneno ya kutosha kwa mtihani huu."} for i in range(3000)]
    data = bytearray(gzip.compress(b"\n".join(json.dumps(r).encode() for r in records)))
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64
    path = tmp_path / "corrupt.jsonl.gz"
    path.write_bytes(bytes(data))
    docs, _, files, _ = _stage(path, tmp_path)
    # Deflate finds some damage only later (at the latest by the checksum at the end): lines decoded between
    # the damage and its detection can be garbled, which the file-level row says. Those before it are exact.
    intact = next(i for i, (d, r) in enumerate(zip(docs + [None], records)) if d is None or d["text"] != r["text"])
    assert intact >= 1000
    assert [f["reason"] for f in files] == [ingest.TRUNCATED_FILE] and "garbled" in files[0]["detail"]


def test_a_plain_file_named_gz_is_an_unreadable_file_that_says_what_to_do(tmp_path):
    path = write_jsonl(tmp_path / "plain.jsonl.gz", [GOOD_A])
    _, _, files, _ = _stage(path, tmp_path)
    assert [f["reason"] for f in files] == [ingest.UNREADABLE_FILE]
    assert "not a gzip file" in files[0]["detail"] and "remove the .gz suffix" in files[0]["detail"]


def test_invalid_utf8_in_the_middle_of_a_line_costs_that_line_only(tmp_path):
    lines = [GOOD_A, b'{"text": "Habari \xc3\x28 njema", "url": "u"}', GOOD_B]
    docs, records, _, _ = _stage(write_jsonl(tmp_path / "u.jsonl", lines), tmp_path)
    assert len(docs) == 2 and _reasons(records) == [(2, ingest.INVALID_UTF8)]
    assert "offset 17" in records[0]["detail"] and "Habari" in records[0]["snippet"]


def test_crlf_line_ends_read_like_lf(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"\r\n".join(json.dumps(r).encode() for r in (GOOD_A, GOOD_B)) + b"\r\n")
    docs, bad, _, _ = _stage(path, tmp_path)
    assert [d["text"] for d in docs] == [GOOD_A["text"], GOOD_B["text"]] and bad == []
    assert docs[1]["url"] == GOOD_B["url"]


def test_a_last_line_without_a_newline_is_a_record(tmp_path):
    path = tmp_path / "open.jsonl"
    path.write_bytes(json.dumps(GOOD_A).encode() + b"\n" + json.dumps(GOOD_B).encode())
    docs, _, _, _ = _stage(path, tmp_path)
    assert len(docs) == 2


def test_blank_lines_between_records_are_not_records(tmp_path):
    path = write_jsonl(tmp_path / "gaps.jsonl", [GOOD_A, b"", b"   ", GOOD_B])
    docs, bad, _, stats = _stage(path, tmp_path)
    assert [d["position"] for d in docs] == [1, 4] and bad == [] and stats.blank_lines == 2


def test_a_json_array_on_one_line_is_quarantined_with_a_hint_to_convert_it(tmp_path):
    path = tmp_path / "array.jsonl"
    path.write_text(json.dumps([GOOD_A, GOOD_B]))
    docs, records, files, _ = _stage(path, tmp_path)
    assert docs == [] and _reasons(records) == [(1, ingest.NOT_AN_OBJECT)]
    assert [f["reason"] for f in files] == [ingest.JSON_ARRAY_FILE] and "jq -c" in files[0]["detail"]


def test_a_pretty_printed_json_array_quarantines_every_line_and_hints_once(tmp_path):
    path = tmp_path / "pretty.jsonl"
    text = json.dumps([GOOD_A, GOOD_B], indent=2)
    path.write_text(text)
    docs, records, files, _ = _stage(path, tmp_path)
    assert docs == [] and len(records) == len(text.splitlines())
    assert [f["reason"] for f in files] == [ingest.JSON_ARRAY_FILE]


@pytest.mark.parametrize("line, kind", [(b'"just a string"', "str"), (b"42", "int"), (b"null", "NoneType"),
                                        (b"true", "bool")])
def test_a_record_that_is_a_json_scalar_is_not_an_object(tmp_path, line, kind):
    docs, records, _, _ = _stage(write_jsonl(tmp_path / "s.jsonl", [line, GOOD_A]), tmp_path)
    assert len(docs) == 1 and _reasons(records) == [(1, ingest.NOT_AN_OBJECT)]
    assert f"JSON {kind}" in records[0]["detail"]


def test_a_duplicate_text_key_is_ambiguous_and_quarantined(tmp_path):
    lines = [b'{"text": "Toleo la kwanza", "text": "Toleo la pili"}', GOOD_A]
    docs, records, _, _ = _stage(write_jsonl(tmp_path / "d.jsonl", lines), tmp_path)
    assert len(docs) == 1 and _reasons(records) == [(1, ingest.DUPLICATE_KEY)] and "'text'" in records[0]["detail"]


def test_a_duplicate_key_of_a_field_not_read_is_harmless(tmp_path):
    lines = [b'{"text": "Habari njema", "meta": 1, "meta": 2}', b'{"text": "Ina \\"text\\" ndani"}']
    docs, bad, _, _ = _stage(write_jsonl(tmp_path / "d.jsonl", lines), tmp_path)
    assert [d["text"] for d in docs] == ["Habari njema", 'Ina "text" ndani'] and bad == []


def test_surrogate_escapes_unpaired_are_quarantined_and_paired_are_kept(tmp_path):
    lines = [b'{"text": "bad \\ud800 surrogate"}', b'{"text": "ok", "url": "https://x/\\udfff"}',
             b'{"text": "emoji \\ud83d\\ude00 ni sawa"}']
    docs, records, _, _ = _stage(write_jsonl(tmp_path / "s.jsonl", lines), tmp_path)
    assert [d["text"] for d in docs] == ["emoji \U0001F600 ni sawa"]
    assert _reasons(records) == [(1, ingest.INVALID_UNICODE), (2, ingest.INVALID_UNICODE)]
    assert "url" in records[1]["detail"]


def test_very_deep_nesting_and_giant_numbers_are_malformed_not_a_crash(tmp_path):
    deep = b'{"text": "x", "n": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    giant = b'{"text": "x", "n": ' + b"9" * 10_000 + b"}"
    docs, records, _, _ = _stage(write_jsonl(tmp_path / "deep.jsonl", [deep, giant, GOOD_A]), tmp_path)
    assert len(docs) == 1 and _reasons(records) == [(1, ingest.MALFORMED_JSON), (2, ingest.MALFORMED_JSON)]
    assert "nested too deeply" in records[0]["detail"]


def test_a_utf16_file_is_one_file_level_row_that_says_how_to_convert_it(tmp_path):
    path = tmp_path / "utf16.jsonl"
    path.write_bytes((json.dumps(GOOD_A) + "\n").encode("utf-16"))
    docs, records, files, _ = _stage(path, tmp_path)
    assert docs == [] and records == []
    assert [f["reason"] for f in files] == [ingest.NOT_UTF8_FILE] and "iconv" in files[0]["detail"]


def test_a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    _, _, files, stats = _stage(fifo, tmp_path, shard=Shard(str(fifo), 0, 0))
    assert [f["reason"] for f in files] == [ingest.UNREADABLE_FILE] and "not a regular file" in files[0]["detail"]
    assert stats.read_again


def test_a_folder_named_like_a_shard_is_refused_as_not_a_regular_file(tmp_path):
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    _, _, files, _ = _stage(folder, tmp_path, shard=Shard(str(folder), 0, 0))
    assert [f["reason"] for f in files] == [ingest.UNREADABLE_FILE]


def test_a_shard_swapped_for_a_link_after_discovery_is_not_followed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text('{"text": "siri"}\n')
    shard = tmp_path / "a.jsonl"
    shard.symlink_to(secret)
    docs, _, files, _ = _stage(shard, tmp_path, shard=Shard(str(shard), 0, 0))
    assert docs == [] and [f["reason"] for f in files] == [ingest.UNREADABLE_FILE]
    assert "symbolic link" in files[0]["detail"]


def test_a_file_without_read_permission_is_a_file_level_row_and_is_read_again_next_time(tmp_path):
    path = write_jsonl(shared_folder() / "locked.jsonl", [GOOD_A])
    os.chmod(path, 0)
    out = shared_folder()

    def read():
        stats = stage_shard(Shard.of(path), "sw", out / "d.parquet", out / "b.parquet")
        return stats.file_issues, stats.read_again

    issues, read_again = run_unprivileged(read)
    assert [reason for reason, _ in issues] == [ingest.UNREADABLE_FILE]
    assert "permission denied" in issues[0][1] and "read permission" in issues[0][1]
    assert read_again


def test_a_file_that_changes_while_it_is_read_keeps_what_was_read_and_is_read_again(tmp_path):
    path = write_jsonl(tmp_path / "growing.jsonl", [GOOD_A, GOOD_B])

    def append_once(_n: int, done: list = []) -> None:  # noqa: B006 (state of this one read)
        if not done:
            with open(path, "ab") as handle:
                handle.write(json.dumps({"text": "Imeongezwa baadaye."}).encode() + b"\n")
            done.append(True)

    docs, _, files, stats = _stage(path, tmp_path, on_bytes=append_once)
    assert len(docs) >= 2 and [f["reason"] for f in files] == [ingest.CHANGED_DURING_READ]
    assert stats.read_again


def test_records_are_flushed_by_size_as_well_as_by_count(tmp_path):
    records = [{"text": f"{i} " + "neno " * 2_000} for i in range(40)]
    path = write_jsonl(tmp_path / "big.jsonl", records)
    docs, _, _, _ = _stage(path, tmp_path, ReadOptions(batch_chars=50_000))
    assert len(docs) == 40
    assert pq.ParquetFile(tmp_path / "docs.parquet").metadata.num_row_groups >= 4


# ------------------------------------------------------------------------------------------------ Parquet


def test_an_oversized_parquet_text_cell_is_quarantined_without_losing_its_neighbours(tmp_path):
    path = tmp_path / "cells.parquet"
    pq.write_table(pa.table({"text": ["Habari njema", "x" * 300_000, "Karibu tena"], "id": ["a", "b", "c"]}), path)
    docs, records, _, _ = _stage(path, tmp_path, ReadOptions(max_record_bytes=100_000))
    assert [(d["text"], d["source_id"]) for d in docs] == [("Habari njema", "a"), ("Karibu tena", "c")]
    assert _reasons(records) == [(2, ingest.RECORD_TOO_LARGE)] and "300,000 bytes" in records[0]["detail"]


def test_an_oversized_parquet_url_cell_is_field_too_long(tmp_path):
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"text": ["Habari", "Karibu"], "url": ["u" * 200_000, "https://ok.example"]}), path)
    docs, records, _, _ = _stage(path, tmp_path)
    assert [d["url"] for d in docs] == ["https://ok.example"] and _reasons(records) == [(1, ingest.FIELD_TOO_LONG)]


def test_parquet_fields_of_scalar_types_are_kept_as_strings_and_nested_ones_ignored_with_a_file_row(tmp_path):
    path = tmp_path / "types.parquet"
    table = pa.table({
        "text": ["Habari njema", "Karibu tena"],
        "id": pa.array([7, 8], pa.int64()),
        "timestamp": pa.array([1, 2], pa.timestamp("s")),
        "url": pa.array([{"host": "a"}, {"host": "b"}]),
    })
    pq.write_table(table, path)
    docs, records, files, _ = _stage(path, tmp_path)
    assert [d["source_id"] for d in docs] == ["7", "8"] and docs[0]["timestamp"].startswith("1970-01-01")
    assert [d["url"] for d in docs] == [None, None] and records == []
    assert [f["reason"] for f in files] == [ingest.IGNORED_COLUMN] and "'url'" in files[0]["detail"]


def test_a_binary_text_column_is_decoded_and_its_invalid_cells_quarantined(tmp_path):
    path = tmp_path / "binary.parquet"
    pq.write_table(pa.table({"text": pa.array(["Habari".encode(), b"\xff\xfe bad", "Karibu".encode()], pa.binary())}),
                   path)
    docs, records, _, _ = _stage(path, tmp_path)
    assert [d["text"] for d in docs] == ["Habari", "Karibu"] and _reasons(records) == [(2, ingest.INVALID_UTF8)]


def test_a_parquet_string_column_with_invalid_utf8_costs_only_that_cell(tmp_path):
    path = tmp_path / "badutf8.parquet"
    column = pa.array([b"Habari", b"mbaya \xc3\x28", b"Karibu"], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"text": column}), path)
    docs, records, _, _ = _stage(path, tmp_path)
    assert [d["text"] for d in docs] == ["Habari", "Karibu"] and _reasons(records) == [(2, ingest.INVALID_UTF8)]


def test_a_dictionary_encoded_text_column_is_read(tmp_path):
    path = tmp_path / "dict.parquet"
    pq.write_table(pa.table({"text": pa.array(["Habari", "Karibu", "Habari"]).dictionary_encode()}), path)
    docs, _, _, _ = _stage(path, tmp_path)
    assert [d["text"] for d in docs] == ["Habari", "Karibu", "Habari"]


def test_one_huge_row_group_is_read_in_small_batches_with_every_row_kept(tmp_path):
    path = tmp_path / "one_group.parquet"
    texts = [f"Hati {i} " + "neno " * 500 for i in range(400)]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=10_000)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    docs, bad, _, _ = _stage(path, tmp_path, ReadOptions(batch_chars=40_000))
    assert [d["text"] for d in docs] == texts and [d["position"] for d in docs] == list(range(1, 401)) and bad == []


def test_an_empty_parquet_file_is_a_file_level_row(tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    _, _, files, _ = _stage(path, tmp_path)
    assert [f["reason"] for f in files] == [ingest.EMPTY_FILE]


def test_a_truncated_parquet_file_is_unreadable_not_a_crash(tmp_path):
    path = tmp_path / "cut.parquet"
    pq.write_table(pa.table({"text": ["Habari"] * 100}), path)
    path.write_bytes(path.read_bytes()[:-30])
    _, _, files, _ = _stage(path, tmp_path)
    assert [f["reason"] for f in files] == [ingest.UNREADABLE_FILE]


def test_a_damaged_row_group_costs_its_own_rows_only(tmp_path):
    path = tmp_path / "damaged.parquet"
    texts = [f"Hati namba {i} ya kijiji chetu." for i in range(300)]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=100, compression="snappy")
    meta = pq.ParquetFile(path).metadata
    middle = meta.row_group(1).column(0)
    start = middle.dictionary_page_offset or middle.data_page_offset
    data = bytearray(path.read_bytes())
    data[start: start + middle.total_compressed_size] = os.urandom(middle.total_compressed_size)
    path.write_bytes(bytes(data))
    docs, _, files, _ = _stage(path, tmp_path)
    kept = {d["text"] for d in docs}
    assert set(texts[:100]) <= kept and set(texts[200:]) <= kept
    assert ingest.DAMAGED_ROW_GROUP in [f["reason"] for f in files]
    assert "rows 101-200" in files[0]["detail"]


def test_parquet_controls_and_surrogate_free_rules_are_the_same_as_jsonl(tmp_path):
    path = tmp_path / "rules.parquet"
    pq.write_table(pa.table({"text": ["Habari\x00 njema", "", None], "lang": ["sw", "sw", "sw"]}), path)
    docs, records, _, _ = _stage(path, tmp_path)
    assert [(d["text"], d["control_chars"], d["source_lang"]) for d in docs] == [("Habari njema", 1, "sw")]
    assert _reasons(records) == [(2, ingest.EMPTY_TEXT), (3, ingest.NULL_TEXT)]


def test_a_row_group_with_a_page_too_large_to_decode_is_skipped_and_counted_and_the_others_read(tmp_path):
    path = tmp_path / "pages.parquet"
    texts = [f"Hati namba {i} ya kijiji." for i in range(30)]
    texts[15] = "a" * (3 << 20)  # one 3 MB cell: its page is larger than the 1 MB allowed below
    pq.write_table(pa.table({"text": texts}), path, row_group_size=10)
    docs, records, files, _ = _stage(path, tmp_path, ReadOptions(max_page_bytes=1 << 20))
    assert [d["text"] for d in docs] == texts[:10] + texts[20:]
    assert [d["position"] for d in docs] == list(range(1, 11)) + list(range(21, 31)) and records == []
    assert [(f["reason"], f["position"]) for f in files] == [(ingest.OVERSIZED_PAGE, 11)]
    assert "row group 1 (rows 11-20, 10 rows) not read" in files[0]["detail"] and "page of" in files[0]["detail"]


def test_a_field_column_with_a_page_too_large_is_left_out_of_that_row_group_only(tmp_path):
    path = tmp_path / "urlpages.parquet"
    urls = [f"https://a.example/{i}" for i in range(20)]
    urls[3] = "u" * (3 << 20)
    pq.write_table(pa.table({"text": [f"Hati {i}" for i in range(20)], "url": urls}), path, row_group_size=10)
    docs, _, files, _ = _stage(path, tmp_path, ReadOptions(max_page_bytes=1 << 20))
    assert len(docs) == 20
    assert [d["url"] for d in docs] == [None] * 10 + urls[10:]
    assert [f["reason"] for f in files] == [ingest.IGNORED_COLUMN] and "row group 0" in files[0]["detail"]


def test_raw_control_characters_inside_json_strings_are_read_and_cleaned_not_rejected(tmp_path):
    lines = [b'{"text": "Habari\x00 za\tleo", "url": "https://a.example/\x01x"}', GOOD_A]
    docs, bad, _, _ = _stage(write_jsonl(tmp_path / "raw_controls.jsonl", lines), tmp_path)
    assert bad == [] and docs[0]["text"] == "Habari za\tleo" and docs[0]["url"] == "https://a.example/x"
    assert docs[0]["control_chars"] == 2
