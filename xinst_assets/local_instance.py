"""The local Dagster instance made ready before any run: created and migrated once, repaired, and cleared of
runs whose process died.

:func:`prepare_local_instance` runs at the start of every ``xinst`` command and when the definitions load
(``dagster dev``, Dagster's CLI, run workers). Under the instance lock it

1. (the ``xinst`` command only) writes ``dagster.yaml`` where the Dagster home has none
   (:func:`write_local_instance_config`);
2. the first time (and after an upgrade of Dagster or an edit of ``dagster.yaml``): repairs the schema version
   records left by a race of older versions (two versions recorded: "more than one head present"), opens the
   instance, which creates its storage, and migrates it when its schema is older than this Dagster's; a stamp
   file then lets later starts skip this (they cost no instance at all);
3. marks failed every run whose claim (:mod:`xinst_assets.core.run_owners`) is left by a dead process; runs of
   live processes, here or on other commands, keep running.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage

from xinst_assets.core import run_owners
from xinst_assets.errors import ConfigError
from xinst_assets.instance_storage import instance_lock, run_owners_dir, write_local_instance_config

_log = logging.getLogger("xinst.instance")

STAMP_FILE = ".xinst-instance.json"
# The SQLite files whose schema Dagster creates and versions (alembic), relative to the Dagster home.
SCHEMA_FILES = ("history/runs.db", "schedules/schedules.db", "history/runs/index.db")
_RUN_END_EVENTS = {DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED}


class InstanceError(ConfigError):
    """The local instance is in a state xinst cannot fix by itself; the message says what to do."""


@dataclass(frozen=True)
class FailedRun:
    """A run marked failed because its process was gone."""

    run_id: str
    owner: str


@dataclass
class InstanceReport:
    """What :func:`prepare_local_instance` did."""

    wrote_config: bool = False
    checked: bool = False  # the storage was opened and its schema checked (else the stamp said it was current)
    migrated: bool = False
    repaired: list[str] = field(default_factory=list)
    failed_runs: list[FailedRun] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per thing a user should know."""
        out = [f"repaired the schema version record of {name} (left by concurrent first starts of an older "
               "version)" for name in self.repaired]
        if self.migrated:
            out.append("migrated the Dagster instance's storage to this Dagster version")
        out += [f"marked run {run.run_id} failed: its process ({run.owner}) is gone" for run in self.failed_runs]
        return out


def prepare_local_instance(dagster_home: Path, write_config: bool = True) -> InstanceReport:
    """Make the instance at ``dagster_home`` (which must be ``$DAGSTER_HOME``) ready for runs; see the module
    docstring (``write_config``: step 1). Safe to call from any number of processes at once."""
    dagster_home = Path(dagster_home)
    if Path(os.environ.get("DAGSTER_HOME", "")).resolve() != dagster_home.resolve():
        raise ValueError(f"prepare_local_instance({dagster_home}) needs DAGSTER_HOME set to that folder "
                         "(dagster.yaml reads its paths from it)")
    report = InstanceReport()
    with instance_lock(dagster_home):
        report.wrote_config = write_config and write_local_instance_config(dagster_home)
        if not _stamp_is_current(dagster_home):
            report.repaired = repair_schema_versions(dagster_home)
            with _open_instance(dagster_home) as instance:  # creates the storage
                local = _is_local_sqlite(instance)
                if local and (report.repaired or _schema_out_of_date(instance)):
                    instance.upgrade()
                    report.migrated = True
            _write_stamp(dagster_home, "sqlite" if local else "other")
            report.checked = True
        report.failed_runs = fail_runs_of_dead_processes(dagster_home)
    return report


def prepare_for_definitions() -> None:
    """The definitions' start-up: prepare ``$DAGSTER_HOME`` when set (its ``dagster.yaml`` is left as it is:
    only the ``xinst`` command writes one). Never fails the loading of the definitions; what it did, or why it
    could not, is logged."""
    home = os.environ.get("DAGSTER_HOME")
    if not home or not os.access(home, os.W_OK):  # unset, or a deployment's read-only configuration folder
        return
    try:
        report = prepare_local_instance(Path(home), write_config=False)
    except Exception as error:  # noqa: BLE001 - Dagster reports a broken instance itself, with its own context
        _log.warning("xinst could not prepare the Dagster instance at %s: %s", home, error)
        return
    for line in report.lines():
        _log.warning("xinst: %s", line)


