"""The ``xinst`` command used the way operators do: many commands started at once on a fresh data home, and a
command started after a run was killed. Real processes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from xinst_assets.languages import load_registry
from xinst_assets.local_instance import SCHEMA_FILES
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests import processes
from xinst_assets_tests.e2e.conftest import venv_tool
from xinst_assets_tests.test_local_instance import HELD_RUN, _versions

# Ten commands at once on two cores take minutes, and many more on a loaded machine: a hang guard.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _env(home: Path) -> dict:
    env = {**os.environ, "XINST_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"), "DO_NOT_TRACK": "1",
           "XINST_RAW_SOURCES": str(SAMPLE_DIR / "raw"), "HF_HUB_OFFLINE": "1"}
    for name in ("XINST_LANGUAGES_FILE", "XINST_WAREHOUSE"):
        env.pop(name, None)
    return env


def test_ten_commands_started_at_once_on_a_fresh_data_home_all_succeed(tmp_path, monkeypatch):
    home = tmp_path / "home"
    languages = load_registry().codes
    assert len(languages) == 10
    started = time.monotonic()
    done = processes.finish(*[
        processes.start([venv_tool("xinst"), "materialize", "--languages", code, "--select", "seed_pairs"],
                        env=_env(home), stderr_to_stdout=True)
        for code in languages])
    seconds = time.monotonic() - started
    logs = [proc.stdout for proc in done]
    failed = [(code, proc.stdout[-2500:]) for code, proc in zip(languages, done) if proc.returncode != 0]
    print(f"\n10 commands on a fresh data home: {len(failed)} failed, {seconds:.1f} s for all")
    assert failed == []
    assert sum("wrote the local Dagster instance settings" in log for log in logs) == 1
    dagster_home = home / "dagster_home"
    assert all(len(_versions(dagster_home, name)) == 1 for name in SCHEMA_FILES)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_run_records()
        assert len(runs) == 10 and all(r.dagster_run.is_success for r in runs)


def test_a_command_after_a_killed_run_marks_that_run_failed_and_says_so(tmp_path, monkeypatch):
    home = tmp_path / "home"
    env = _env(home)
    first = processes.run([venv_tool("xinst"), "materialize", "--languages", "sw", "--select", "seed_pairs"],
                          env=env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    held = processes.start([sys.executable, "-c", HELD_RUN, str(tmp_path / "started"), str(tmp_path / "release")],
                           env=env)
    run_id = processes.wait_for_file(tmp_path / "started", held, "its run's start")
    held.kill()

    again = processes.run([venv_tool("xinst"), "materialize", "--languages", "sw", "--select", "seed_pairs"],
                          env=env)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"xinst: marked run {run_id} failed: its process (pid {held.pid} on " in again.stdout
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
