"""The content-addressed caches' writes (``generation_cache``, ``embedding_cache``), on either backend.

Both caches are tables keyed by a content hash, written by many runs that may compute the same key. On the
embedded file the key is a PRIMARY KEY and writers take the file lock in turn. DuckLake has no PRIMARY KEY,
UNIQUE or ``INSERT ... ON CONFLICT``, so a cache write inserts the rows whose key is absent (an anti-join on
the key) in one transaction, run again when it loses a commit race (:meth:`StoreBackend.transaction`). Two
lakehouse writers that computed the same key at the same moment may both insert it (appends to one table do
not conflict); the outputs under one key are interchangeable by construction (same model, task, parameters and
input), and the caches' lookups keep one row per key, so the cost is a duplicate row, never a wrong answer.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import duckdb
import pyarrow as pa

T = TypeVar("T")


def supports_primary_keys(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection's current database can declare a PRIMARY KEY (a DuckDB file or in-memory
    database: yes; a DuckLake: no)."""
    kind = con.execute("SELECT type FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return not (kind and str(kind[0]).lower() == "ducklake")


def create_keyed_table(con: duckdb.DuckDBPyConnection, table: str, columns: str) -> None:
    """``CREATE TABLE IF NOT EXISTS table (key VARCHAR [PRIMARY KEY], <columns>)``, the key a PRIMARY KEY
    where the backend has them."""
    key = "key VARCHAR PRIMARY KEY" if supports_primary_keys(con) else "key VARCHAR NOT NULL"
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({key}, {columns})")


def insert_absent(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, select: str) -> int:
    """Inside a write transaction: insert ``rows`` (an Arrow table with a unique ``key`` column) into
    ``table`` except those whose key is already there; ``select`` lists the inserted expressions over the
    staged rows (alias ``n``). Returns the rows inserted."""
    staged = "_xinst_cache_rows"
    con.register(staged, rows)
    try:
        return int(con.execute(
            f"INSERT INTO {table} SELECT {select} FROM {staged} n "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} c WHERE c.key = n.key)").fetchone()[0])
    finally:
        con.unregister(staged)


Transaction = Callable[[Callable[[duckdb.DuckDBPyConnection], T]], T]


def write_in(transaction: Transaction | None, write, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """Run ``work`` in ``transaction`` (a store's: run again on a lost commit race) when there is one, else on
    a connection of ``write()`` (committed on exit)."""
    if transaction is not None:
        return transaction(work)
    with write() as con:
        return work(con)


def writer_of(warehouse) -> Transaction | None:
    """The transaction runner of a store, backend or ``Warehouse`` (:meth:`StoreBackend.transaction`: retried
    on a lost commit race), or None for an object that offers only ``write()`` connections."""
    from xinst_assets.resources.warehouse import Warehouse
    from xinst_assets.store.resource import Store, backend_of

    if isinstance(warehouse, (Store, Warehouse)) or hasattr(warehouse, "transaction"):
        return backend_of(warehouse).transaction
    return None