def _open_instance(dagster_home: Path) -> dg.DagsterInstance:
    """The instance configured by ``dagster_home``'s ``dagster.yaml``; an :class:`InstanceError` saying what to do
    when that file is not valid."""
    import yaml
    from dagster._core.errors import DagsterInvalidConfigError

    try:
        return dg.DagsterInstance.from_config(str(dagster_home))
    except (DagsterInvalidConfigError, yaml.YAMLError) as error:
        first = " ".join(str(error).split())[:300]
        raise InstanceError(f"{dagster_home / 'dagster.yaml'} is not a valid Dagster instance configuration ({first}): "
                            "fix it, or move it aside and xinst writes a fresh one") from None


# --- runs whose process died ---------------------------------------------------------------------------------


def _end_event(instance: dg.DagsterInstance, run_id: str):
    """The run's end event (success, failure or cancellation) if its event log has one."""
    events = instance.all_logs(run_id, of_type=_RUN_END_EVENTS)
    return events[-1] if events else None


def run_process_state(instance: dg.DagsterInstance, run_id: str) -> tuple[run_owners.OwnerState, str]:
    """Whether the process that claimed ``run_id`` in ``instance`` is alive (ALIVE), died without ending the
    run (GONE), or is unknown here (NONE: never claimed, or ended), with a message naming it."""
    folder = run_owners_dir(instance.root_directory)
    with run_owners.probe(folder, run_id) as state:
        owner = run_owners.read_owner(run_owners.owner_path(folder, run_id))
        if state is run_owners.OwnerState.GONE and _end_event(instance, run_id) is not None:
            state = run_owners.OwnerState.NONE  # it stored its end and stopped before its status was written
    who = owner.describe() if owner else "no claim recorded"
    return state, f"run {run_id}: process {state.value} ({who})"


def fail_runs_of_dead_processes(dagster_home: Path) -> list[FailedRun]:
    """Mark failed every unfinished run whose claim in ``dagster_home`` was left by a dead process; remove the
    claims of those runs and of finished ones. Runs whose process is alive, anywhere, are left alone."""
    folder = run_owners_dir(dagster_home)
    failed: list[FailedRun] = []
    instance: dg.DagsterInstance | None = None
    try:
        for run_id in list(run_owners.claimed_runs(folder)):
            # The probe holds the dead claim's lock while the run is dealt with: another checker finds it busy.
            with run_owners.probe(folder, run_id) as state:
                if state is not run_owners.OwnerState.GONE:
                    continue
                if instance is None:  # opened only when a dead claim is found
                    instance = _open_instance(dagster_home)
                owner = run_owners.read_owner(run_owners.owner_path(folder, run_id))
                run = instance.get_run_by_id(run_id)
                if run is not None and not run.is_finished:
                    end = _end_event(instance, run_id)
                    if end is not None:  # its end was stored, its status not: finish what the process began
                        instance.handle_run_event(run_id, end.get_dagster_event(),
                                                  datetime.fromtimestamp(end.timestamp))
                    else:
                        who = _describe(owner)
                        message = (f"The process that ran this run ({who}) is gone: it ended without finishing "
                                   "the run (killed, or out of memory). Marked failed by xinst; run the "
                                   "partitions again to redo the work.")
                        instance.report_engine_event(message, run)
                        instance.report_run_failed(run, message)
                        failed.append(FailedRun(run_id, who))
                run_owners.remove_dead_claim(folder, run_id)
    finally:
        if instance is not None:
            instance.dispose()
    return failed


def _describe(owner: run_owners.Owner | None) -> str:
    if owner is None:
        return "unknown process"
    started = (f", started {datetime.fromtimestamp(owner.process_started).isoformat(timespec='seconds')}"
               if owner.process_started else "")
    return f"{owner.describe()}{started}"


# --- schema: creation, version records, migration -------------------------------------------------------------


