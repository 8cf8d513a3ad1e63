"""The local Dagster instance's event log (Dagster's SQLite storage keeping its connections open) and the
``dagster.yaml`` that xinst writes for it: real Dagster instances on temporary homes."""

import os
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster import AssetExecutionContext
from dagster._core.instance.config import dagster_instance_config

from xinst_assets.instance_storage import (
    LOCAL_INSTANCE_YAML,
    MAX_OPEN_SHARDS,
    PooledSqliteEventLogStorage,
    event_log_dir,
    write_local_instance_config,
)
from xinst_assets_tests import processes

PARTITIONS = dg.StaticPartitionsDefinition(["fi", "sw", "ur"])


@dg.asset(partitions_def=PARTITIONS)
def words(context: AssetExecutionContext) -> dg.MaterializeResult:
    context.log.info(f"counting {','.join(context.partition_keys)}")
    return dg.MaterializeResult(metadata={"rows": len(context.partition_keys)})


@dg.asset(partitions_def=PARTITIONS, deps=[words])
def counts(context: AssetExecutionContext) -> None:
    context.log.info(f"summing {','.join(context.partition_keys)}")


def _home(tmp_path: Path, config: str | None = LOCAL_INSTANCE_YAML) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True)
    if config is not None:
        (home / "dagster.yaml").write_text(config, encoding="utf-8")
    return home


