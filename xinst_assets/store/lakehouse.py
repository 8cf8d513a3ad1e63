"""The lakehouse backend: a DuckLake with its catalog in Postgres and its data files in a shared folder or on
S3-compatible storage, written by many processes on many machines at once.

Why DuckLake: DuckDB lets one process write a database file, so the embedded warehouse serialises every write
window of every partition behind a file lock, and its file must not live on a network file system. A DuckLake
keeps the same SQL (DuckDB runs it) but stores tables as Parquet files plus a catalog of snapshots in a SQL
database; Postgres as the catalog lets any number of processes, on any node, read and commit transactions.

What changes for writers: there is no lock, and no PRIMARY KEY or UNIQUE constraint. A partition's write is a
delete + insert (or MERGE) in one transaction, checked for conflicts when it commits: DuckLake refuses a commit
that inserts into a table another transaction deleted from since this one began (or deletes from a table that
another inserted into), even for other languages' rows. Such a write is run again on a fresh snapshot
(:meth:`LakehouseBackend.transaction`), so writes must be repeatable: computed inside the transaction from
staged inputs, never from state kept between attempts.

One race that check cannot see: two writers replacing the same partition while it is empty delete nothing, so
neither commit conflicts and the partition ends up with both writers' rows. Every partition therefore has a
marker row in ``<table>__partition_writes``, created (once) before its first write; each replace deletes and
inserts its partition's marker in the same transaction (:func:`claim_partition`), so two replaces of one
partition always touch the same row and one of them is run again.

Connections: attaching a DuckLake reads its catalog from Postgres (about a second), so each process keeps one
DuckDB database with the lake attached, and each window, session or thread works on a cursor of it (its own
transaction context). Extensions come from their pip wheels (:mod:`.extensions`), never from the network.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from urllib.parse import urlsplit, urlunsplit

import duckdb

from xinst_assets.resources.warehouse import copy_to_parquet
from xinst_assets.store.base import (
    RetryPolicy,
    TransactionStats,
    nothing_held,
    replace_partition_rows,
    run_transaction,
)
from xinst_assets.store.extensions import connection_config, extension_directory

T = TypeVar("T")

# Process-wide attached databases, by (process id, settings key): a forked child attaches its own.
_roots: dict[tuple[int, str], duckdb.DuckDBPyConnection] = {}
_roots_lock = threading.Lock()
_sessions = threading.local()  # this thread's session cursor, by settings key


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def redact(catalog_uri: str) -> str:
    """The catalog URI with any password replaced by ``***`` (for logs, errors and metadata)."""
    parts = urlsplit(catalog_uri)
    if parts.scheme and parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return re.sub(r"(password\s*=\s*)(\S+)", r"\1***", catalog_uri)


@dataclass(frozen=True)
class S3Settings:
    """An S3-compatible object store for the data files. Keys are read from the environment variables named
    here when the lake is attached, never stored in configuration."""

    endpoint: str | None = None  # host[:port] of an S3-compatible service; None for AWS itself
    region: str | None = None
    url_style: str = "vhost"  # most S3-compatible services (MinIO, Ceph, moto) want "path"
    use_ssl: bool = True
    key_id_env: str = "AWS_ACCESS_KEY_ID"
    secret_env: str = "AWS_SECRET_ACCESS_KEY"
    session_token_env: str = "AWS_SESSION_TOKEN"

    def secret_sql(self, name: str) -> str:
        options = ["TYPE s3", f"URL_STYLE {_literal(self.url_style)}", f"USE_SSL {str(self.use_ssl).lower()}"]
        for option, env in (("KEY_ID", self.key_id_env), ("SECRET", self.secret_env),
                            ("SESSION_TOKEN", self.session_token_env)):
            if os.environ.get(env):
                options.append(f"{option} {_literal(os.environ[env])}")
        if self.endpoint:
            options.append(f"ENDPOINT {_literal(self.endpoint)}")
        if self.region:
            options.append(f"REGION {_literal(self.region)}")
        return f"CREATE OR REPLACE SECRET {name} ({', '.join(options)})"


@dataclass(frozen=True)
class LakehouseSettings:
    """Where a lakehouse is: its catalog (a Postgres connection string, a secret) and its data path."""

    catalog_uri: str  # libpq URI or key=value conninfo of the catalog database
    data_path: str  # a folder every writer mounts at the same path, or s3://bucket/prefix/
    metadata_schema: str = "xinst_lakehouse"  # the catalog's Postgres schema: can share Dagster's database
    alias: str = "lake"
    threads: int | None = None
    memory_limit: str | None = None
    extension_dir: str | None = None  # default: see extensions.extension_directory
    s3: S3Settings | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not self.catalog_uri:
            raise ValueError("the lakehouse needs a catalog: a Postgres connection string")
        if not self.data_path:
            raise ValueError("the lakehouse needs a data path: a shared folder or an s3:// URL")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.alias):
            raise ValueError(f"lakehouse alias must be a plain SQL identifier, got {self.alias!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.metadata_schema):
            raise ValueError(f"metadata schema must be a plain SQL identifier, got {self.metadata_schema!r}")

    @property
    def on_object_storage(self) -> bool:
        return "://" in self.data_path and not self.data_path.startswith("file://")

    @property
    def key(self) -> str:
        """Identifies the lake (catalog, schema, data path) and the connection settings."""
        return "\0".join(map(str, (self.catalog_uri, self.metadata_schema, self.data_path, self.alias,
                                   self.threads, self.memory_limit, self.extension_dir, self.s3)))

    def resolved_data_path(self) -> str:
        """The data path as DuckLake stores it: an absolute folder ending in ``/``, or the URL as given."""
        if self.on_object_storage:
            return self.data_path if self.data_path.endswith("/") else self.data_path + "/"
        folder = Path(self.data_path.removeprefix("file://")).expanduser().resolve()
        return str(folder) + "/"

    def attach_sql(self) -> str:
        return (f"ATTACH IF NOT EXISTS {_literal('ducklake:postgres:' + self.catalog_uri)} AS {self.alias} "
                f"(DATA_PATH {_literal(self.resolved_data_path())}, "
                f"METADATA_SCHEMA {_literal(self.metadata_schema)})")

    def describe(self) -> str:
        """The lake for logs and messages, without secrets."""
        return f"DuckLake (catalog {redact(self.catalog_uri)}, schema {self.metadata_schema}, data {self.data_path})"


class LakehouseBackend:
    """A DuckLake lakehouse as a store backend (see the module's docstring)."""

    name = "lakehouse"

    def __init__(self, settings: LakehouseSettings):
        self.settings = settings

    # -- connections ---------------------------------------------------------------------------------------

    def _root(self) -> duckdb.DuckDBPyConnection:
        key = (os.getpid(), self.settings.key)
        with _roots_lock:
            root = _roots.get(key)
            if root is None:
                root = _roots[key] = self._attach()
            return root

    def _attach(self) -> duckdb.DuckDBPyConnection:
        """A new DuckDB database with the lake attached. The first processes to attach a new catalog create it
        (a schema and DuckLake's tables in Postgres); when several do at once, all but one fail on Postgres's
        unique names, and attach again, finding the catalog the winner made."""
        policy = self.settings.retry
        for attempt in range(1, policy.attempts + 1):
            try:
                return self._attach_once()
            except _CatalogCreationRace as race:
                if attempt == policy.attempts:
                    raise RuntimeError(str(race)) from None
                time.sleep(policy.wait_s(attempt))
        raise AssertionError("unreachable")

    def _attach_once(self) -> duckdb.DuckDBPyConnection:
        s = self.settings
        config = connection_config(extension_directory(s.extension_dir))
        if s.threads:
            config["threads"] = int(s.threads)
        if s.memory_limit:
            config["memory_limit"] = s.memory_limit
        con = duckdb.connect(config=config)
        try:
            con.execute("SET enable_progress_bar = false")
            if s.on_object_storage:
                con.execute((s.s3 or S3Settings()).secret_sql(f"{s.alias}_data"))
            else:
                Path(s.resolved_data_path()).mkdir(parents=True, exist_ok=True)
            con.execute(s.attach_sql())
        except duckdb.Error as error:
            con.close()
            message = str(error).replace(s.catalog_uri, redact(s.catalog_uri))
            failure = f"cannot attach the lakehouse {s.describe()}: {message}"
            if _is_catalog_creation_race(message):
                raise _CatalogCreationRace(failure) from None
            raise RuntimeError(failure) from None
        return con

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self._root().cursor()
        cursor.execute(f"USE {self.settings.alias}")
        cursor.execute("SET enable_progress_bar = false")  # a run's log is no terminal
        return cursor

    def _session_cursor(self) -> duckdb.DuckDBPyConnection | None:
        return _thread_sessions().get(self.settings.key)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        held = self._session_cursor()
        if held is not None:
            yield held
            return
        cursor = self._cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def close(self) -> None:
        """Detach this process's connection to the lake (the next use attaches again)."""
        with _roots_lock:
            root = _roots.pop((os.getpid(), self.settings.key), None)
        if root is not None:
            root.close()

    # -- the StoreBackend interface ------------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self) -> Iterator["LakeSession"]:
        """One cursor for this thread's windows until the block ends; no lock is taken. Nested sessions reuse
        the outer one."""
        held = self._session_cursor()
        if held is not None:
            yield LakeSession(self, held)
            return
        cursor = self._cursor()
        sessions = _thread_sessions()
        sessions[self.settings.key] = cursor
        try:
            yield LakeSession(self, cursor)
        finally:
            del sessions[self.settings.key]
            cursor.close()

    def read(self):
        return self._connection()

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction, not retried: a lost commit race raises ``duckdb.TransactionException``. For writes
        that concurrent runs may race, use :meth:`transaction`."""
        with self._connection() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def transaction(self, work: Callable[[duckdb.DuckDBPyConnection], T],
                    stats: TransactionStats | None = None) -> T:
        return run_transaction(self._connection, work, self.settings.retry, stats)

    def lock(self, exclusive: bool = True):
        return nothing_held()  # writers never wait for each other here

    def prepare_partition(self, table: str, lang: str) -> None:
        """Make sure ``lang`` has its marker row in ``table``'s marker table (committed before any replace
        transaction of the partition begins; see :func:`claim_partition`)."""
        marker = marker_table(table)
        with self._connection() as con:
            exists = con.execute(f"SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND "
                                 f"table_name = ?", [self.settings.alias, marker]).fetchone()[0]
            if exists and con.execute(f"SELECT count(*) FROM {marker} WHERE lang = ?", [lang]).fetchone()[0]:
                return

        def create(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(f"CREATE TABLE IF NOT EXISTS {marker} (lang VARCHAR NOT NULL, written_at TIMESTAMP)")
            # two writers may both add one: harmless, a replace claims every marker row of its partition
            con.execute(f"INSERT INTO {marker} SELECT ?, NULL WHERE NOT EXISTS "
                        f"(SELECT 1 FROM {marker} WHERE lang = ?)", [lang, lang])

        self.transaction(create)

    def replace_partition(self, table: str, lang: str, source_sql: str, params: list | None = None,
                          stats: TransactionStats | None = None) -> int:
        """Replace ``table``'s rows of ``lang`` with ``source_sql``'s in one transaction, run again if it loses
        a commit race (including to another replace of the same, empty, partition)."""
        return self.partition_transaction(
            table, lang, lambda con: replace_partition_rows(con, table, lang, source_sql, params), stats)

    def partition_transaction(self, table: str, lang: str, work: Callable[[duckdb.DuckDBPyConnection], T],
                              stats: TransactionStats | None = None) -> T:
        """Run ``work`` in one transaction that claims ``table``'s partition ``lang`` first (so that two writers
        of the same partition always conflict), run again on a fresh snapshot if it loses a commit race."""
        self.prepare_partition(table, lang)

        def claimed(con: duckdb.DuckDBPyConnection) -> T:
            claim_partition(con, table, lang)
            return work(con)

        return self.transaction(claimed, stats)

    @property
    def primary_keys(self) -> bool:
        return False  # DuckLake has no PRIMARY KEY or UNIQUE constraint

    @property
    def threads(self) -> int | None:
        return self.settings.threads

    def export_partition(self, query: str, params: list | None, dest: Path) -> int:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as con:
            return copy_to_parquet(con, query, params, dest)

    def table_exists(self, table: str) -> bool:
        with self._connection() as con:
            return bool(con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_name = ?",
                [self.settings.alias, table]).fetchone()[0])

    # -- upkeep --------------------------------------------------------------------------------------------

    def maintain(self, older_than_hours: float = 24.0) -> dict[str, int]:
        """Housekeeping for a lake that many small partition writes fragment: merge adjacent small files,
        expire snapshots older than ``older_than_hours``, delete the files no snapshot needs any more and the
        orphaned files of writers that died before committing (only those older than ``older_than_hours``, so a
        transaction in flight keeps its files). Returns how many files each step touched."""
        alias, interval = self.settings.alias, f"INTERVAL '{float(older_than_hours)} hours'"
        with self._connection() as con:
            counts = {
                "merged": _count(con, f"CALL ducklake_merge_adjacent_files('{alias}')"),
                "expired_snapshots": _count(
                    con, f"CALL ducklake_expire_snapshots('{alias}', older_than => now() - {interval})"),
                "old_files_deleted": _count(
                    con, f"CALL ducklake_cleanup_old_files('{alias}', older_than => now() - {interval})"),
                "orphans_deleted": _count(
                    con, f"CALL ducklake_delete_orphaned_files('{alias}', older_than => now() - {interval})"),
            }
        return counts


class _CatalogCreationRace(RuntimeError):
    """Another process created the lake's catalog while this one did (see ``LakehouseBackend._attach``)."""


