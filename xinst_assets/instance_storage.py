"""The local Dagster instance's event log: Dagster's SQLite storage, keeping its connections open.

Dagster's default local event log (``SqliteEventLogStorage``: one SQLite file per run plus an index file)
creates a new SQLAlchemy engine and a new SQLite connection for every event it stores, and closes them again.
A run over the ten language partitions stores a few hundred events (a planned and a done materialization per
asset and partition, step events, log lines), and the open/close pair is most of their cost: ~2 s of a
nightly refresh that otherwise takes ~20 s. This subclass keeps one engine, with its pooled connection, per
recently used shard. Everything else (the files, their schema and layout, the watchers the UI uses) is
Dagster's own, so an instance can switch between the two classes in either direction.

Safe because SQLite coordinates processes through the file itself (the files are in WAL mode, and an idle
pooled connection holds no read snapshot), and within a process Dagster's storage already serializes every
connection through one lock. ``xinst`` writes :data:`LOCAL_INSTANCE_YAML` into a Dagster home that has no
``dagster.yaml`` yet; a deployment with its own ``dagster.yaml`` (Postgres, see ``deploy/``) is untouched.

Two more duties, for every process that opens the instance with this configuration (the ``xinst`` command,
Dagster's CLI, the webserver, the daemon, run workers):

* Storage is created under the instance lock (:func:`instance_lock`). Dagster's SQLite storages create their
  tables and stamp their schema version without coordinating processes: several processes opening a fresh
  home at once fail (``table snapshots already exists``) or leave two schema versions recorded, after which
  every process fails ("more than one head present"). Here the first process creates them and the others wait.
* The process that runs a run claims it (:mod:`xinst_assets.core.run_owners`) when it stores the run's start,
  and ends the claim when it stores the run's end: a run whose process died is then told apart, for sure, from
  a run still working in another process (:mod:`xinst_assets.local_instance` marks the former failed, and so
  does Dagster's run monitoring in the daemon, through :class:`XinstRunLauncher`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from dagster import StringSource
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._core.storage.event_log.schema import AssetKeyTable, SqlEventLogStorageTable
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._serdes import ConfigurableClassData
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from sqlalchemy import create_engine
from sqlalchemy import exc as db_exc
from sqlalchemy.engine import Connection, Engine

from xinst_assets.core import run_owners
from xinst_assets.core.locks import LockTimeout, file_lock

# Shards kept open: the index, the run being written, and a few runs the UI may be watching. Each open shard
# costs a file handle or two and a little memory.
MAX_OPEN_SHARDS = 8

# The instance lock's file, in the Dagster home; held while storage is created or migrated (seconds).
INSTANCE_LOCK_FILE = ".xinst-instance.lock"
INSTANCE_LOCK_TIMEOUT_S = 600.0
# Where the processes running runs keep their claims (see xinst_assets/core/run_owners.py).
RUN_OWNERS_DIR = "run_owners"
_RUN_END_EVENTS = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED)

LOCAL_INSTANCE_YAML = """\
# The local Dagster instance of xinst (written by the xinst command into a Dagster home without a dagster.yaml;
# edit freely, xinst never overwrites it). Runs, schedules, sensors and the event log use Dagster's own SQLite
# storage under this folder, created under an inter-process lock; the event log keeps its connections open
# between events and records which process runs each run; the run launcher is Dagster's default one that also
# tells the daemon's run monitoring when a run's process has died (xinst_assets/instance_storage.py). A
# deployment uses Postgres instead: see deploy/dagster.yaml.
run_storage:
  module: xinst_assets.instance_storage
  class: LockedSqliteRunStorage
  config:
    dagster_home:
      env: DAGSTER_HOME
schedule_storage:
  module: xinst_assets.instance_storage
  class: LockedSqliteScheduleStorage
  config:
    dagster_home:
      env: DAGSTER_HOME
event_log_storage:
  module: xinst_assets.instance_storage
  class: PooledSqliteEventLogStorage
  config:
    dagster_home:
      env: DAGSTER_HOME
run_launcher:
  module: xinst_assets.instance_storage
  class: XinstRunLauncher
run_monitoring:
  enabled: true
  poll_interval_seconds: 30
  max_resume_run_attempts: 0
telemetry:
  enabled: false
