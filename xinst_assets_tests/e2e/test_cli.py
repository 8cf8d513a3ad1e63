"""The ``xinst`` command end to end: real processes on a temporary home with the embedded sample."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from xinst_assets.instance_storage import LOCAL_INSTANCE_YAML, PooledSqliteEventLogStorage
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests import processes
from xinst_assets_tests.e2e.conftest import venv_tool

DATA_STAGES = ("raw_web_text,document_signals,screened_documents,language_filtered_text,filter_rejections,"
               "language_filter_stats,seed_pairs,parallel_pairs,eval_questions")


def _xinst(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "XINST_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"), "DO_NOT_TRACK": "1",
           "XINST_RAW_SOURCES": str(SAMPLE_DIR / "raw"), **(env or {})}
    for name in ("XINST_LANGUAGES_FILE", "XINST_WAREHOUSE"):
        env.pop(name, None)
    return processes.run([venv_tool("xinst"), *args], env=env)


def _tables(home: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return {table: con.execute(f"SELECT lang, count(*) FROM {table} GROUP BY lang ORDER BY lang").fetchall()
                for table in ("raw_documents", "filtered_documents", "language_filter_stats", "seed_pairs")}


@pytest.mark.slow
def test_materialize_runs_each_stretch_of_consecutive_languages_in_one_run_and_a_second_run_changes_nothing(
    tmp_path, monkeypatch,
):
    home = tmp_path / "home"
    # fi and id are consecutive partitions (one run); sw is further on (a run of its own).
    args = ("materialize", "--languages", "sw,id,fi", "--select", DATA_STAGES, "--workers", "2")
    first = _xinst(home, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert sorted(re.findall(r"^xinst: ([\w,]+) ok in", first.stdout, re.M)) == ["fi,id", "sw"]
    assert "Open the Dagster UI" in first.stdout and str(home / "warehouse.duckdb") in first.stdout
    tables = _tables(home)
    for table, counts in tables.items():
        assert [lang for lang, _ in counts] == ["fi", "id", "sw"] and all(n > 0 for _, n in counts), (table, counts)

    again = _xinst(home, *args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert _tables(home) == tables

    # The Dagster home got xinst's local instance settings once, and its event log holds every run's events.
    dagster_home = home / "dagster_home"
    assert "xinst: wrote the local Dagster instance settings" in first.stdout
    assert "wrote the local Dagster instance" not in again.stdout
    assert (dagster_home / "dagster.yaml").read_text(encoding="utf-8") == LOCAL_INSTANCE_YAML
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        runs = instance.get_run_records()
        assert len(runs) == 4 and all(r.dagster_run.is_success for r in runs)
        done = instance.fetch_materializations(dg.AssetKey("language_filter_stats"), limit=100).records
        assert sorted(r.event_log_entry.dagster_event.partition for r in done) == ["fi", "fi", "id", "id", "sw", "sw"]


def test_an_unknown_language_is_a_clear_error_before_any_work(tmp_path):
    result = _xinst(tmp_path / "home", "materialize", "--languages", "sw,xx", "--workers", "1")
    assert result.returncode == 2
    assert "Unknown language code 'xx'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()


@pytest.mark.slow
def test_a_raw_source_that_does_not_exist_is_one_line_that_says_what_to_do_before_any_work(tmp_path):
    missing = tmp_path / "not-mounted"
    result = _xinst(tmp_path / "home", "materialize", "--languages", "sw", "--workers", "1",
                    env={"XINST_RAW_SOURCES": str(missing)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"xinst: raw source folder '{missing}' does not exist: create it, mount it, or set XINST_RAW_SOURCES" \
        in result.stderr
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()
