"""Backfills, runs and sensor ticks of the e2e deployment, through its GraphQL API.

Every wait here is bounded and fails with the server's log tails and the errors of failed runs, so a slow or
stuck deployment reads as a clear failure, never as a hang.
"""

from __future__ import annotations

import time
from typing import Any

from xinst_assets_tests.e2e.conftest import DagsterServer

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


def wait_for_backfill(server: DagsterServer, backfill_id: str, timeout_s: float) -> dict:
    """Poll the backfill until it and every run it launched have ended; fail after ``timeout_s`` with the
    backfill's state, its unfinished or failed runs and the server's log tails."""
    return _poll_backfill(
        server, backfill_id, timeout_s,
        lambda b, ended: b["status"] in BACKFILL_TERMINAL and ended, failure="did not finish",
    )


def _poll_backfill(server: DagsterServer, backfill_id: str, timeout_s: float, done, failure: str) -> dict:
    """Poll every 2 s until ``done(backfill, all_its_runs_ended)``; fail after ``timeout_s`` with the
    backfill's state, its unfinished or failed runs and the server's log tails."""
    deadline = time.monotonic() + timeout_s
    backfill: dict = {}
    while time.monotonic() < deadline:
        backfill = server.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if done(backfill, all(r["status"] in RUN_TERMINAL for r in backfill["runs"])):
            return backfill
        time.sleep(2)
    raise AssertionError(
        f"backfill {backfill_id} {failure} in {timeout_s:.0f}s: status {backfill.get('status')}\n"
        f"{_describe_failures(server, backfill)}\n{server.logs()}"
    )


def wait_for_runs(server: DagsterServer, backfill_id: str, runs: int, timeout_s: float) -> dict:
    """Poll a backfill until it has launched ``runs`` runs and all of them have ended (or the backfill has
    ended). Quicker than waiting for its status: the daemon marks a backfill complete on its next look, up to
    30 s after its last run."""
    return _poll_backfill(
        server, backfill_id, timeout_s,
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


def first_sensor_tick(server: DagsterServer, sensor_name: str, timeout_s: float) -> dict:
    """Start a sensor, wait for the daemon's first finished tick of it, stop the sensor; return the tick."""
    selector = sensor_selector(server, sensor_name)
    started = server.graphql(START_SENSOR, {"selector": selector})["startSensor"]
    assert started["__typename"] == "Sensor", started
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sensor = server.graphql(SENSOR_TICKS, {"selector": selector})["sensorOrError"]
            assert sensor["__typename"] == "Sensor", sensor
            done = [t for t in sensor["sensorState"]["ticks"] if t["status"] != "STARTED"]
            if done:
                return done[-1]  # ticks come newest first: the last is the first tick
            time.sleep(1)
        raise AssertionError(f"no tick of {sensor_name} in {timeout_s:.0f}s\n{server.logs()}")
    finally:
        server.graphql(STOP_SENSOR, {"id": started["sensorState"]["id"]})
