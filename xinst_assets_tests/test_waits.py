"""The tests' own waits (``processes.py``, the e2e deployment's ``wait_for`` and backfill progress): they end on the
state they wait for, fail at once when the process they need is gone, and call a deployment stuck only after a
stretch in which nothing moved, never after a fixed total time. Clocks are simulated where time matters."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from xinst_assets_tests import processes
from xinst_assets_tests.e2e import backfills
from xinst_assets_tests.e2e import conftest as e2e


class FakeClock:
    """``time.monotonic``/``time.time``/``time.sleep`` of a module under test: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    time = monotonic

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_run_returns_the_exit_status_and_both_outputs(tmp_path: Path):
    done = processes.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); "
                          "sys.exit(3)"], cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_waiting_for_a_file_returns_its_content_and_fails_at_once_when_the_process_ends_without_it(tmp_path: Path):
    written = processes.start([sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('ready')",
                               str(tmp_path / "flag")])
    assert processes.wait_for_file(tmp_path / "flag", written) == "ready"
    silent = processes.start([sys.executable, "-c", "print('bye')"])
    with pytest.raises(AssertionError, match=r"ended \(exit 0\) before writing the flag\n.*bye"):
        processes.wait_for_file(tmp_path / "never", silent, "the flag")


def test_a_wait_interrupted_by_the_test_limit_kills_the_processes_and_prints_their_output(capsys):
    # A process that never ends by itself; an alarm stands for pytest-timeout stopping the test.
    stuck = processes.start([sys.executable, "-c", "import sys, time; print('working', flush=True); time.sleep(3600)"])

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            processes.finish(stuck)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert stuck.popen.returncode == -signal.SIGKILL
    assert "killed: the test was stopped while it ran" in capsys.readouterr().err


def test_wait_for_fails_only_after_the_stall_limit_without_progress(monkeypatch: pytest.MonkeyPatch):
    clock = FakeClock()
    monkeypatch.setattr(e2e, "time", clock)
    sizes = iter(range(1, 50))
    calls = []

    def probe():
        calls.append(clock.now)
        return "up" if len(calls) == 40 else None

    # The log grows at every look for 40 looks (40 s, past a 10 s stall limit): still waiting, then it is up.
    assert e2e.wait_for(probe, "the server", progress=lambda: next(sizes), stall_s=10) == "up"
    # Nothing grows: stuck once 10 s have passed without a change.
    calls.clear()
    started = clock.now
    with pytest.raises(TimeoutError, match="nothing moved for 10s"):
        e2e.wait_for(lambda: None, "the server", progress=lambda: 7, stall_s=10)
    assert 10 < clock.now - started <= 12


class FakeServer:
    """A backfill's state and its runs' event times, as the GraphQL API gives them."""

    def __init__(self) -> None:
        self.runs = [{"runId": "r1", "status": "STARTED"}]
        self.events: dict[str, list[float]] = {"r1": []}

    def graphql(self, query: str, variables: dict) -> dict:
        assert query == backfills.RUN_EVENT_TIMES
        times = self.events[variables["runId"]]
        start = int(variables["cursor"] or 0)
        return {"logsForRun": {"__typename": "EventConnection", "cursor": str(len(times)),
                               "events": [{"timestamp": str(int(t * 1000))} for t in times[start:]]}}

    def backfill(self) -> dict:
        return {"status": "REQUESTED", "runs": [dict(r) for r in self.runs]}


def test_a_backfill_moves_while_its_runs_log_events_and_is_idle_from_its_last_event(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(backfills, "time", clock)
    server = FakeServer()
    progress = backfills.BackfillProgress(server)
    assert progress.look(server.backfill()) == 0  # the first look is a change
    for _ in range(30):  # a run logging an event every 10 s for 300 s: never idle for more than a look's interval
        clock.sleep(10)
        server.events["r1"].append(clock.now)
        assert progress.look(server.backfill()) <= backfills.EVENTS_LOOK_S
    last_event = clock.now
    clock.sleep(100)  # silence
    assert progress.look(server.backfill()) == pytest.approx(clock.now - last_event)
    server.runs[0]["status"] = "SUCCESS"  # a status change is movement
    assert progress.look(server.backfill()) == 0
