"""The raw_web_text asset materialized with Dagster on temporary storage."""

import dataclasses
import logging
import os

import dagster as dg
import duckdb

from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets_tests.conftest import materialize, write_jsonl
from xinst_assets_tests.core.unprivileged import run_unprivileged, shared_folder


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
    before = a.stat().st_mtime_ns
    write_jsonl(a, _docs(12, "new"))
    os.utime(a, ns=(before + 10**9, before + 10**9))  # a later mtime, whatever the clock's or file system's grain
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


def test_empty_and_whitespace_only_files_are_file_level_rows_of_the_shard_report(xinst_config, raw_root):
    write_jsonl(raw_root / "sw" / "a.jsonl", _docs(3))
    (raw_root / "sw" / "empty.jsonl").write_bytes(b"")
    (raw_root / "sw" / "blank.jsonl").write_bytes(b"\n  \n\t\n")
    meta = _metadata(_materialize(xinst_config))
    assert meta["documents_total"] == 3 and meta["file_problems_total"] == 2
    assert meta["rows_quarantined_total"] == 0  # file-level rows are not records
    report = meta["shard_report"]
    assert "| empty.jsonl | 0 | 0 | 0 | empty_file: the file is empty (0 bytes) |" in report
    assert "blank.jsonl" in report and "only 3 blank" in report and "| a.jsonl | 3 | 3 | 0 | - |" in report
    assert "empty.jsonl | empty_file" in meta["file_problems"] and "blank.jsonl | empty_file" in meta["file_problems"]


def test_links_out_of_the_sources_and_loops_are_skipped_reported_and_never_read(xinst_config, raw_root, tmp_path):
    secret = tmp_path / "system" / "passwd.jsonl"
    secret.parent.mkdir()
    secret.write_text('{"text": "root:x:0:0:siri"}\nnot json: root:x:0:0\n')
    write_jsonl(raw_root / "sw" / "a.jsonl", _docs(2))
    (raw_root / "sw" / "leak.jsonl").symlink_to(secret)
    (raw_root / "sw" / "loop_a").symlink_to(".")
    (raw_root / "sw" / "loop_b").symlink_to(".")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(xinst_config, "raw_web_text", "sw", instance=instance)
    meta = _metadata(result)
    assert meta["documents_total"] == 2 and meta["shards_total"] == 1 and meta["paths_skipped"] == 3
    assert "link_outside_roots" in meta["discovery_skipped"] and "link_loop" in meta["discovery_skipped"]
    with duckdb.connect(str(xinst_config.warehouse), read_only=True) as con:
        leaked = con.execute("SELECT count(*) FROM raw_documents WHERE text LIKE '%root:x%'").fetchone()[0]
        leaked += con.execute("SELECT count(*) FROM raw_quarantine WHERE snippet LIKE '%root:x%'").fetchone()[0]
    assert leaked == 0
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any("skipped" in w and "leak.jsonl: link_outside_roots" in w for w in warnings)
    assert sum("link_loop" in w for w in warnings) == 2


def test_a_missing_source_folder_fails_with_one_line_that_says_what_to_do(xinst_config, tmp_path):
    config = dataclasses.replace(xinst_config, raw_patterns=[str(tmp_path / "not-mounted")])
    result = materialize(config, "raw_web_text", "sw", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "does not exist: create it, mount it, or set XINST_RAW_SOURCES" in message
    assert "Traceback" not in (failure.step_failure_data.user_failure_data.description or "")


def test_a_shard_that_could_not_be_read_is_read_again_by_the_next_run(tmp_path):
    shared = shared_folder()  # runs as an unprivileged user when the tests run as root (root reads any file)
    config = XinstConfig(registry=load_registry(), home=shared / "home", raw_patterns=[str(shared / "raw")])
    shard = write_jsonl(shared / "raw" / "sw" / "a.jsonl", _docs(2))
    write_jsonl(shared / "raw" / "sw" / "b.jsonl", _docs(1, "b"))
    for folder in (shared / "raw", shared / "raw" / "sw"):
        os.chmod(folder, 0o755)
    os.chmod(shard, 0)
    first = run_unprivileged(lambda: _metadata(_materialize(config)))
    assert first["documents_total"] == 1 and "a.jsonl | unreadable_file | permission denied" in first["file_problems"]
    os.chmod(shard, 0o644)  # the operator fixes the permission; the file itself is unchanged
    second = run_unprivileged(lambda: _metadata(_materialize(config)))
    assert second["shards_read"] == 1 and second["documents_total"] == 3 and second["file_problems_total"] == 0


def _check(result: dg.ExecuteInProcessResult):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "documents_ingested")


def test_shards_that_yield_no_document_fail_the_check_with_the_reason(xinst_config, raw_root):
    write_jsonl(raw_root / "sw" / "a.jsonl", [{"body": "Maandishi yako chini ya jina lingine."}] * 3)
    (raw_root / "sw" / "empty.jsonl").write_bytes(b"")
    check = _check(_materialize(xinst_config))
    assert not check.passed
    assert "2 shards but no document: missing_text 3, empty_file 1" in check.description
    assert "text_column" in check.description


def test_a_language_with_documents_or_without_shards_passes_the_check(xinst_config, raw_root):
    write_jsonl(raw_root / "sw" / "a.jsonl", _docs(2) + [b"{broken"])
    assert _check(_materialize(xinst_config)).passed
    assert _check(_materialize(xinst_config, "ta")).passed
