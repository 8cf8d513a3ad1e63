"""The local Dagster instance made ready before runs: created once by processes started together, repaired
after an older version's race, and cleared of runs whose process was killed (never of live ones). Real
instances on temporary homes, real processes, real SIGKILL."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.sqlite import LAST_KNOWN_STAMPED_SQLITE_ALEMBIC_REVISION
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from xinst_assets.core import run_owners
from xinst_assets.instance_storage import XinstRunLauncher, run_owners_dir
from xinst_assets.local_instance import (
    SCHEMA_FILES,
    STAMP_FILE,
    InstanceError,
    prepare_local_instance,
)
from xinst_assets_tests import processes

# A run whose only op says it started, then waits until the test lets it go (a file appears): the test knows,
# without timing, that the run is in progress, and decides when it ends.
HELD_RUN = r"""
import sys, time
from pathlib import Path
import dagster as dg

started, release = Path(sys.argv[1]), Path(sys.argv[2])

@dg.op
def held(context):
    started.write_text(context.run_id)
    while not release.exists():
        time.sleep(0.05)

@dg.job
def held_job():
    held()

with dg.DagsterInstance.get() as instance:
    result = held_job.execute_in_process(instance=instance, raise_on_error=False)
sys.exit(0 if result.success else 1)
"""

PREPARE = r"""
import sys
from pathlib import Path
import dagster as dg
from xinst_assets.local_instance import prepare_local_instance

prepare_local_instance(Path(sys.argv[1]))

@dg.op
def one():
    return 1

@dg.job
def tiny():
    one()

with dg.DagsterInstance.get() as instance:
    assert tiny.execute_in_process(instance=instance).success