def _instance(home: Path, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.get()


def _history(instance: dg.DagsterInstance, run_ids: list[str]) -> list[list[tuple]]:
    """Each run's events as (type, step, asset, partition, message of log lines), in order."""
    history = []
    for run_id in run_ids:
        rows = []
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            rows.append((event.event_type_value if event else "LOG", entry.step_key,
                         event.asset_key.to_user_string() if event and event.asset_key else None,
                         event.partition if event else None, None if event else entry.user_message))
        history.append(rows)
    return history


def _asset_state(instance: dg.DagsterInstance) -> dict[str, tuple]:
    """What the UI shows of each asset: the latest materialization's partition, the materialized partitions,
    the partitions of every materialization, and whether a run is planned or in progress for it."""
    state = {}
    for name in ("words", "counts"):
        key = dg.AssetKey(name)
        latest = instance.get_latest_materialization_event(key)
        records = instance.fetch_materializations(key, limit=100).records
        planned = instance.fetch_planned_materializations(key, limit=100).records
        state[name] = (latest.dagster_event.partition if latest else None, instance.get_materialized_partitions(key),
                       sorted(r.event_log_entry.dagster_event.partition for r in records), len(planned),
                       len(instance.get_asset_records([key])))
    return state


def _materialize_each_partition(instance: dg.DagsterInstance) -> list[str]:
    """A run per partition, then one over all of them (whose steps report a materialization per partition:
    with a batch size, Dagster hands each step's as one batch)."""
    runs = [dg.materialize([words, counts], instance=instance, partition_key=key).run_id
            for key in PARTITIONS.get_partition_keys()]
    keys = PARTITIONS.get_partition_keys()
    every = dg.materialize([words, counts], instance=instance, tags={
        "dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
    return [*runs, every.run_id]


@pytest.mark.parametrize("batch_size", [0, 100], ids=["one-by-one", "batches"])
def test_the_local_instance_stores_the_same_events_as_dagsters_default_storage(tmp_path, monkeypatch, batch_size):
    # With a batch size, Dagster hands a run's planned materializations over as one batch (store_event_batch).
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", str(batch_size))
    with _instance(_home(tmp_path / "pooled"), monkeypatch) as pooled:
        assert isinstance(pooled.event_log_storage, PooledSqliteEventLogStorage)
        pooled_runs = _materialize_each_partition(pooled)
        pooled_history = _history(pooled, pooled_runs)
        pooled_assets = _asset_state(pooled)
    with _instance(_home(tmp_path / "default", config=None), monkeypatch) as default:
        assert type(default.event_log_storage).__name__ == "SqliteEventLogStorage"
        default_history = _history(default, _materialize_each_partition(default))
        default_assets = _asset_state(default)

    assert pooled_history == default_history
    assert pooled_assets == default_assets
    latest, status, done, planned, rows = pooled_assets["words"]
    assert [row[0] for row in pooled_history[0]].count("ASSET_MATERIALIZATION") == 2
    assert ("LOG", "words", None, None, "counting fi") in pooled_history[0]
    assert latest in {"fi", "sw", "ur"} and status == {"fi", "sw", "ur"} and rows == 1
    assert done == ["fi", "fi", "sw", "sw", "ur", "ur"] and planned == 6  # a run each, then one over all three
    # The same files where Dagster's default storage keeps them: an instance can switch back and forth.
    assert sorted(p.name for p in Path(event_log_dir(tmp_path / "pooled" / "dagster_home")).glob("*.db")) == \
        sorted([f"{run_id}.db" for run_id in pooled_runs] + ["index.db"])
    assert [row[0] for row in pooled_history[-1]].count("ASSET_MATERIALIZATION") == 6


def test_an_instance_switched_between_the_default_storage_and_the_local_one_keeps_its_history(tmp_path, monkeypatch):
    home = _home(tmp_path, config=None)
    with _instance(home, monkeypatch) as default:
        first = _materialize_each_partition(default)
        before = _history(default, first)
    write_local_instance_config(home)
    with _instance(home, monkeypatch) as pooled:
        assert isinstance(pooled.event_log_storage, PooledSqliteEventLogStorage)
        assert _history(pooled, first) == before
        later = dg.materialize([words], instance=pooled, partition_key="sw").run_id
        assert len(pooled.fetch_materializations(dg.AssetKey("words"), limit=10).records) == 7
    (home / "dagster.yaml").unlink()
    with _instance(home, monkeypatch) as default:
        assert [row[0] for row in _history(default, [later])[0]].count("ASSET_MATERIALIZATION") == 1


def test_open_connections_are_bounded_and_a_closed_runs_events_are_read_again(tmp_path, monkeypatch):
    with _instance(_home(tmp_path), monkeypatch) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        runs = [dg.materialize([words], instance=instance, partition_key="fi").run_id
                for _ in range(MAX_OPEN_SHARDS + 2)]
        assert len(storage.open_shards()) == MAX_OPEN_SHARDS
        assert runs[0] not in storage.open_shards() and runs[-1] in storage.open_shards()
        first = [row[0] for row in _history(instance, [runs[0]])[0]]
        assert first.count("ASSET_MATERIALIZATION") == 1 and first[-1] == "PIPELINE_SUCCESS"
        assert storage.open_shards()[-1] == runs[0]  # opened again, now the most recent

        instance.wipe()
        assert set(storage.open_shards()) <= {"index"}  # no run file of before the wipe stays open
        again = dg.materialize([words], instance=instance, partition_key="ur").run_id
        assert [r.dagster_run.run_id for r in instance.get_run_records()] == [again]
        assert len(instance.fetch_materializations(dg.AssetKey("words"), limit=10).records) == 1
    assert storage.open_shards() == []  # closed with the instance


WRITER = r"""
import sys
import dagster as dg
from xinst_assets_tests.test_instance_storage import words
with dg.DagsterInstance.get() as instance:
    for _ in range(int(sys.argv[2])):
        assert dg.materialize([words], instance=instance, partition_key=sys.argv[1]).success
"""


def test_processes_writing_one_instance_at_the_same_time_lose_no_event(tmp_path, monkeypatch):
    home = _home(tmp_path)
    with _instance(home, monkeypatch):
        pass  # creates the storage once, as `dagster instance migrate` does for a deployment
    env = {**os.environ, "DAGSTER_HOME": str(home), "DO_NOT_TRACK": "1"}
    done = processes.finish(*[processes.start([sys.executable, "-c", WRITER, key, "4"], env=env,
                                              stderr_to_stdout=True) for key in ("fi", "sw", "ur")])
    assert [p.returncode for p in done] == [0, 0, 0], "\n=====\n".join(p.stdout[-3000:] for p in done)
    with _instance(home, monkeypatch) as instance:
        records = instance.get_run_records()
        assert len(records) == 12 and all(r.dagster_run.is_success for r in records)
        done = instance.fetch_materializations(dg.AssetKey("words"), limit=100).records
        assert sorted(r.event_log_entry.dagster_event.partition for r in done) == ["fi"] * 4 + ["sw"] * 4 + ["ur"] * 4
        for record in records:
            types = [row[0] for row in _history(instance, [record.dagster_run.run_id])[0]]
            assert types.count("ASSET_MATERIALIZATION") == 1 and types[-1] == "PIPELINE_SUCCESS"


def test_the_local_config_is_written_once_and_never_over_a_users_own(tmp_path):
    home = tmp_path / "dagster_home"
    assert write_local_instance_config(home)
    assert (home / "dagster.yaml").read_text(encoding="utf-8") == LOCAL_INSTANCE_YAML
    config, _ = dagster_instance_config(str(home))  # Dagster's own validation of the file
    assert config["event_log_storage"]["class"] == "PooledSqliteEventLogStorage"
    assert not write_local_instance_config(home)

    own = tmp_path / "own_home"
    own.mkdir()
    (own / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    assert not write_local_instance_config(own)
    assert (own / "dagster.yaml").read_text(encoding="utf-8") == "telemetry:\n  enabled: false\n"
    assert sorted(p.name for p in own.iterdir()) == ["dagster.yaml"]  # nothing staged left behind
