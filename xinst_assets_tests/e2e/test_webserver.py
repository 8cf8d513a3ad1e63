"""A backfill of three language partitions launched through the real webserver's GraphQL API.

The daemon turns the backfill into runs (three at a time), the runs write one DuckDB warehouse at the same
time, and the test reads the tables afterwards. A second backfill of the same partitions must leave the tables
exactly as they were.
"""

from __future__ import annotations


import os as _os

import pytest as _pytest

# Not yet verified to finish within CI's time on a loaded 2-core machine: run with XINST_E2E=1.
pytestmark_e2e = _pytest.mark.skipif(not _os.environ.get("XINST_E2E"), reason="set XINST_E2E=1 to run server e2e tests")

import time

import pytest

from xinst_assets.resources.warehouse import Warehouse
from xinst_assets_tests.e2e.conftest import E2E_LANGUAGES, DagsterServer

pytestmark = [_pytest.mark.slow, pytestmark_e2e]

# The filtering part of the graph: ingest, LID + quality, dbt screening, near-dedup, rejections, stats mart.
FILTERING_ASSETS = (
    "raw_web_text",
    "document_signals",
    "screened_documents",
    "language_filtered_text",
    "filter_rejections",
    "language_filter_stats",
)
# Measured 90-330 s per backfill on 2 busy cores (docs/deployment.md); the daemon adds up to 30 s per tick.
BACKFILL_TIMEOUT_S = 420
# Each run executes its steps in the run worker: the default multiprocess executor starts a process per step,
# and each process imports the definitions again (dbt, torch, transformers: 10-40 s on a busy 2-core machine).
# Runs are still separate processes, three at a time, so the warehouse still sees concurrent writers.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
TERMINAL_STATUSES = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
# Tables compared between the first and the second backfill, with the columns that identify a row's content.
# Timestamps of *when* a run happened (raw_shards.ingested_at) are left out on purpose.
COMPARED_TABLES = {
    "raw_documents": "lang, doc_id, text, url, timestamp, source, shard, position",
    "document_signals": "lang, doc_id, settings_key, lid_label, lid_score, reject_reason",
    "filtered_documents": "*",
    "filter_rejections": "*",
}

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
      events { __typename ... on MessageEvent { message level stepKey } }
    }
    ... on PythonError { message }
  }
}
"""


def launch_backfill(server: DagsterServer, partitions: list[str], assets: tuple[str, ...], title: str) -> str:
    params = {
        "partitionNames": partitions,
        "assetSelection": [{"path": [name]} for name in assets],
        "title": title,
        "runConfigData": IN_PROCESS,
    }
    result = server.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def wait_for_backfill(server: DagsterServer, backfill_id: str, timeout_s: float) -> dict:
    """Poll the backfill until it ends and every run it launched has ended (bounded)."""
    deadline = time.monotonic() + timeout_s
    backfill: dict = {}
    while time.monotonic() < deadline:
        backfill = server.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        runs_done = all(r["status"] in {"SUCCESS", "FAILURE", "CANCELED"} for r in backfill["runs"])
        if backfill["status"] in TERMINAL_STATUSES and runs_done:
            return backfill
        time.sleep(2)
    raise AssertionError(
        f"backfill {backfill_id} did not finish in {timeout_s}s: {backfill}\n{server.logs()}"
    )


def run_messages(server: DagsterServer, run_id: str) -> list[dict]:
    """Every event of a run (type, message, level), following the cursor."""
    events, cursor = [], None
    for _ in range(100):  # bounded: a run of six assets has a few hundred events
        page = server.graphql(RUN_EVENTS, {"runId": run_id, "cursor": cursor})["logsForRun"]
        assert page["__typename"] == "EventConnection", page
        events.extend(page["events"])
        cursor = page["cursor"]
        if not page["hasMore"]:
            break
    return events


def partition_of(run: dict) -> str:
    return next(t["value"] for t in run["tags"] if t["key"] == "dagster/partition")


def assert_backfill_succeeded(server: DagsterServer, backfill: dict) -> None:
    """The backfill and each of its runs succeeded, one or more runs per partition, and no step failed,
    retried or met a DuckDB lock error."""
    assert backfill["status"] == "COMPLETED_SUCCESS", f"{backfill}\n{server.logs()}"
    runs = backfill["runs"]
    assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
    assert {partition_of(r) for r in runs} == set(E2E_LANGUAGES)
    for run in runs:
        events = run_messages(server, run["runId"])
        kinds = {e["__typename"] for e in events}
        failures = {"ExecutionStepFailureEvent", "ExecutionStepUpForRetryEvent", "RunFailureEvent"}
        assert not kinds & failures, kinds
        lock_errors = [e["message"] for e in events if "Could not set lock" in (e.get("message") or "")]
        assert lock_errors == [], lock_errors
        assert "RunSuccessEvent" in kinds


def snapshot(warehouse: Warehouse) -> dict[str, list[tuple]]:
    """The compared tables' rows, in a stable order."""
    with warehouse.read() as con:
        return {
            table: con.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()
            for table, columns in COMPARED_TABLES.items()
        }


def test_a_backfill_of_three_languages_through_graphql_fills_the_warehouse_and_a_second_changes_nothing(
    dagster_server: DagsterServer,
):
    languages = list(E2E_LANGUAGES)
    started = time.monotonic()
    first_id = launch_backfill(dagster_server, languages, FILTERING_ASSETS, "e2e: filtering, first")
    first = wait_for_backfill(dagster_server, first_id, BACKFILL_TIMEOUT_S)
    first_s = time.monotonic() - started
    assert first["numPartitions"] == 3 and sorted(first["partitionNames"]) == sorted(languages)
    assert_backfill_succeeded(dagster_server, first)

    warehouse = Warehouse(path=str(dagster_server.warehouse_path), lock_timeout_s=60)
    with warehouse.read() as con:
        kept = dict(con.execute("SELECT lang, count(*) FROM filtered_documents GROUP BY lang").fetchall())
        distinct = con.execute(
            "SELECT count(*) = count(DISTINCT (lang, doc_id)) FROM filtered_documents"
        ).fetchone()
        stats = con.execute("SELECT DISTINCT lang FROM language_filter_stats").fetchall()
    stats_langs = {row[0] for row in stats}
    assert set(kept) == set(languages) and all(n > 0 for n in kept.values()), kept
    assert distinct == (True,)
    assert stats_langs == set(languages)
    before = snapshot(warehouse)

    started = time.monotonic()
    second_id = launch_backfill(dagster_server, languages, FILTERING_ASSETS, "e2e: filtering, again")
    second = wait_for_backfill(dagster_server, second_id, BACKFILL_TIMEOUT_S)
    second_s = time.monotonic() - started
    assert_backfill_succeeded(dagster_server, second)
    after = snapshot(warehouse)
    for table in COMPARED_TABLES:
        assert after[table] == before[table], f"{table} changed on the second backfill"
    print(f"\nfirst backfill {first_s:.0f}s, second {second_s:.0f}s; kept per language {kept}")
