"""Backfills, runs and sensor ticks of the e2e deployment, through its GraphQL API.

No wait here has a time limit of its own: a backfill on a loaded machine may take many times what it takes on an
idle one, and that is no failure. A wait ends when what it waits for has happened; it fails at once when the
webserver or the daemon has exited, and otherwise only when the backfill is stuck: nothing moved for
``STALL_LIMIT_S`` (no new event in any of its runs, no new run, no change of its or its runs' status). Each failure
carries the server's log tails and the errors of failed runs, so a stuck deployment reads as a clear failure,
never as a hang. pytest-timeout's limit (each test's mark) bounds a test as a whole.
"""

from __future__ import annotations

import time
from typing import Any

from xinst_assets_tests.e2e.conftest import STALL_LIMIT_S, DagsterServer, wait_for

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status numPartitions partitionNames
      error { message }
      runs { runId status tags { key value } }
    }
    ... on PythonError { message }
    ... on BackfillNotFoundError { message }
  }
}
"""
RUN_EVENTS = """
query Events($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ErrorEvent { error { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""
# A run's events after a cursor: only their times (milliseconds since the epoch) and the next cursor.
RUN_EVENT_TIMES = """
query EventTimes($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection { cursor events { ... on MessageEvent { timestamp } } }
    ... on PythonError { message }
  }
}
"""
ASSET_NODES = """
query { assetNodes { assetKey { path } isPartitioned } }
"""
REPOSITORIES = """
query {
  workspaceOrError {
    ... on Workspace {
      locationEntries { name locationOrLoadError { ... on RepositoryLocation { repositories { name } } } }
    }
  }
}
"""
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { id status } }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""
STOP_SENSOR = """
mutation Stop($id: String!) {
  stopSensor(id: $id) { __typename ... on PythonError { message } }
}
"""
SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      sensorState { status ticks(limit: 10) { status skipReason runIds runKeys error { message } } }
    }
    ... on PythonError { message }
  }
}
"""
RUN_TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL_TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
# The events that say a step or run went wrong, or would have been retried.
FAILURE_EVENTS = {"ExecutionStepFailureEvent", "ExecutionStepUpForRetryEvent", "RunFailureEvent"}
LOCK_ERROR = "Could not set lock"  # DuckDB's message when a second process opens the file for writing


def asset_keys(server: DagsterServer, partitioned: bool | None = None) -> list[str]:
    """The (single-part) asset keys the code location defines, optionally only (un)partitioned ones."""
    nodes = server.graphql(ASSET_NODES)["assetNodes"]
    return sorted(
        "/".join(n["assetKey"]["path"]) for n in nodes if partitioned is None or n["isPartitioned"] == partitioned
    )


def launch_backfill(
    server: DagsterServer, partitions: list[str], assets: list[str], title: str, run_config: dict[str, Any]
) -> str:
    """An asset backfill of ``assets`` over ``partitions`` (unpartitioned assets are run once)."""
    params = {
        "partitionNames": partitions,
        "assetSelection": [{"path": name.split("/")} for name in assets],
        "title": title,
        "runConfigData": run_config,
    }
    result = server.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def run_events(server: DagsterServer, run_id: str) -> list[dict]:
    """Every event of a run, following the cursor (bounded)."""
    events, cursor = [], None
    for _ in range(200):
        page = server.graphql(RUN_EVENTS, {"runId": run_id, "cursor": cursor})["logsForRun"]
        assert page["__typename"] == "EventConnection", page
        events.extend(page["events"])
        cursor = page["cursor"]
        if not page["hasMore"]:
            break
    return events


def run_errors(server: DagsterServer, run_id: str) -> list[str]:
    """The error messages of a run's failed steps and of the run itself."""
    return [
        f"{e.get('stepKey') or 'run'}: {(e.get('error') or {}).get('message') or e.get('message')}"
        for e in run_events(server, run_id)
        if e["__typename"] in FAILURE_EVENTS
    ]


def _describe_failures(server: DagsterServer, backfill: dict) -> str:
    failed = [r for r in backfill.get("runs") or [] if r["status"] != "SUCCESS"]
    lines = [f"run {r['runId']} ({partition_of(r)}): {r['status']}" for r in failed]
    for run in failed[:3]:
        if run["status"] in RUN_TERMINAL:
            lines += [f"  {m[:1500]}" for m in run_errors(server, run["runId"])[:5]]
    return "\n".join(lines)


POLL_S = 2.0
EVENTS_LOOK_S = 20.0  # how often the runs' event logs are read while nothing else moves


class BackfillProgress:
    """When a backfill last moved: its status, its runs or their statuses changed, or one of its unfinished runs
    logged an event. While nothing else changes, the unfinished runs' new events are read every
    :data:`EVENTS_LOOK_S` (from where the previous read stopped), and the latest one's time counts."""

    def __init__(self, server: DagsterServer) -> None:
        self.server = server
        self.state: tuple | None = None
        self.cursors: dict[str, str | None] = {}
        self.moved_at = self.events_read_at = time.time()

    def look(self, backfill: dict) -> float:
        """Take in the backfill's latest state; return the seconds since it last moved."""
        now = time.time()
        state = (backfill["status"], tuple(sorted((r["runId"], r["status"]) for r in backfill["runs"])))
        if state != self.state:
            self.state, self.moved_at = state, now
        elif now - self.events_read_at >= EVENTS_LOOK_S:
            self.events_read_at = now
            for run in backfill["runs"]:
                if run["status"] not in RUN_TERMINAL:
                    self.moved_at = max(self.moved_at, self._latest_event(run["runId"]))
        return now - self.moved_at

    def _latest_event(self, run_id: str) -> float:
        """The time of the run's latest event since the previous read (0 when none)."""
        page = self.server.graphql(RUN_EVENT_TIMES, {"runId": run_id, "cursor": self.cursors.get(run_id)})
        page = page["logsForRun"]
        if page["__typename"] != "EventConnection" or not page["events"]:
            return 0.0
        self.cursors[run_id] = page["cursor"]
        return max(float(e.get("timestamp") or 0) / 1000 for e in page["events"])


