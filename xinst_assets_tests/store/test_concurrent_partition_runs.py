"""Partition runs on one DuckLake lakehouse (catalog in a real Postgres, data in a shared folder), by the
``xinst materialize`` command in separate processes, as run pods on several nodes would make them: five
languages at once (with a Dagster instance on the same Postgres) all succeed with the tables of the same
languages run one after another; runs killed inside their write transactions, then run again, leave the tables
of a run never killed."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from xinst_assets.config import XinstConfig
from xinst_assets.core.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, REACHED_FILE
from xinst_assets.languages import load_registry
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets.store import Store
from xinst_assets_tests import processes
from xinst_assets_tests.conftest import materialize
from xinst_assets_tests.store.conftest import new_database
from xinst_assets_tests.store.test_dagster_postgres import deployment_storage
from xinst_assets_tests.store.test_stages_on_both_backends import FILTER_CHAIN, FILTER_TABLES, table_rows

LANGUAGES = ["sw", "fi", "bn", "hi", "id"]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # five CLI processes on two loaded cores, then the sequential reference: minutes
def test_five_partition_runs_in_separate_processes_on_one_lakehouse_all_land_with_the_tables_of_a_sequential_run(
    postgres_server, tmp_path: Path,
):
    raw = tmp_path / "raw"
    for lang in LANGUAGES:
        shutil.copytree(SAMPLE_DIR / "raw" / lang, raw / lang)
    catalog = new_database(postgres_server)
    parts = urlsplit(new_database(postgres_server))  # the Dagster instance: a database of its own
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(
        yaml.safe_dump(deployment_storage(parse_qs(parts.query)["host"][0])))
    home = tmp_path / "home"
    env = {
        **os.environ, "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "XINST_HOME": str(home), "XINST_RAW_SOURCES": str(raw), "DAGSTER_HOME": str(dagster_home),
        "XINST_STORE": "lakehouse", "XINST_LAKEHOUSE_CATALOG": catalog,
        "XINST_LAKEHOUSE_DATA": str(tmp_path / "lake"), "XINST_DUCKDB_EXTENSIONS": str(tmp_path / "extensions"),
        "DAGSTER_PG_HOST": "localhost", "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "unused-with-trust",
        "DAGSTER_PG_DB": parts.path.lstrip("/"),
    }
    for name in ("XINST_WAREHOUSE", "XINST_LANGUAGES_FILE"):
        env.pop(name, None)
    xinst = str(Path(sys.executable).with_name("xinst"))
    # The instance's tables are created once, as a deployment's migration job does; the runs then share them.
    migrated = processes.run([str(Path(sys.executable).with_name("dagster")), "instance", "migrate"], env=env)
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-3000:]

    runs = processes.finish(*[
        processes.start([xinst, "materialize", "--languages", lang, "--workers", "1",
                         "--select", ",".join(FILTER_CHAIN)], env=env, stderr_to_stdout=True)
        for lang in LANGUAGES])
    assert [r.returncode for r in runs] == [0] * len(LANGUAGES), \
        "\n=====\n".join(r.stdout[-6000:] for r in runs)
    assert all(f"xinst: {lang} ok" in r.stdout for lang, r in zip(LANGUAGES, runs))
    assert not (home / "warehouse.duckdb").exists() and not (home / "warehouse.duckdb.lock").exists()

    # The reference: the same languages, one after another, on the embedded file.
    config = XinstConfig(registry=load_registry(), home=tmp_path / "sequential", raw_patterns=[str(raw)])
    sequential = Store(path=str(config.warehouse))
    for lang in LANGUAGES:
        assert materialize(config, FILTER_CHAIN, lang, resource_overrides={"store": sequential}).success, lang
    os.environ["XINST_LAKEHOUSE_CATALOG"] = catalog
    try:
        lake = Store(backend="lakehouse", data_path=str(tmp_path / "lake"),
                     extension_dir=str(tmp_path / "extensions"))
        expected = {t: table_rows(sequential, t) for t in FILTER_TABLES}
        assert all(expected[t] for t in FILTER_TABLES)
        assert {row[0] for row in expected["language_filter_stats"]} == set(LANGUAGES)
        assert {t: table_rows(lake, t) for t in FILTER_TABLES} == expected
    finally:
        os.environ.pop("XINST_LAKEHOUSE_CATALOG", None)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_runs_killed_inside_their_lakehouse_transactions_then_run_again_leave_the_tables_of_a_run_never_killed(
    catalog_uri: str, tmp_path: Path,
):
    """Killed (SIGKILL, the whole process group) while paused inside raw_web_text's transaction, then inside
    document_signals' (``core/pause_points.py``: the kill lands at a known place on any machine): nothing of
    the killed transaction is in the lake, nothing blocks the next run, and a last run ends with the tables
    of a clean run."""
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLE_DIR / "raw" / "sw", raw / "sw")
    env = {**os.environ, "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "XINST_HOME": str(tmp_path / "home"),
           "XINST_RAW_SOURCES": str(raw), "XINST_STORE": "lakehouse", "XINST_LAKEHOUSE_CATALOG": catalog_uri,
           "XINST_LAKEHOUSE_DATA": str(tmp_path / "lake"), "XINST_DUCKDB_EXTENSIONS": str(tmp_path / "ext")}
    for name in ("XINST_WAREHOUSE", "XINST_LANGUAGES_FILE", "DAGSTER_HOME", PAUSE_AT_ENV, PAUSE_DIR_ENV):
        env.pop(name, None)
    command = [str(Path(sys.executable).with_name("xinst")), "materialize", "--languages", "sw", "--workers", "1",
               "--select", ",".join(FILTER_CHAIN)]
    os.environ["XINST_LAKEHOUSE_CATALOG"] = catalog_uri
    lake = Store(backend="lakehouse", data_path=str(tmp_path / "lake"), extension_dir=str(tmp_path / "ext"))
    try:
        for point, committed in (("raw_web_text: before commit", set()),
                                 ("document_signals: before commit", {"raw_documents", "raw_shards"})):
            pause = tmp_path / f"pause-{len(committed)}"
            run = processes.start(command, env={**env, PAUSE_AT_ENV: point, PAUSE_DIR_ENV: str(pause)},
                                  stderr_to_stdout=True, new_session=True)
            reached = json.loads(processes.wait_for_file(pause / REACHED_FILE, run, f"pause point {point!r}"))
            assert reached["point"] == point
            run.kill()
            processes.finish(run)
            for table in ("raw_documents", "raw_shards", "document_signals"):
                rows = table_rows(lake, table) if lake.table_exists(table) else []
                assert bool(rows) == (table in committed), (point, table)
        done = processes.run(command, env=env, stderr_to_stdout=True)
        assert done.returncode == 0 and "xinst: sw ok" in done.stdout, done.stdout[-6000:]

        config = XinstConfig(registry=load_registry(), home=tmp_path / "clean", raw_patterns=[str(raw)])
        clean = Store(path=str(config.warehouse))
        assert materialize(config, FILTER_CHAIN, "sw", resource_overrides={"store": clean}).success
        expected = {t: table_rows(clean, t) for t in FILTER_TABLES}
        assert {t: table_rows(lake, t) for t in FILTER_TABLES} == expected
    finally:
        os.environ.pop("XINST_LAKEHOUSE_CATALOG", None)
