"""dbt in the run's process: parsed once, cached for other processes, the lock held only while dbt executes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest

from xinst_assets.resources import dbt_runner
from xinst_assets.resources.dbt import dbt_project
from xinst_assets.resources.warehouse import Warehouse
from xinst_assets.settings import DBT_PROJECT_DIR


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(dbt_runner.CACHE_ENV, str(folder))
    monkeypatch.setattr(dbt_runner, "_manifests", {})
    return folder


def make_warehouse(path: Path, languages=("sw", "fi")) -> Warehouse:
    """A warehouse with the source tables of ``screened_documents``: one document twice per language."""
    wh = Warehouse(path=str(path))
    with wh.write() as con:
        con.execute("CREATE TABLE raw_documents (lang VARCHAR, doc_id VARCHAR, text VARCHAR, url VARCHAR, "
                    "timestamp VARCHAR, source VARCHAR, shard VARCHAR, position BIGINT, source_id VARCHAR, "
                    "source_lang VARCHAR)")
        con.execute("CREATE TABLE raw_shards (lang VARCHAR, shard VARCHAR, ingested_at TIMESTAMP)")
        con.execute("CREATE TABLE document_signals (lang VARCHAR, doc_id VARCHAR, lid_label VARCHAR, "
                    "lid_score DOUBLE, lid_runner_up VARCHAR, lid_runner_up_score DOUBLE, reject_reason VARCHAR, "
                    "first_seen_at TIMESTAMP, settings_key VARCHAR, signals_version BIGINT, lid_second_label VARCHAR, "
                    "lid_second_score DOUBLE, lid_decided_by VARCHAR, lid_english_share DOUBLE)")
        for lang in languages:
            con.execute("INSERT INTO raw_documents VALUES (?, 'd1', 't', NULL, NULL, NULL, 's', 0, NULL, NULL), "
                        "(?, 'd1', 't', NULL, NULL, NULL, 's', 1, NULL, NULL)", [lang, lang])
            con.execute("INSERT INTO raw_shards VALUES (?, 's', now())", [lang])
            con.execute("INSERT INTO document_signals VALUES (?, 'd1', ?, 0.9, NULL, NULL, NULL, now(), 'k', 1, "
                        "NULL, NULL, 'fasttext', NULL)",
                        [lang, lang])
    return wh


def build(wh: Warehouse, lang: str, hold=None) -> dbt_runner.DbtBuildOutcome:
    """``dbt build`` of screened_documents and its tests (one of them refers to it with ``ref``)."""
    project = dbt_project()
    return dbt_runner.dbt_build(Path(project.project_dir), Path(project.profiles_dir), wh.db_path,
                                ["--vars", json.dumps({"lang": lang}), "--select", "screened_documents+"],
                                hold_warehouse=hold or (lambda: wh.lock(exclusive=True)))


def test_a_second_process_builds_with_the_cached_manifest_instead_of_parsing(cache, tmp_path, monkeypatch):
    parses = []
    real_parse = dbt_runner._parse
    monkeypatch.setattr(dbt_runner, "_parse", lambda *a: parses.append(a) or real_parse(*a))
    wh = make_warehouse(tmp_path / "wh" / "warehouse.duckdb")
    first = dbt_runner.parsed_manifest(DBT_PROJECT_DIR, DBT_PROJECT_DIR, wh.db_path)
    assert len(parses) == 1 and len(list(cache.glob("*.pickle"))) == 1
    monkeypatch.setattr(dbt_runner, "_manifests", {})  # as a new process
    again = dbt_runner.parsed_manifest(DBT_PROJECT_DIR, DBT_PROJECT_DIR, wh.db_path)
    assert len(parses) == 1 and again is not first
    node = "model.xinst.screened_documents"
    assert again.nodes[node].relation_name == '"warehouse"."main"."screened_documents"'
    outcome = build(wh, "sw")  # compiles models and tests (source() and ref()) from the loaded manifest
    assert outcome.success, outcome.errors
    assert len(parses) == 1
    # Another warehouse file is another database name: parsed again, cached beside the first.
    other = dbt_runner.parsed_manifest(DBT_PROJECT_DIR, DBT_PROJECT_DIR, tmp_path / "elsewhere.duckdb")
    assert len(parses) == 2 and other.nodes[node].relation_name == '"elsewhere"."main"."screened_documents"'


def test_a_cache_folder_others_can_write_is_not_used(cache, tmp_path, monkeypatch):
    cache.mkdir(mode=0o700)
    assert dbt_runner._cache_dir() == cache
    os.chmod(cache, 0o777)
    assert dbt_runner._cache_dir() is None


def test_a_build_runs_the_partition_under_the_lock_and_releases_the_file(cache, tmp_path):
    wh = make_warehouse(tmp_path / "warehouse.duckdb")
    held = []

    def hold():
        held.append(True)
        return wh.lock(exclusive=True)

    for lang in ("sw", "fi", "sw"):  # the same manifest serves every partition; a rerun replaces its rows
        outcome = build(wh, lang, hold)
        assert outcome.success, outcome.errors
    assert len(held) == 3
    results = {e["data"]["node_info"]["unique_id"] for e in outcome.events if e["info"]["name"] == "LogModelResult"}
    assert results == {"model.xinst.screened_documents"}
    assert any(e["info"]["name"] == "LogTestResult" for e in outcome.events)
    # dbt's handle is closed: another connection (read-write) can open the file in this process.
    with duckdb.connect(str(wh.db_path)) as con:
        rows = con.execute("SELECT lang, position, reject_reason FROM screened_documents ORDER BY ALL").fetchall()
    assert rows == [("fi", 0, None), ("fi", 1, "dedup_exact_duplicate"),
                    ("sw", 0, None), ("sw", 1, "dedup_exact_duplicate")]


def test_a_failing_build_reports_dbts_error(cache, tmp_path):
    wh = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    with wh.write():
        pass  # an empty warehouse: the model's source tables do not exist
    outcome = build(wh, "sw")
    assert not outcome.success
    assert any("raw_documents" in error for error in outcome.errors), outcome.errors


def test_a_warm_up_in_the_background_spares_the_build_its_own(cache, tmp_path, monkeypatch):
    """The CLI warms dbt up on a thread while a run's first steps work: the build then skips its warm-up
    (no second ``dbt ls``) and succeeds; the warm-up never opens the warehouse."""
    monkeypatch.setattr(dbt_runner, "_warmed", set())
    wh = make_warehouse(tmp_path / "wh" / "warehouse.duckdb")
    invocations = []
    from dbt.cli.main import dbtRunner

    real_invoke = dbtRunner.invoke
    monkeypatch.setattr(dbtRunner, "invoke", lambda self, args, **kw: invocations.append(args[0]) or real_invoke(self, args, **kw))
    with wh.lock(exclusive=True):  # held elsewhere meanwhile: the warm-up does not need the file
        dbt_runner.warm_up_in_background(DBT_PROJECT_DIR, DBT_PROJECT_DIR, wh.db_path).join()  # however long
    assert invocations[-1] == "ls" and len(dbt_runner._warmed) == 1  # (after a parse: the cache was empty)
    assert build(wh, "sw").success
    assert invocations[-2:] == ["ls", "build"] and invocations.count("ls") == 1


@pytest.mark.parametrize("errors, retried", [
    (["Failed to commit: TransactionContext Error: Transaction conflict: cannot delete from screened_documents"], True),
    (["Runtime Error in model screened_documents", "Catalog Error: Table with name \"screened_documents\" already exists!"], True),
    (["Catalog Error: Table with name raw_documents does not exist!"], False),
    (["Binder Error: column \"langg\" not found"], False),
])
def test_only_a_build_that_lost_a_race_to_a_concurrent_writer_is_built_again(errors, retried):
    assert dbt_runner.is_commit_conflict(dbt_runner.DbtBuildOutcome(success=False, errors=errors)) is retried
    assert not dbt_runner.is_commit_conflict(dbt_runner.DbtBuildOutcome(success=True, errors=errors))
