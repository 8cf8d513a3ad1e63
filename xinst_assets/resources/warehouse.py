"""The DuckDB warehouse: one file, many concurrent partition runs, no lock errors.

DuckDB lets one process write a database file at a time (readers in other processes cannot open it while a
writer has it). Backfills run several language partitions at once in separate processes, so every access
goes through a short, serialised window guarded by an OS file lock beside the database:

* writers take the lock exclusively, open the file, run one transaction, commit and close;
* readers take it shared, open the file read-only, copy what they need out, and close.

Heavy work (parsing, model calls) happens outside the window, on staged Parquet files, so a window lasts
seconds even for large partitions, and a run that dies inside one leaves the previous state (the transaction
never committed).

A run over several languages batches its windows: :meth:`Warehouse.session` holds the lock and one open
connection while a stage runs the windows of every language back to back (each write still its own
transaction). Opening the file reads its catalog and closing it checkpoints, each time; a session pays that
once per batch instead of once per window, and keeps DuckDB's buffers warm between languages. Another thread
of the process may join a session (:meth:`HeldSession.for_thread`) to run its windows at the same time on its
own connection to the open database.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import duckdb
from dagster import ConfigurableResource
from pydantic import Field

from xinst_assets.core.locks import LockTimeout
from xinst_assets.core.locks import file_lock as _file_lock

_log = logging.getLogger("xinst.warehouse")

# The connection of this thread's open session, by database path (see Warehouse.session).
_sessions = threading.local()


class WarehouseLockTimeout(LockTimeout):
    """The warehouse lock could not be taken within the configured time."""


def file_lock(lock_path: Path, exclusive: bool, timeout_s: float) -> contextlib.AbstractContextManager[None]:
    """Hold an advisory ``flock`` on ``lock_path`` (exclusive or shared), waiting up to ``timeout_s``
    (:func:`xinst_assets.core.locks.file_lock` with the warehouse's error and wait notice)."""
    return _file_lock(lock_path, exclusive, timeout_s, what="warehouse lock", error=WarehouseLockTimeout,
                      on_wait=lambda waited: _log.info("waiting for the warehouse lock %s", lock_path))


class Warehouse(ConfigurableResource):
    """The DuckDB file that holds every intermediate table, shared safely by concurrent runs."""

    path: str = Field(description="Path of the DuckDB database file.")
    lock_timeout_s: float = Field(
        default=1800.0, description="How long a run waits for another run's warehouse transaction."
    )
    threads: int | None = Field(default=None, description="DuckDB threads per connection (default: all).")
    memory_limit: str | None = Field(default=None, description="DuckDB memory_limit, e.g. '4GB'.")

    @property
    def db_path(self) -> Path:
        return Path(self.path).expanduser()

    @property
    def lock_path(self) -> Path:
        return self.db_path.with_name(self.db_path.name + ".lock")

    def _configure(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.threads:
            con.execute(f"SET threads = {int(self.threads)}")
        if self.memory_limit:
            con.execute("SET memory_limit = ?", [self.memory_limit])

    @contextlib.contextmanager
    def lock(self, exclusive: bool = True) -> Iterator[None]:
        """Hold the warehouse lock without opening a connection (for tools such as dbt that open it)."""
        with file_lock(self.lock_path, exclusive, self.lock_timeout_s):
            yield

    def _session_connection(self) -> duckdb.DuckDBPyConnection | None:
        return _thread_sessions().get(str(self.db_path))

    @contextlib.contextmanager
    def session(self) -> Iterator["HeldSession"]:
        """Hold the warehouse for a batch of windows: the exclusive lock and one open connection, which every
        :meth:`write`, :meth:`read` and :meth:`export_partition` of this thread reuses until the block ends;
        other threads of the process may join it (:meth:`HeldSession.for_thread`).

        For the window phases of a stage over several languages; never around model calls or other long work
        (other runs and the sensor wait for the lock meanwhile). Each :meth:`write` inside stays its own
        transaction: a failing language rolls back alone. Nested sessions reuse the outer one.
        """
        held = self._session_connection()
        if held is not None:
            yield HeldSession(str(self.db_path), held)
            return
        with self.lock(exclusive=True):
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self.db_path))
            connections = _thread_sessions()
            connections[str(self.db_path)] = con
            try:
                self._configure(con)
                yield HeldSession(str(self.db_path), con)
            finally:
                del connections[str(self.db_path)]
                con.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction under the exclusive lock; committed on success, rolled back on error."""
        held = self._session_connection()
        with contextlib.ExitStack() as stack:
            if held is not None:
                con = held
            else:
                stack.enter_context(self.lock(exclusive=True))
                self.db_path.parent.mkdir(parents=True, exist_ok=True)
                con = duckdb.connect(str(self.db_path))
                stack.callback(con.close)
                self._configure(con)
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection under the shared lock (inside a :meth:`session`, the session's connection).
        Copy results out before leaving the block."""
        held = self._session_connection()
        if held is not None:
            yield held
            return
        if not self.db_path.exists():
            with self.write():
                pass  # create an empty database so read-only opening works
        with self.lock(exclusive=False):
            con = duckdb.connect(str(self.db_path), read_only=True)
            try:
                self._configure(con)
                yield con
            finally:
                con.close()

    def table_exists(self, table: str) -> bool:
        with self.read() as con:
            return has_table(con, table)

    def export_partition(self, query: str, params: list | None, dest: Path) -> int:
        """Copy the result of ``query`` to a Parquet file (streamed by DuckDB); return its row count.

        Stages read their input this way so that the shared lock is held only for the copy, and the stage
        then streams the file in batches with bounded memory.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self.read() as con:
            return copy_to_parquet(con, query, params, dest)


def _thread_sessions() -> dict[str, duckdb.DuckDBPyConnection]:
    """This thread's session connections, by database path."""
    connections = getattr(_sessions, "connections", None)
    if connections is None:
        connections = _sessions.connections = {}
    return connections


