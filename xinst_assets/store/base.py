"""What every warehouse backend offers the stages, and the retry of a write that lost a commit race.

Two backends implement :class:`StoreBackend`:

* ``embedded`` (:mod:`.embedded`): the single DuckDB file under the data home, every access in a short window
  under an OS file lock (one writing process per file is all DuckDB allows);
* ``lakehouse`` (:mod:`.lakehouse`): a DuckLake lakehouse, its catalog in Postgres and its data files in a
  shared folder or on S3-compatible storage, written by many processes on many machines at once, with no lock:
  each partition's write is one optimistic transaction, and one that loses a race is run again.

The interface keeps the shape of the embedded ``Warehouse`` resource (``session``, ``read``, ``write``,
``lock``, ``export_partition``, ``table_exists``) so that its callers move over stage by stage, and adds
:meth:`StoreBackend.transaction`, the write that survives a conflict: a ``with write()`` block cannot be run
again by its context manager, a function can.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Protocol, TypeVar

import duckdb

_log = logging.getLogger("xinst.store")
T = TypeVar("T")


class WriteConflict(RuntimeError):
    """A write transaction kept losing commit races to concurrent writers of the same table."""


def is_write_conflict(error: BaseException) -> bool:
    """Whether ``error`` is a commit race that running the same transaction again can win.

    DuckLake checks conflicts per table when it commits: a transaction that inserts into a table that another
    transaction deleted from since it began (or deletes from a table another one inserted into) fails with
    "Transaction conflict", as does DuckDB's own write-write check. Nothing was written; the work is safe to
    repeat on a fresh snapshot.
    """
    return isinstance(error, duckdb.TransactionException) and "conflict" in str(error).lower()


@dataclass(frozen=True)
class RetryPolicy:
    """How a conflicting write is retried: up to ``attempts`` runs, waiting a random time up to
    ``first_wait_s`` x 2^(attempt-1) (at most ``max_wait_s``) between them, so that writers that collided do not
    collide again in step."""

    attempts: int = 30
    first_wait_s: float = 0.05
    max_wait_s: float = 2.0

    def wait_s(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_wait_s, self.first_wait_s * 2 ** (attempt - 1)))


@dataclass
class TransactionStats:
    """What :func:`run_transaction` did: how many times the work ran and how many commits lost a race."""

    attempts: int = 0
    conflicts: int = 0


def run_transaction(
    connect: Callable[[], ContextManager[duckdb.DuckDBPyConnection]],
    work: Callable[[duckdb.DuckDBPyConnection], T],
    policy: RetryPolicy,
    stats: TransactionStats | None = None,
) -> T:
    """Run ``work`` in one transaction on a connection from ``connect()``, committing at the end; when the
    commit (or a statement) loses a race to a concurrent writer, roll back and run ``work`` again on a fresh
    snapshot, up to ``policy.attempts`` times. ``work`` must therefore compute its writes from what it reads
    inside the transaction (delete + insert of a partition from a staged file, a MERGE), never from state
    kept between attempts. Raises :class:`WriteConflict` when every attempt lost."""
    stats = stats if stats is not None else TransactionStats()
    for attempt in range(1, policy.attempts + 1):
        stats.attempts = attempt
        with connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                result = work(con)
                con.execute("COMMIT")
                return result
            except BaseException as error:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")  # a failed COMMIT has already ended the transaction
                if not is_write_conflict(error):
                    raise
                stats.conflicts += 1
                if attempt == policy.attempts:
                    raise WriteConflict(
                        f"a write lost {attempt} commit races to concurrent writers; last error: {error}"
                    ) from error
                _log.info("write conflict (attempt %d of %d), running the transaction again: %s",
                          attempt, policy.attempts, str(error).splitlines()[-1])
        time.sleep(policy.wait_s(attempt))
    raise AssertionError("unreachable")


class StoreBackend(Protocol):
    """The operations the stages use on the warehouse, whatever holds it."""

    name: str

    def session(self) -> ContextManager["SessionHandle"]:
        """Hold one connection for a batch of windows of this thread (embedded: and the file lock); every
        :meth:`read`, :meth:`write` and :meth:`transaction` of the thread reuses it until the block ends."""

    def read(self) -> ContextManager[duckdb.DuckDBPyConnection]:
        """A connection to read from; copy results out before the block ends."""

    def write(self) -> ContextManager[duckdb.DuckDBPyConnection]:
        """One write transaction, committed when the block ends without error. On the lakehouse a lost commit
        race raises :class:`WriteConflict`; use :meth:`transaction` for writes that concurrent runs may race."""

    def transaction(self, work: Callable[[duckdb.DuckDBPyConnection], T],
                    stats: TransactionStats | None = None) -> T:
        """Run ``work`` as one write transaction, run again on a fresh snapshot if it loses a commit race."""

    def replace_partition(self, table: str, lang: str, source_sql: str, params: list | None = None,
                          stats: TransactionStats | None = None) -> int:
        """Replace ``table``'s rows of ``lang`` with ``source_sql``'s rows in one transaction, safe against
        concurrent writers of any partition (the same one included); returns the rows inserted."""

    def partition_transaction(self, table: str, lang: str, work: Callable[[duckdb.DuckDBPyConnection], T],
                              stats: TransactionStats | None = None) -> T:
        """Run ``work`` (which rewrites ``lang``'s rows of ``table`` and perhaps of other tables) as one write
        transaction that conflicts with any concurrent write of the same partition of ``table``, run again on
        a fresh snapshot when it loses a commit race."""

    @property
    def primary_keys(self) -> bool:
        """Whether tables may declare a PRIMARY KEY (the embedded file: yes; DuckLake: no)."""

    def lock(self, exclusive: bool = True) -> ContextManager[None]:
        """Keep other writers out while a tool that opens the warehouse itself (dbt) works; on the lakehouse,
        where writers never wait for each other, it holds nothing."""

    def export_partition(self, query: str, params: list | None, dest: Path) -> int:
        """Copy the result of ``query`` to a Parquet file; return its row count."""

    def table_exists(self, table: str) -> bool:
        """Whether the warehouse has a table named ``table``."""


class SessionHandle(Protocol):
    """An open session: its connection, and a way for another thread to join it."""

    connection: duckdb.DuckDBPyConnection

    def for_thread(self) -> ContextManager[None]:
        """Call in the holding thread; enter the returned block in another thread to work in the session on a
        connection of its own."""


def replace_partition_rows(con: duckdb.DuckDBPyConnection, table: str, lang: str, source_sql: str,
                           params: list | None = None) -> int:
    """Within an open write transaction, replace ``table``'s rows for ``lang`` with ``source_sql``'s rows
    (delete + insert: DuckLake has no PRIMARY KEY or UNIQUE to upsert on). Returns the rows inserted."""
    con.execute(f"DELETE FROM {table} WHERE lang = ?", [lang])
    return int(con.execute(f"INSERT INTO {table} BY NAME {source_sql}", params or []).fetchone()[0])


@contextlib.contextmanager
def nothing_held() -> Iterator[None]:
    yield