"""


class InstanceLockTimeout(LockTimeout):
    """Another process held the instance lock for longer than :data:`INSTANCE_LOCK_TIMEOUT_S`."""


def instance_lock(dagster_home: str | os.PathLike, timeout_s: float = INSTANCE_LOCK_TIMEOUT_S):
    """The lock under which the instance at ``dagster_home`` is created, migrated or repaired (re-entrant in
    a thread: opening the instance under it takes it again)."""
    return file_lock(Path(dagster_home) / INSTANCE_LOCK_FILE, exclusive=True, timeout_s=timeout_s,
                     what="Dagster instance lock (held while a process creates or migrates the instance)",
                     error=InstanceLockTimeout)


def run_owners_dir(dagster_home: str | os.PathLike) -> Path:
    """Where the run claims of the instance at ``dagster_home`` live."""
    return Path(dagster_home) / RUN_OWNERS_DIR


class LockedSqliteRunStorage(SqliteRunStorage):
    """Dagster's SQLite run storage (``<dagster_home>/history/runs.db``), created under the instance lock."""

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"dagster_home": StringSource}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]):
        home = config_value["dagster_home"]
        with instance_lock(home):
            return cls.from_local(os.path.join(home, "history"), inst_data=inst_data)


class LockedSqliteScheduleStorage(SqliteScheduleStorage):
    """Dagster's SQLite schedule storage (``<dagster_home>/schedules/schedules.db``), created under the
    instance lock."""

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"dagster_home": StringSource}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]):
        home = config_value["dagster_home"]
        with instance_lock(home):
            return cls.from_local(os.path.join(home, "schedules"), inst_data=inst_data)