@dataclass(frozen=True)
class HeldSession:
    """An open :meth:`Warehouse.session`: its database and the connection of the thread that holds it."""

    db_key: str
    connection: duckdb.DuckDBPyConnection

    def for_thread(self) -> contextlib.AbstractContextManager[None]:
        """Let another thread work inside the session: call this in the holding thread (DuckDB wants a
        thread's connection made from the open one there) and enter the returned block in the other thread.
        Its windows then run on a connection of their own to the same open database, under the lock that the
        session already holds: DuckDB runs both threads' statements at the same time, each write its own
        transaction. The holding thread keeps the session open until that block has ended."""
        return _joined(self.db_key, self.connection.cursor())


@contextlib.contextmanager
def _joined(db_key: str, connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
    connections = _thread_sessions()
    if db_key in connections:
        connection.close()
        raise RuntimeError(f"this thread already has a session of {db_key}")
    connections[db_key] = connection
    try:
        yield
    finally:
        del connections[db_key]
        connection.close()


def has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether the database of ``con`` has a table named ``table``."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [table]).fetchone()[0])


def copy_to_parquet(con: duckdb.DuckDBPyConnection, query: str, params: list | None, dest: Path) -> int:
    """Copy the result of ``query`` on ``con`` to a Parquet file (streamed by DuckDB); return its row count.
    For queries that need the connection's temporary tables; otherwise see :meth:`Warehouse.export_partition`."""
    return int(con.execute(f"COPY ({query}) TO '{sql_path(dest)}' (FORMAT parquet)", params or []).fetchone()[0])


def sql_path(path: Path) -> str:
    """A path as a SQL string literal body (single quotes doubled)."""
    return str(path).replace("'", "''")


def replace_partition(
    con: duckdb.DuckDBPyConnection, table: str, lang: str, source_sql: str, params: list | None = None
) -> int:
    """Within an open write transaction, replace ``table``'s rows for ``lang`` with ``source_sql``'s rows.

    Returns the number of rows inserted. Running it twice with the same source gives the same table.
    """
    con.execute(f"DELETE FROM {table} WHERE lang = ?", [lang])
    con.execute(f"INSERT INTO {table} BY NAME {source_sql}", params or [])
    return int(con.execute(f"SELECT count(*) FROM {table} WHERE lang = ?", [lang]).fetchone()[0])


# Row ids closer than this are read by one range-bounded scan (see rows_by_id); the gap grows until a query
# has at most ROW_ID_RANGES ranges.
ROW_ID_GAP = 16_384
ROW_ID_RANGES = 64


def row_id_ranges(ids: Sequence[int], gap: int | None = None, most: int | None = None) -> list[tuple[int, int]]:
    """Sorted row ids as at most ``most`` (first, last) ranges, ids at most ``gap`` apart in the same range
    (the gap doubled until they fit). Defaults: ROW_ID_GAP, ROW_ID_RANGES."""
    gap, most = gap or ROW_ID_GAP, most or ROW_ID_RANGES
    while True:
        ranges: list[tuple[int, int]] = []
        for row_id in ids:
            if ranges and row_id - ranges[-1][1] <= gap:
                ranges[-1] = (ranges[-1][0], row_id)
            else:
                ranges.append((row_id, row_id))
        if len(ranges) <= most:
            return ranges
        gap *= 2


def rows_by_id(con: duckdb.DuckDBPyConnection, table: str, expressions: str, ids_table: str, ids_column: str) -> str:
    """A query of ``rowid AS _row_id, expressions`` over the rows of ``table`` whose row ids are in
    ``ids_table.ids_column`` (each once).

    Why not one ``rowid IN (SELECT ...)``: DuckDB turns that semi-join into a min/max filter on the row id and
    scans every row between the smallest and the largest, columns included, so one old row among a night's
    new ones (a representative whose cluster grew) made a refresh read half a million texts (1.6 s instead of
    0.02 s). The ids are split into dense ranges, each scanned within its own bounds.
    """
    ids = [r[0] for r in con.execute(f"SELECT DISTINCT {ids_column} FROM {ids_table} WHERE {ids_column} IS NOT NULL "
                                     f"ORDER BY 1").fetchall()]
    member = f"rowid IN (SELECT {ids_column} FROM {ids_table})"
    ranges = row_id_ranges(ids) or [(0, -1)]  # (no ids: no rows)
    return " UNION ALL ".join(
        f"SELECT rowid AS _row_id, {expressions} FROM {table} WHERE rowid BETWEEN {low} AND {high} AND {member}"
        for low, high in ranges)


def sync_partition(
    con: duckdb.DuckDBPyConnection, table: str, lang: str, source_sql: str, params: list | None = None,
    key: Sequence[str] | None = None, by_row_id: tuple[str, Mapping[str, str]] | None = None,
    scope: tuple[str, str] | None = None,
) -> tuple[int, int]:
    """Within an open write transaction, make ``table``'s rows for ``lang`` equal to ``source_sql``'s rows,
    writing only the difference: the rows of every ``key`` (default: all columns) whose rows differ in any
    column, or exist on one side only, are deleted and inserted again from the source.

    The result is the same as :func:`replace_partition`'s, but a refresh that changes 1% of a large partition
    writes (and checkpoints) about 1% of it instead of all of it. With a key that identifies rows (a document
    id), the comparison joins on the key alone and compares the other columns row by row, much cheaper than
    joining on every column (texts included). A key that is not unique stays correct: a key with any
    difference is rewritten whole. ``source_sql`` must return whole rows of ``table`` (every column, by name)
    for ``lang`` only; it is evaluated once, into a temporary table.

    ``by_row_id=(source_table, {column: expression})``: columns computed from large ones (texts) that the
    other columns determine. The source then returns every other column plus ``_row_id``, the rowid of the
    ``source_table`` row the expressions read; they are not compared, and are evaluated by row id for the rows
    written only, so that a refresh does not read a language's texts. Returns (rows deleted, rows inserted).

    ``scope=(column, subquery)``: only the rows whose ``column`` is among the subquery's values are compared
    and written, on both sides (source rows outside it are ignored); for a caller that knows which rows can
    have changed, so that a refresh does not compare the whole partition.
    """
    columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
    fetched_table, fetched = by_row_id if by_row_id else (None, {})
    compared = [c for c in columns if c not in fetched]
    keys = list(key) if key else compared
    on = " AND ".join(f"t.{c} IS NOT DISTINCT FROM d.{c}" for c in keys)
    differs = " OR ".join(f"t.{c} IS DISTINCT FROM d.{c}" for c in compared if c not in keys) or "false"
    within = f" AND {scope[0]} IN ({scope[1]})" if scope else ""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _sync_source AS SELECT * FROM ({source_sql}) WHERE true{within}",
                params or [])
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _sync_keys AS
        SELECT DISTINCT {', '.join(f'CASE WHEN t._present THEN t.{c} ELSE d.{c} END AS {c}' for c in keys)}
        FROM (SELECT {', '.join(compared)}, true AS _present FROM {table} WHERE lang = ?{within}) t
        FULL OUTER JOIN (SELECT *, true AS _present FROM _sync_source) d ON {on}
        WHERE t._present IS NULL OR d._present IS NULL OR {differs}""", [lang])
    in_keys = " AND ".join(f"k.{c} IS NOT DISTINCT FROM x.{c}" for c in keys)
    deleted = con.execute(
        f"DELETE FROM {table} x WHERE x.lang = ? AND EXISTS (SELECT 1 FROM _sync_keys k WHERE {in_keys})",
        [lang]).fetchone()[0]
    con.execute(f"CREATE OR REPLACE TEMP TABLE _sync_rows AS SELECT x.* FROM _sync_source x "
                f"WHERE EXISTS (SELECT 1 FROM _sync_keys k WHERE {in_keys})")
    if fetched:
        fetch = rows_by_id(con, fetched_table, ", ".join(f"{e} AS {c}" for c, e in fetched.items()), "_sync_rows",
                           "_row_id")
        inserted = con.execute(f"INSERT INTO {table} BY NAME SELECT r.* EXCLUDE (_row_id), f.* EXCLUDE (_row_id) "
                               f"FROM _sync_rows r JOIN ({fetch}) f ON f._row_id = r._row_id").fetchone()[0]
    else:
        inserted = con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _sync_rows").fetchone()[0]
    for temporary in ("_sync_source", "_sync_keys", "_sync_rows"):
        con.execute(f"DROP TABLE {temporary}")
    return int(deleted), int(inserted)


def drop_primary_key(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Rebuild ``table`` without its PRIMARY KEY (columns, types and NOT NULL kept); False if it has none.

    Large per-document tables carry no primary key: DuckDB rewrites a table's whole key index at every
    checkpoint that touches the table, so with one a refresh writing 200 rows costs as much as indexing every
    language's documents again (0.5-0.8 s per table at 200,000 documents, growing with the warehouse). Their
    keys stay unique by construction and are checked (asset checks, tests). This migrates tables created with
    one by earlier versions, once.
    """
    has_key = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [table]).fetchone()[0]
    if not has_key:
        return False
    columns = con.execute(
        "SELECT column_name, data_type, is_nullable FROM duckdb_columns() WHERE table_name = ? "
        "ORDER BY column_index", [table]).fetchall()
    definition = ", ".join(f'"{name}" {kind}{"" if nullable else " NOT NULL"}' for name, kind, nullable in columns)
    con.execute(f"CREATE TABLE {table}__rebuilt ({definition})")
    con.execute(f"INSERT INTO {table}__rebuilt SELECT * FROM {table}")
    con.execute(f"DROP TABLE {table}")
    con.execute(f"ALTER TABLE {table}__rebuilt RENAME TO {table}")
    _log.info("rebuilt %s without its primary key", table)
    return True
