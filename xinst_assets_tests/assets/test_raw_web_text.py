"""The raw_web_text asset materialized with Dagster on temporary storage."""

import os
import time

import dagster as dg
import duckdb

from xinst_assets_tests.conftest import materialize, write_jsonl


def _docs(n: int, tag: str = "") -> list[dict]:
    return [{"text": f"Hii ni habari namba {i}{tag} kutoka kijijini.", "url": f"https://x.example/{tag}{i}"}
            for i in range(n)]


def _materialize(config, lang: str = "sw") -> dg.ExecuteInProcessResult:
    return materialize(config, "raw_web_text", lang)


def _rows(config, lang: str = "sw") -> list[tuple]:
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        return con.execute(
            "SELECT doc_id, shard, position FROM raw_documents WHERE lang = ? ORDER BY shard, position", [lang]
        ).fetchall()


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    event = result.get_asset_materialization_events()[0]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_materializing_twice_gives_the_same_rows_and_ids_and_reads_nothing_the_second_time(
    xinst_config, raw_root
):
    write_jsonl(raw_root / "sw" / "a.jsonl", _docs(30))
    write_jsonl(raw_root / "sw" / "b.jsonl.gz", _docs(20, "b"), compress=True)
    first = _materialize(xinst_config)
    rows_first = _rows(xinst_config)
    second = _materialize(xinst_config)
    assert first.success and second.success
    assert rows_first == _rows(xinst_config) and len(rows_first) == 50
    assert _metadata(first)["shards_read"] == 2
    meta = _metadata(second)
    assert meta["shards_read"] == 0 and meta["nothing_to_do"] is True and meta["documents_total"] == 50


def test_a_changed_shard_is_reread_and_a_removed_shard_loses_its_rows(xinst_config, raw_root):
    a = write_jsonl(raw_root / "sw" / "a.jsonl", _docs(10))
    b = write_jsonl(raw_root / "sw" / "b.jsonl", _docs(5, "b"))
    _materialize(xinst_config)
    time.sleep(0.01)
    write_jsonl(a, _docs(12, "new"))
    os.utime(a)  # a new mtime even on coarse-grained file systems
    meta = _metadata(_materialize(xinst_config))
    assert meta["shards_read"] == 1 and meta["shards_unchanged"] == 1 and meta["documents_total"] == 17
    b.unlink()
    meta = _metadata(_materialize(xinst_config))
    assert meta["shards_removed"] == 1 and meta["documents_total"] == 12
    assert all(shard.endswith("a.jsonl") for _, shard, _ in _rows(xinst_config))


def test_quarantine_counts_by_reason_reach_the_metadata_and_other_languages_are_untouched(
    xinst_config, raw_root
):
    write_jsonl(raw_root / "sw" / "a.jsonl", _docs(3) + [b"{oops", {"text": ""}, {"text": None}])
    write_jsonl(raw_root / "fi" / "a.jsonl", [{"text": "Hyvää huomenta kaikille lukijoille."}])
    _materialize(xinst_config, "fi")
    meta = _metadata(_materialize(xinst_config, "sw"))
    assert meta["rows_ingested_this_run"] == 3 and meta["rows_quarantined_this_run"] == 3
    assert "malformed_json" in meta["quarantined_by_reason"] and "null_text" in meta["quarantined_by_reason"]
    assert len(_rows(xinst_config, "fi")) == 1
    with duckdb.connect(str(xinst_config.warehouse), read_only=True) as con:
        reasons = con.execute("SELECT reason FROM raw_quarantine WHERE lang='sw' ORDER BY position").fetchall()
    assert [r[0] for r in reasons] == ["malformed_json", "empty_text", "null_text"]


def test_a_language_with_no_shards_materializes_an_explicit_empty_partition(xinst_config):
    meta = _metadata(_materialize(xinst_config, "ta"))
    assert meta["documents_total"] == 0 and meta["shards_total"] == 0 and meta["nothing_to_do"] is True