print("ok")
"""


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _env(home: Path) -> dict:
    return {**os.environ, "DAGSTER_HOME": str(home), "DO_NOT_TRACK": "1"}


def _status(run_id: str) -> dg.DagsterRunStatus:
    with dg.DagsterInstance.get() as instance:
        return instance.get_run_by_id(run_id).status


def _versions(home: Path, name: str) -> list[str]:
    with sqlite3.connect(home / name) as con:
        return [row[0] for row in con.execute("SELECT version_num FROM alembic_version")]


def test_processes_started_together_on_a_fresh_home_create_the_instance_once_and_all_run(dagster_home):
    home = dagster_home
    done = processes.finish(*[processes.start([sys.executable, "-c", PREPARE, str(home)], env=_env(home))
                              for _ in range(6)])
    assert [proc.returncode for proc in done] == [0] * 6, [proc.stderr[-2000:] for proc in done]
    for name in SCHEMA_FILES:
        assert len(_versions(home, name)) == 1, name
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_runs()) == 6


def test_a_later_start_neither_opens_nor_checks_the_instance_again(dagster_home):
    first = prepare_local_instance(dagster_home)
    assert first.wrote_config and first.checked
    again = prepare_local_instance(dagster_home)
    assert not again.wrote_config and not again.checked and not again.migrated
    (dagster_home / "dagster.yaml").write_text((dagster_home / "dagster.yaml").read_text() + "\n# edited\n")
    assert prepare_local_instance(dagster_home).checked  # an edited dagster.yaml is checked once more


def _record_second_version(home: Path, name: str) -> None:
    """What concurrent first starts of the older version left: a second, older schema version recorded."""
    with sqlite3.connect(home / name) as con:
        con.execute("INSERT INTO alembic_version VALUES (?)", [LAST_KNOWN_STAMPED_SQLITE_ALEMBIC_REVISION])


def test_a_home_left_with_two_schema_versions_by_an_older_race_is_repaired(dagster_home):
    prepare_local_instance(dagster_home)
    for name in (SCHEMA_FILES[0], SCHEMA_FILES[2]):
        _record_second_version(dagster_home, name)
    (dagster_home / STAMP_FILE).unlink()  # homes of older versions have no stamp
    with pytest.raises(Exception, match="more than one head"):  # the broken state, as Dagster meets it
        dg.DagsterInstance.from_config(str(dagster_home)).run_storage.alembic_version()

    report = prepare_local_instance(dagster_home)
    assert report.repaired == [SCHEMA_FILES[0], SCHEMA_FILES[2]] and report.migrated
    assert all(len(_versions(dagster_home, name)) == 1 for name in SCHEMA_FILES)
    with dg.DagsterInstance.get() as instance:
        assert dg.materialize([_tiny_asset()], instance=instance).success


def test_two_schema_versions_over_incomplete_tables_are_a_clear_error_saying_what_to_do(dagster_home):
    prepare_local_instance(dagster_home)
    _record_second_version(dagster_home, SCHEMA_FILES[0])
    with sqlite3.connect(dagster_home / SCHEMA_FILES[0]) as con:
        con.execute("DROP TABLE bulk_actions")
    (dagster_home / STAMP_FILE).unlink()
    with pytest.raises(InstanceError, match=r"records 2 schema versions .* move .*dagster_home aside"):
        prepare_local_instance(dagster_home)


def _tiny_asset():
    @dg.asset
    def tiny() -> int:
        return 1

    return tiny


def _start_held_run(tmp_path: Path, home: Path, name: str) -> tuple[processes.Started, str, Path]:
    """A HELD_RUN process, once its run has started: (the process, its run id, the file that releases it)."""
    started, release = tmp_path / f"{name}.started", tmp_path / f"{name}.release"
    proc = processes.start([sys.executable, "-c", HELD_RUN, str(started), str(release)], env=_env(home))
    return proc, processes.wait_for_file(started, proc, "its run's start"), release


def test_a_killed_run_is_marked_failed_at_the_next_start_and_a_live_one_of_another_process_is_not(
    tmp_path, dagster_home
):
    prepare_local_instance(dagster_home)
    doomed, doomed_run, _ = _start_held_run(tmp_path, dagster_home, "doomed")
    alive, alive_run, release = _start_held_run(tmp_path, dagster_home, "alive")
    try:
        assert prepare_local_instance(dagster_home).failed_runs == []  # both processes run: nothing to do
        assert _status(doomed_run) == _status(alive_run) == dg.DagsterRunStatus.STARTED

        doomed.kill()
        assert _status(doomed_run) == dg.DagsterRunStatus.STARTED  # nobody told Dagster

        report = prepare_local_instance(dagster_home)
        assert [run.run_id for run in report.failed_runs] == [doomed_run]
        assert f"pid {doomed.pid}" in report.failed_runs[0].owner
        assert _status(doomed_run) == dg.DagsterRunStatus.FAILURE
        assert _status(alive_run) == dg.DagsterRunStatus.STARTED
        with dg.DagsterInstance.get() as instance:
            messages = [e.message for e in instance.all_logs(doomed_run)]
        assert any("is gone" in (m or "") and "Marked failed by xinst" in (m or "") for m in messages)
        assert prepare_local_instance(dagster_home).failed_runs == []  # dealt with once
    finally:
        release.write_text("go")
        (alive_done,) = processes.finish(alive)
        doomed.kill()
    assert alive_done.returncode == 0, alive_done.stderr[-3000:] and _status(alive_run) == dg.DagsterRunStatus.SUCCESS
    assert list(run_owners.claimed_runs(run_owners_dir(dagster_home))) == []  # ended claims leave no file


def test_the_daemons_run_monitoring_fails_a_killed_run_and_leaves_a_live_one(tmp_path, dagster_home):
    prepare_local_instance(dagster_home)
    doomed, doomed_run, _ = _start_held_run(tmp_path, dagster_home, "doomed")
    alive, alive_run, release = _start_held_run(tmp_path, dagster_home, "alive")
    try:
        doomed.kill()
        with dg.DagsterInstance.get() as instance:
            assert isinstance(instance.run_launcher, XinstRunLauncher)
            assert instance.run_launcher.supports_check_run_worker_health
            for run_id in (doomed_run, alive_run):
                monitor_started_run(instance, None, instance.get_run_record_by_id(run_id), _quiet_logger())
            assert instance.get_run_by_id(doomed_run).status == dg.DagsterRunStatus.FAILURE
            assert instance.get_run_by_id(alive_run).status == dg.DagsterRunStatus.STARTED
    finally:
        release.write_text("go")
        (alive_done,) = processes.finish(alive)
        doomed.kill()
    assert alive_done.returncode == 0, alive_done.stderr[-3000:]


def _quiet_logger():
    import logging

    logger = logging.getLogger("xinst-test-monitoring")
    logger.addHandler(logging.NullHandler())
    return logger


def test_a_claim_is_never_seen_unlocked_while_its_owner_lives_and_a_finished_one_leaves_nothing(tmp_path):
    claims = run_owners.RunClaims(tmp_path / "owners")
    claims.claim("run-1")
    assert run_owners.owner_state(tmp_path / "owners", "run-1") is run_owners.OwnerState.ALIVE
    owner = run_owners.read_owner(claims.path("run-1"))
    assert owner.pid == os.getpid() and owner.run_id == "run-1"
    claims.release("run-1")
    assert run_owners.owner_state(tmp_path / "owners", "run-1") is run_owners.OwnerState.NONE
    assert list(run_owners.claimed_runs(tmp_path / "owners")) == []


def test_loading_the_definitions_with_dagsters_cli_marks_a_killed_run_failed(tmp_path, dagster_home):
    prepare_local_instance(dagster_home)
    doomed, doomed_run, _ = _start_held_run(tmp_path, dagster_home, "doomed")
    doomed.kill()
    env = {**_env(dagster_home), "XINST_HOME": str(tmp_path / "home")}
    env.pop("XINST_LANGUAGES_FILE", None)
    loaded = processes.run([str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-m",
                            "xinst_assets.definitions"], env=env, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stdout[-2000:] + loaded.stderr[-2000:]
    assert f"marked run {doomed_run} failed" in loaded.stderr
    assert _status(doomed_run) == dg.DagsterRunStatus.FAILURE
