"""Copy the tables of an embedded warehouse (a DuckDB file) into another store: how an existing deployment
moves to the lakehouse, and how tests give both backends the same inputs."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterable

import duckdb

from xinst_assets.resources.warehouse import Warehouse, sql_path
from xinst_assets.store.base import StoreBackend


def copy_warehouse(source: Path | str, target: StoreBackend, tables: Iterable[str] | None = None) -> dict[str, int]:
    """Copy ``tables`` (default: every table of the file's main schema) from the DuckDB file ``source`` into
    ``target``, each replaced whole in its own transaction, rows in their stored order; returns the rows copied
    per table. The file is read under the warehouse's shared lock. Constraints are not copied (DuckLake has no
    PRIMARY KEY or UNIQUE); columns, types and NOT NULL are."""
    source = Path(source)
    alias = "xinst_source_" + uuid.uuid4().hex[:8]
    copied: dict[str, int] = {}
    with Warehouse(path=str(source)).lock(exclusive=False), target.read() as con:
        con.execute(f"ATTACH '{sql_path(source)}' AS {alias} (READ_ONLY)")
        try:
            names = list(tables) if tables is not None else [row[0] for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
                "ORDER BY table_name", [alias]).fetchall()]
            for name in names:
                copied[name] = target.transaction(lambda c, name=name: _copy_table(c, alias, name))
        finally:
            con.execute(f"DETACH {alias}")
    return copied


def _copy_table(con: duckdb.DuckDBPyConnection, alias: str, table: str) -> int:
    columns = con.execute(
        "SELECT column_name, data_type, is_nullable FROM duckdb_columns() WHERE database_name = ? AND "
        "schema_name = 'main' AND table_name = ? ORDER BY column_index", [alias, table]).fetchall()
    if not columns:
        raise ValueError(f"the source warehouse has no table {table}")
    definition = ", ".join(f'"{n}" {t}{"" if nullable else " NOT NULL"}' for n, t, nullable in columns)
    con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute(f"CREATE TABLE {table} ({definition})")
    return int(con.execute(f"INSERT INTO {table} SELECT * FROM {alias}.main.{table} ORDER BY rowid").fetchone()[0])
