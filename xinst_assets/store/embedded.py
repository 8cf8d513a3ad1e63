"""The embedded backend: the single DuckDB file under the data home, as the ``Warehouse`` resource keeps it.

This adapter adds nothing to the file's behaviour (lock, windows, sessions, transactions are the
``Warehouse``'s own); it gives it the :class:`~xinst_assets.store.base.StoreBackend` shape, so that a stage
written against the store runs unchanged on either backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, TypeVar

import duckdb

from xinst_assets.resources.warehouse import Warehouse
from xinst_assets.store.base import TransactionStats, replace_partition_rows

T = TypeVar("T")


@dataclass
class EmbeddedBackend:
    """A :class:`Warehouse` (a DuckDB file and its lock) as a store backend."""

    warehouse: Warehouse
    name: str = "embedded"

    @property
    def db_path(self) -> Path:
        return self.warehouse.db_path

    def session(self):
        return self.warehouse.session()

    def read(self) -> ContextManager[duckdb.DuckDBPyConnection]:
        return self.warehouse.read()

    def write(self) -> ContextManager[duckdb.DuckDBPyConnection]:
        return self.warehouse.write()

    def transaction(self, work: Callable[[duckdb.DuckDBPyConnection], T],
                    stats: TransactionStats | None = None) -> T:
        # Writers take the file lock in turn: a transaction here never races another one.
        with self.warehouse.write() as con:
            if stats is not None:
                stats.attempts = 1
            return work(con)

    def replace_partition(self, table: str, lang: str, source_sql: str, params: list | None = None,
                          stats: TransactionStats | None = None) -> int:
        return self.transaction(lambda con: replace_partition_rows(con, table, lang, source_sql, params), stats)

    def partition_transaction(self, table: str, lang: str, work: Callable[[duckdb.DuckDBPyConnection], T],
                              stats: TransactionStats | None = None) -> T:
        return self.transaction(work, stats)  # the file lock already keeps every other writer out

    @property
    def primary_keys(self) -> bool:
        return True

    @property
    def threads(self) -> int | None:
        return self.warehouse.threads

    def lock(self, exclusive: bool = True) -> ContextManager[None]:
        return self.warehouse.lock(exclusive=exclusive)

    def export_partition(self, query: str, params: list | None, dest: Path) -> int:
        return self.warehouse.export_partition(query, params, dest)

    def table_exists(self, table: str) -> bool:
        # A file not yet created has no table, and asking (a sensor's tick) does not create it.
        return self.warehouse.db_path.exists() and self.warehouse.table_exists(table)