def _schemas():
    """(file under the Dagster home, its tables as Dagster defines them now, the module of its alembic scripts)."""
    from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata
    from dagster._core.storage.runs.schema import RunStorageSqlMetadata
    from dagster._core.storage.runs.sqlite import sqlite_run_storage
    from dagster._core.storage.schedules.schema import ScheduleStorageSqlMetadata
    from dagster._core.storage.event_log.sqlite import sqlite_event_log
    from dagster._core.storage.schedules.sqlite import sqlite_schedule_storage

    return [
        (SCHEMA_FILES[0], RunStorageSqlMetadata, sqlite_run_storage.__file__),
        (SCHEMA_FILES[1], ScheduleStorageSqlMetadata, sqlite_schedule_storage.__file__),
        (SCHEMA_FILES[2], SqlEventLogStorageMetadata, sqlite_event_log.__file__),
    ]


def head_revision(module_file: str) -> str:
    """The newest schema revision of the Dagster storage whose alembic scripts sit beside ``module_file``."""
    from alembic.script import ScriptDirectory
    from dagster._core.storage.sql import get_alembic_config

    return ScriptDirectory.from_config(get_alembic_config(module_file)).as_revision_number("head")


def _schema_complete(path: Path, metadata) -> bool:
    """Whether the database at ``path`` has every table and column that Dagster's current schema defines."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
        for table in metadata.sorted_tables:
            if table.name not in tables:
                return False
            if not {c.name for c in table.columns} <= {c["name"] for c in inspector.get_columns(table.name)}:
                return False
        return True
    finally:
        engine.dispose()


def repair_schema_versions(dagster_home: Path) -> list[str]:
    """Where a database records several schema versions (processes that created a fresh home at the same time
    under an older xinst: one stamped Dagster's newest version after creating every table, another an older
    one), keep the newest when the tables are indeed complete; return the files repaired. Anything else is an
    :class:`InstanceError` saying what to do."""
    repaired = []
    for name, metadata, module_file in _schemas():
        path = dagster_home / name
        if not path.exists():
            continue
        con = sqlite3.connect(path, timeout=60)
        try:
            has_table = con.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone()[0]
            versions = [row[0] for row in con.execute("SELECT version_num FROM alembic_version")] if has_table else []
            if len(versions) <= 1:
                continue
            head = head_revision(module_file)
            if head not in versions or not _schema_complete(path, metadata):
                raise InstanceError(
                    f"{path} records {len(versions)} schema versions ({', '.join(sorted(versions))}) and its tables "
                    f"are not those of the newest ({head}), so xinst cannot repair it: move {dagster_home} aside "
                    "(it holds Dagster's run history only; the warehouse and the models are elsewhere) and run the "
                    "command again")
            with con:
                con.execute("DELETE FROM alembic_version WHERE version_num <> ?", [head])
            _log.warning("repaired %s: it recorded schema versions %s; kept %s", path, versions, head)
            repaired.append(name)
        finally:
            con.close()
    return repaired


def _is_local_sqlite(instance: dg.DagsterInstance) -> bool:
    return (isinstance(instance.run_storage, SqliteRunStorage)
            and isinstance(instance.event_log_storage, SqliteEventLogStorage)
            and isinstance(instance.schedule_storage, SqliteScheduleStorage))


def _schema_out_of_date(instance: dg.DagsterInstance) -> bool:
    for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
        current, head = storage.alembic_version()
        if current != head:
            return True
    return False


def _stamp(dagster_home: Path, kind: str) -> dict:
    config = dagster_home / "dagster.yaml"
    digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.exists() else None
    return {"dagster": dg.__version__, "dagster_yaml_sha256": digest, "storage": kind}


def _stamp_is_current(dagster_home: Path) -> bool:
    """Whether this instance was created and checked by this Dagster version with this ``dagster.yaml`` (and its
    files are still there)."""
    try:
        recorded = json.loads((dagster_home / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded != _stamp(dagster_home, str(recorded.get("storage"))):
        return False
    return recorded["storage"] != "sqlite" or all((dagster_home / name).exists() for name in SCHEMA_FILES)


def _write_stamp(dagster_home: Path, kind: str) -> None:
    staged = dagster_home / f".{STAMP_FILE}.{os.getpid()}"
    staged.write_text(json.dumps(_stamp(dagster_home, kind)), encoding="utf-8")
    staged.replace(dagster_home / STAMP_FILE)