def _is_catalog_creation_race(message: str) -> bool:
    """Whether an ATTACH failed because a concurrent ATTACH was creating the same new catalog: DuckLake's
    initialization ran into Postgres's unique names (schema, tables) or the catalog's first snapshot."""
    lowered = message.lower()
    return "failed to initialize ducklake" in lowered and (
        "duplicate key" in lowered or "already exists" in lowered or "conflict" in lowered)


def marker_table(table: str) -> str:
    """The table of ``table``'s partition markers."""
    return f"{table}__partition_writes"


def claim_partition(con: duckdb.DuckDBPyConnection, table: str, lang: str) -> None:
    """Inside a write transaction of ``table``'s ``lang`` rows: rewrite the partition's marker, so that this
    transaction conflicts with any other one writing the same partition (even when both find it empty).
    :meth:`LakehouseBackend.prepare_partition` must have run before the transaction began."""
    marker = marker_table(table)
    if not con.execute(f"DELETE FROM {marker} WHERE lang = ?", [lang]).fetchone()[0]:
        raise RuntimeError(f"partition {lang} of {table} has no marker row: call prepare_partition first")
    con.execute(f"INSERT INTO {marker} VALUES (?, now())", [lang])


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return len(con.execute(sql).fetchall())


def _thread_sessions() -> dict[str, duckdb.DuckDBPyConnection]:
    sessions = getattr(_sessions, "cursors", None)
    if sessions is None:
        sessions = _sessions.cursors = {}
    return sessions


@dataclass(frozen=True)
class LakeSession:
    """An open :meth:`LakehouseBackend.session`: its cursor, and a way for another thread to join it."""

    backend: LakehouseBackend
    connection: duckdb.DuckDBPyConnection

    def for_thread(self) -> contextlib.AbstractContextManager[None]:
        """Let another thread work in the session on a cursor of its own (made here, in the holding thread)."""
        return _joined(self.backend.settings.key, self.backend._cursor())


@contextlib.contextmanager
def _joined(key: str, cursor: duckdb.DuckDBPyConnection) -> Iterator[None]:
    sessions = _thread_sessions()
    if key in sessions:
        cursor.close()
        raise RuntimeError("this thread already has a session of this lakehouse")
    sessions[key] = cursor
    try:
        yield
    finally:
        del sessions[key]
        cursor.close()
