"""The registry of trained checkpoints in the warehouse, so later stages find the one an asset produced.

``checkpoints`` holds the current checkpoint of each name; ``checkpoint_history`` every one ever recorded, with
what it was trained on and from, so that a continual run can start from the previous one (see
:mod:`xinst_assets.core.continual`).

Each row also records ``root``: the folder of the warehouse file when it was written (the data home, in the
default layout). Paths under it (the checkpoints xinst trains, the demo base model) are read back under the
warehouse's folder of now, so a data home moved elsewhere, warehouse and models together, still finds every
checkpoint. Paths elsewhere (a configured base model, a hub id) are read as recorded.
"""

import os
from datetime import datetime, timezone

import duckdb

from xinst_assets.core.continual import CheckpointRecord
from xinst_assets.store.resource import backend_of

CHECKPOINTS_DDL = """
CREATE TABLE IF NOT EXISTS checkpoints (
    name VARCHAR NOT NULL, path VARCHAR NOT NULL, fingerprint VARCHAR, created_at TIMESTAMP NOT NULL{key}
);
CREATE TABLE IF NOT EXISTS checkpoint_history (
    name VARCHAR NOT NULL, path VARCHAR NOT NULL, fingerprint VARCHAR, data_fingerprint VARCHAR,
    started_from VARCHAR, root_model VARCHAR, run_id VARCHAR, created_at TIMESTAMP NOT NULL
);
ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS root VARCHAR;
ALTER TABLE checkpoint_history ADD COLUMN IF NOT EXISTS root VARCHAR;
"""


def checkpoints_ddl(primary_keys: bool = True) -> str:
    """The registry's DDL; ``primary_keys=False`` for a backend without constraints (a name's row is deleted
    before it is written again)."""
    return CHECKPOINTS_DDL.format(key=",\n    PRIMARY KEY (name)" if primary_keys else "")


def _create(con: duckdb.DuckDBPyConnection, backend) -> None:
    con.execute(checkpoints_ddl(backend.primary_keys))


def _root(warehouse) -> str | None:
    """The folder the registry's paths are recorded relative to: the warehouse file's (the data home's); None
    for a store without a file (the lakehouse), whose paths are read as recorded."""
    db_path = getattr(warehouse, "db_path", None)
    return os.path.dirname(os.path.abspath(os.path.expanduser(db_path))) if db_path is not None else None


def _here(value: str | None, recorded_root: str | None, root: str | None) -> str | None:
    """``value`` as it is now: a path under the folder it was recorded in, moved under today's folder."""
    if value is None or not recorded_root or not root or recorded_root == root:
        return value
    prefix = recorded_root.rstrip(os.sep) + os.sep
    return os.path.join(root, value[len(prefix):]) if value.startswith(prefix) else value


def record_checkpoint(
    warehouse, name: str, path: str, fingerprint: str | None, *, data_fingerprint: str | None = None,
    started_from: str | None = None, root_model: str | None = None, run_id: str | None = None,
) -> None:
    """Record ``path`` as the current checkpoint called ``name``, and in its history with what it was trained on
    (``data_fingerprint``: data and settings, not the starting point), the model it ``started_from`` and the
    ``root_model`` its line of checkpoints began with."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    backend = backend_of(warehouse)
    root = _root(backend)

    def work(con: duckdb.DuckDBPyConnection) -> None:
        _create(con, backend)
        # delete + insert, not INSERT OR REPLACE: the same on the DuckDB file, and what DuckLake allows
        con.execute("DELETE FROM checkpoints WHERE name = ?", [name])
        con.execute("INSERT INTO checkpoints (name, path, fingerprint, created_at, root) "
                    "VALUES (?, ?, ?, ?, ?)", [name, path, fingerprint, now, root])
        con.execute("INSERT INTO checkpoint_history (name, path, fingerprint, data_fingerprint, started_from, "
                    "root_model, run_id, created_at, root) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [name, path, fingerprint, data_fingerprint, started_from, root_model, run_id, now, root])

    backend.partition_transaction("checkpoints", name, work)


def registered_checkpoint(warehouse, name: str, as_recorded: bool = False) -> tuple[str, str | None] | None:
    """The (path, fingerprint) recorded for ``name`` (the path where it is now; ``as_recorded``: as written,
    before the data home moved), or None when nothing is recorded."""
    backend = backend_of(warehouse)

    def work(con: duckdb.DuckDBPyConnection):
        _create(con, backend)  # creates the table on a fresh warehouse
        return con.execute("SELECT path, fingerprint, root FROM checkpoints WHERE name = ?", [name]).fetchone()

    row = backend.transaction(work)
    if row is None:
        return None
    return (row[0] if as_recorded else _here(row[0], row[2], _root(backend))), row[1]


def current_checkpoint(warehouse, name: str) -> str:
    """The path recorded for ``name``; a clear error when the asset that makes it has not run."""
    registered = registered_checkpoint(warehouse, name)
    if registered is None:
        raise FileNotFoundError(f"no {name!r} checkpoint recorded yet: materialize the {name} asset first")
    return registered[0]


def checkpoint_history(warehouse, name: str) -> list[CheckpointRecord]:
    """Every checkpoint recorded as ``name``, newest first."""
    backend = backend_of(warehouse)

    def work(con: duckdb.DuckDBPyConnection) -> list[tuple]:
        _create(con, backend)  # creates the table on a fresh warehouse
        return con.execute(
            "SELECT path, fingerprint, data_fingerprint, started_from, root_model, run_id, created_at, root "
            "FROM checkpoint_history WHERE name = ? ORDER BY created_at DESC, rowid DESC", [name]).fetchall()

    rows = backend.transaction(work)
    root = _root(backend)
    return [CheckpointRecord(_here(path, recorded, root), fingerprint, data, _here(started, recorded, root),
                             _here(model, recorded, root), run_id, created)
            for path, fingerprint, data, started, model, run_id, created, recorded in rows]
