"""Reading shards: every format, and every kind of bad input quarantined without losing good rows."""

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xinst_assets.core import ingest
from xinst_assets.core.ingest import ReadOptions, Shard, discover_shards, stage_shard
from xinst_assets.core.text import content_id
from xinst_assets_tests.conftest import write_jsonl

GOOD = [
    {"text": "Habari za asubuhi kutoka Dar es Salaam.", "url": "https://a.example/1", "timestamp": "2024-01-01"},
    {"text": "Mvua kubwa inatarajiwa kesho mkoani Mbeya.", "url": "https://a.example/2", "source": "mC4"},
]


def _stage(path: Path, tmp_path: Path, options: ReadOptions = ReadOptions()):
    docs, bad = tmp_path / "docs.parquet", tmp_path / "bad.parquet"
    stats = stage_shard(Shard.of(path), "sw", docs, bad, options)
    return pq.read_table(docs).to_pylist(), pq.read_table(bad).to_pylist(), stats


def test_jsonl_records_become_documents_with_content_ids_and_culturax_columns(tmp_path):
    docs, bad, stats = _stage(write_jsonl(tmp_path / "a.jsonl", GOOD), tmp_path)
    assert [d["text"] for d in docs] == [g["text"] for g in GOOD]
    assert docs[0]["doc_id"] == content_id(GOOD[0]["text"])
    assert docs[0]["url"] == "https://a.example/1" and docs[0]["timestamp"] == "2024-01-01"
    assert docs[1]["source"] == "mC4" and docs[1]["position"] == 2
    assert bad == [] and stats.rows == 2


def test_gzipped_jsonl_reads_the_same_as_plain(tmp_path):
    docs, bad, _ = _stage(write_jsonl(tmp_path / "a.jsonl.gz", GOOD, compress=True), tmp_path)
    assert [d["text"] for d in docs] == [g["text"] for g in GOOD] and bad == []


def test_parquet_shards_are_read_in_batches_with_a_configurable_text_column(tmp_path):
    path = tmp_path / "a.parquet"
    rows = [{"content": f"Hati namba {i} ya kijiji.", "url": f"u{i}"} for i in range(23)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=5)
    docs, bad, stats = _stage(path, tmp_path, ReadOptions(text_column="content", batch_rows=4))
    assert [d["text"] for d in docs] == [r["content"] for r in rows]
    assert [d["position"] for d in docs] == list(range(1, 24))
    assert docs[3]["timestamp"] is None and bad == []


def test_every_bad_jsonl_record_is_quarantined_with_its_line_and_reason_and_good_rows_survive(tmp_path):
    lines = [
        GOOD[0],
        b'{"text": "broken json',
        {"text": None},
        {"text": 42},
        b"\xff\xfe not utf-8 \xc3\x28",
        {"text": "   \n\t  "},
        {"text": "x" * 5_000_001},  # a 5 MB single document
        {"url": "no text field"},
        b"[1, 2, 3]",
        GOOD[1],
    ]
    docs, bad, stats = _stage(write_jsonl(tmp_path / "bad.jsonl", lines), tmp_path)
    assert [d["text"] for d in docs] == [GOOD[0]["text"], GOOD[1]["text"]]
    assert [(b["position"], b["reason"]) for b in bad] == [
        (2, ingest.MALFORMED_JSON),
        (3, ingest.NULL_TEXT),
        (4, ingest.NON_STRING_TEXT),
        (5, ingest.INVALID_UTF8),
        (6, ingest.EMPTY_TEXT),
        (7, ingest.TOO_LONG),
        (8, ingest.MISSING_TEXT),
        (9, ingest.NOT_AN_OBJECT),
    ]
    assert all(b["shard"].endswith("bad.jsonl") for b in bad)
    assert len(bad[5]["snippet"]) == ingest.SNIPPET_CHARS  # the 5 MB text is not copied whole
    assert sum(stats.quarantined.values()) == 8


def test_a_lone_surrogate_escape_is_quarantined_as_invalid_unicode(tmp_path):
    lines = [b'{"text": "bad \\ud800 surrogate"}', GOOD[0]]
    docs, bad, _ = _stage(write_jsonl(tmp_path / "s.jsonl", lines), tmp_path)
    assert [b["reason"] for b in bad] == [ingest.INVALID_UNICODE] and len(docs) == 1


def test_a_truncated_gzip_keeps_the_records_before_the_damage_and_quarantines_the_rest(tmp_path):
    records = [{"text": f"Nakala ya {i} ni nzuri sana kwa wasomaji wote."} for i in range(2000)]
    data = gzip.compress(b"\n".join(__import__("json").dumps(r).encode() for r in records))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    docs, bad, _ = _stage(path, tmp_path)
    assert 0 < len(docs) < 2000
    assert [d["text"] for d in docs] == [r["text"] for r in records[: len(docs)]]
    assert bad[-1]["reason"] == ingest.TRUNCATED_FILE and "ends or breaks" in bad[-1]["detail"]


def test_a_parquet_file_without_the_text_column_is_one_quarantine_row_naming_the_columns(tmp_path):
    path = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"body": ["a", "b"]}), path)
    docs, bad, _ = _stage(path, tmp_path)
    assert docs == []
    assert [(b["position"], b["reason"]) for b in bad] == [(None, ingest.SCHEMA_MISMATCH)]
    assert "no column 'text'" in bad[0]["detail"] and "body" in bad[0]["detail"]


def test_a_parquet_text_column_of_the_wrong_type_is_a_schema_mismatch(tmp_path):
    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), path)
    _, bad, _ = _stage(path, tmp_path)
    assert bad[0]["reason"] == ingest.SCHEMA_MISMATCH and "int64" in bad[0]["detail"]


def test_a_file_that_is_not_parquet_is_quarantined_as_unreadable(tmp_path):
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"this is not parquet at all")
    docs, bad, _ = _stage(path, tmp_path)
    assert docs == [] and bad[0]["reason"] == ingest.UNREADABLE_FILE


def test_null_and_empty_parquet_texts_are_quarantined_per_row(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": ["Habari njema", None, "  ", "Karibu tena"]}), path)
    docs, bad, _ = _stage(path, tmp_path)
    assert [d["text"] for d in docs] == ["Habari njema", "Karibu tena"]
    assert [(b["position"], b["reason"]) for b in bad] == [(2, ingest.NULL_TEXT), (3, ingest.EMPTY_TEXT)]


def test_shards_are_discovered_per_language_from_folders_and_lang_globs(tmp_path):
    write_jsonl(tmp_path / "corpus" / "sw" / "a.jsonl", GOOD)
    write_jsonl(tmp_path / "corpus" / "sw" / "sub" / "b.jsonl.gz", GOOD, compress=True)
    write_jsonl(tmp_path / "corpus" / "fi" / "c.jsonl", GOOD)
    (tmp_path / "corpus" / "sw" / "notes.txt").write_text("ignored")
    write_jsonl(tmp_path / "flat" / "dump_sw.jsonl", GOOD)
    found = discover_shards([str(tmp_path / "corpus"), str(tmp_path / "flat" / "dump_{lang}.jsonl")], "sw")
    assert [Path(s.path).name for s in found.shards] == ["a.jsonl", "b.jsonl.gz", "dump_sw.jsonl"]
    assert found.skipped == []


def test_a_source_that_is_neither_folder_nor_lang_glob_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        discover_shards([str(tmp_path / "missing" / "*.jsonl")], "sw")