def event_log_dir(dagster_home: str | os.PathLike) -> str:
    """Where Dagster's default local storage keeps the event log of the instance at ``dagster_home``."""
    return os.path.join(os.fspath(dagster_home), "history", "runs")


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log (same files, same layout under ``<dagster_home>/history/runs``)
    that keeps an engine and its connection per shard for the :data:`MAX_OPEN_SHARDS` most recently used
    shards, instead of opening and closing one per event."""

    def __init__(self, dagster_home: str, inst_data: ConfigurableClassData | None = None) -> None:
        # Set before the parent's constructor, which may already index through _connect.
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._claims = run_owners.RunClaims(run_owners_dir(dagster_home))
        if os.path.exists(os.path.join(event_log_dir(dagster_home), "index.db")):
            super().__init__(event_log_dir(dagster_home), inst_data=inst_data)
        else:  # the parent creates the index shard
            with instance_lock(dagster_home):
                super().__init__(event_log_dir(dagster_home), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"dagster_home": StringSource}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "PooledSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine, opened on first use; the least recently used one is closed beyond the limit.
        Called with ``self._db_lock`` held."""
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        # One connection is kept: the lock lets one thread at a time use the storage's connections (a new
        # shard's schema check briefly opens a second, closed again when returned).
        engine = create_engine(self.conn_string_for_shard(shard), pool_size=1, max_overflow=2,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        self._engines[shard] = engine
        while len(self._engines) > MAX_OPEN_SHARDS:
            _, oldest = self._engines.popitem(last=False)
            oldest.dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _claim_started_runs(self, events: Sequence[EventLogEntry]) -> None:
        """This process runs the runs whose start it stores: claim them (before the start is stored, so that
        a run is never seen started and unclaimed while its process lives)."""
        for event in events:
            if event.dagster_event_type == DagsterEventType.RUN_START:
                self._claims.claim(event.run_id)

    def _release_ended_runs(self, events: Sequence[EventLogEntry]) -> None:
        for event in events:
            if event.dagster_event_type in _RUN_END_EVENTS:
                self._claims.release(event.run_id)

    def store_event(self, event: EventLogEntry) -> None:
        self._claim_started_runs([event])
        super().store_event(event)
        self._release_ended_runs([event])

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        self._claim_started_runs(events)
        self._store_event_batch(events)
        self._release_ended_runs(events)

    def _store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """One run's batch of events in one transaction in the run's file and one in the index, instead of
        one or two per event: Dagster sends a run's planned materializations, and a step's materializations of
        several partitions, as a batch when ``DAGSTER_EVENT_BATCH_SIZE`` is set. The rows written are those
        that :meth:`store_event` writes for each event, in the same order; each event is serialized once, and
        an asset's row in the asset table is written once per batch with the values its events set in turn."""
        if len({event.run_id for event in events}) != 1:
            for event in events:  # one at a time
                super().store_event(event)
            return
        rows = [self._event_to_row(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert().values(rows))
        mirrored = [(event, row) for event, row in zip(events, rows) if event.is_dagster_event and (
            event.dagster_event_type in ASSET_EVENTS or event.dagster_event_type in ASSET_CHECK_EVENTS
            or event.dagster_event_type in EVENT_TYPE_TO_PIPELINE_RUN_STATUS)]
        if not mirrored:
            return
        checks = []
        with self.index_transaction() as conn:  # the copies Dagster's SQLite storage keeps in its index
            assets, asset_ids = [], []
            for event, row in mirrored:
                with db_result(conn, SqlEventLogStorageTable.insert().values(row)) as result:
                    event_id = result.inserted_primary_key[0]
                if event.dagster_event_type in ASSET_EVENTS:
                    if event_id is None:
                        raise DagsterInvariantViolationError("Cannot store asset event tags for null event id.")
                    assets.append(event)
                    asset_ids.append(event_id)
                elif event.dagster_event_type in ASSET_CHECK_EVENTS:
                    checks.append((event, event_id))
            if assets:
                self._store_asset_event_tags(conn, assets, asset_ids)
                self._store_asset_rows(conn, assets, asset_ids)
        for event, event_id in checks:  # (opens its own connection)
            self.store_asset_check_event(event, event_id)

    def _store_asset_rows(self, conn: Connection, events: Sequence[EventLogEntry], event_ids: Sequence[int]) -> None:
        """The asset table's rows of ``events``: what Dagster's ``_store_asset_event`` writes for each in turn,
        merged per asset (each event sets some columns; the last value of a column stands)."""
        has_index_cols = self._has_asset_key_index_cols_on_connection(conn)
        merged: dict[str, dict[str, Any]] = {}
        for event, event_id in zip(events, event_ids):
            asset_key = event.dagster_event.asset_key if event.dagster_event else None
            if asset_key:
                merged.setdefault(asset_key.to_string(), {}).update(
                    self._get_asset_entry_values(event, event_id, has_index_cols))
        for asset_key, values in merged.items():
            if not values:
                continue
            try:
                conn.execute(AssetKeyTable.insert().values(asset_key=asset_key, **values))
            except db_exc.IntegrityError:
                conn.execute(AssetKeyTable.update().values(**values).where(AssetKeyTable.c.asset_key == asset_key))

    def open_shards(self) -> list[str]:
        """The shards whose connection is kept open, least recently used first."""
        with self._db_lock:
            return list(self._engines)

    def _close_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        # The run files are deleted: connections to them must not outlive them.
        self._close_engines()
        super().wipe()

    def dispose(self) -> None:
        self._close_engines()
        self._claims.release_all()
        super().dispose()


class XinstRunLauncher(DefaultRunLauncher):
    """Dagster's default run launcher (runs in a process of the code server) that can tell the daemon's run
    monitoring whether a run's process is alive, from the run's claim: a run whose process died is then marked
    failed within the monitoring interval, whoever started it (the UI, a schedule, the ``xinst`` command)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        from xinst_assets.local_instance import run_process_state

        state, message = run_process_state(self._instance, run.run_id)
        if state is run_owners.OwnerState.GONE:
            return CheckRunHealthResult(WorkerStatus.FAILED, message)
        # Alive, or not claimed through this instance (started before claims existed): never failed on a guess.
        return CheckRunHealthResult(WorkerStatus.RUNNING, message)


def write_local_instance_config(dagster_home: Path) -> bool:
    """Write :data:`LOCAL_INSTANCE_YAML` as ``dagster_home``'s ``dagster.yaml`` unless it has one; return
    whether it was written."""
    path = dagster_home / "dagster.yaml"
    if path.exists():
        return False
    dagster_home.mkdir(parents=True, exist_ok=True)
    # Written aside and linked into place: a process starting at the same time sees the whole file or none,
    # and a file that appeared meanwhile is kept.
    staged = dagster_home / f".dagster.yaml.{os.getpid()}"
    staged.write_text(LOCAL_INSTANCE_YAML, encoding="utf-8")
    try:
        os.link(staged, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: create it exclusively instead
        try:
            with path.open("x", encoding="utf-8") as out:
                out.write(LOCAL_INSTANCE_YAML)
        except FileExistsError:
            return False
    finally:
        staged.unlink()
    return True