def wait_for_backfill(server: DagsterServer, backfill_id: str, stall_s: float = STALL_LIMIT_S) -> dict:
    """Poll the backfill until it and every run it launched have ended, however long that takes; fail when the
    server has exited or the backfill has been stuck for ``stall_s`` (see the module docstring)."""
    return _poll_backfill(
        server, backfill_id, stall_s,
        lambda b, ended: b["status"] in BACKFILL_TERMINAL and ended, failure="did not finish",
    )


def _poll_backfill(server: DagsterServer, backfill_id: str, stall_s: float, done, failure: str) -> dict:
    """Poll every POLL_S until ``done(backfill, all_its_runs_ended)``; fail at once when the webserver or the
    daemon has exited, and after ``stall_s`` in which the backfill did not move, with the backfill's state, its
    unfinished or failed runs and the server's log tails."""
    progress = BackfillProgress(server)
    while True:
        server.assert_running()
        backfill = server.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if done(backfill, all(r["status"] in RUN_TERMINAL for r in backfill["runs"])):
            return backfill
        idle = progress.look(backfill)
        if idle > stall_s:
            raise AssertionError(
                f"backfill {backfill_id} {failure}: stuck, nothing moved for {idle:.0f}s (no new run, event or "
                f"status): status {backfill.get('status')}\n{_describe_failures(server, backfill)}\n"
                f"{server.logs()}"
            )
        time.sleep(POLL_S)


def wait_for_runs(server: DagsterServer, backfill_id: str, runs: int, stall_s: float = STALL_LIMIT_S) -> dict:
    """Poll a backfill until it has launched ``runs`` runs and all of them have ended (or the backfill has
    ended). Quicker than waiting for its status: the daemon marks a backfill complete on its next look, up to
    30 s after its last run."""
    return _poll_backfill(
        server, backfill_id, stall_s,
        lambda b, ended: ended and (len(b["runs"]) >= runs or b["status"] in BACKFILL_TERMINAL),
        failure=f"did not run {runs} runs",
    )


def partition_of(run: dict) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == "dagster/partition"), None)


def assert_backfill_succeeded(server: DagsterServer, backfill: dict, partitions: set[str]) -> None:
    """The backfill and each of its runs succeeded, the runs covered ``partitions``, and no step failed, was
    up for retry or met a DuckDB lock error."""
    assert backfill["status"] == "COMPLETED_SUCCESS", (
        f"backfill {backfill['status']} ({backfill.get('error')})\n{_describe_failures(server, backfill)}\n"
        f"{server.logs()}"
    )
    runs = backfill["runs"]
    assert runs and all(r["status"] == "SUCCESS" for r in runs), _describe_failures(server, backfill)
    assert {partition_of(r) for r in runs} - {None} == partitions
    for run in runs:
        events = run_events(server, run["runId"])
        kinds = {e["__typename"] for e in events}
        assert not kinds & FAILURE_EVENTS, (run["runId"], kinds & FAILURE_EVENTS)
        lock_errors = [e["message"] for e in events if LOCK_ERROR in (e.get("message") or "")]
        assert lock_errors == [], lock_errors
        assert "RunSuccessEvent" in kinds


def sensor_selector(server: DagsterServer, sensor_name: str) -> dict[str, str]:
    entries = server.graphql(REPOSITORIES)["workspaceOrError"]["locationEntries"]
    (location,) = entries
    (repository,) = location["locationOrLoadError"]["repositories"]
    return {"repositoryLocationName": location["name"], "repositoryName": repository["name"],
            "sensorName": sensor_name}


def first_sensor_tick(server: DagsterServer, sensor_name: str, stall_s: float = STALL_LIMIT_S) -> dict:
    """Start a sensor, wait for the daemon's first finished tick of it, stop the sensor; return the tick. The
    daemon ticks a sensor every 30 s or so: failing after ``stall_s`` without a finished tick means it is not
    ticking at all (and at once when the daemon has exited)."""
    selector = sensor_selector(server, sensor_name)
    started = server.graphql(START_SENSOR, {"selector": selector})["startSensor"]
    assert started["__typename"] == "Sensor", started

    def finished_tick() -> dict | None:
        server.assert_running()
        sensor = server.graphql(SENSOR_TICKS, {"selector": selector})["sensorOrError"]
        assert sensor["__typename"] == "Sensor", sensor
        done = [t for t in sensor["sensorState"]["ticks"] if t["status"] != "STARTED"]
        return done[-1] if done else None  # ticks come newest first: the last is the first tick

    try:
        try:
            return wait_for(finished_tick, f"a finished tick of {sensor_name}", stall_s=stall_s)
        except TimeoutError as error:
            raise AssertionError(f"{error}\n{server.logs()}") from None
    finally:
        server.graphql(STOP_SENSOR, {"id": started["sensorState"]["id"]})
