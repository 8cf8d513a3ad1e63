"""A small registry of trained checkpoints in the warehouse, so later stages find the one an asset produced.

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

from xinst_assets.core.continual import CheckpointRecord
from xinst_assets.resources.warehouse import Warehouse

CHECKPOINTS_DDL = """
CREATE TABLE IF NOT EXISTS checkpoints (
    name VARCHAR NOT NULL, path VARCHAR NOT NULL, fingerprint VARCHAR, created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE IF NOT EXISTS checkpoint_history (
    name VARCHAR NOT NULL, path VARCHAR NOT NULL, fingerprint VARCHAR, data_fingerprint VARCHAR,
    started_from VARCHAR, root_model VARCHAR, run_id VARCHAR, created_at TIMESTAMP NOT NULL
);
ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS root VARCHAR;
ALTER TABLE checkpoint_history ADD COLUMN IF NOT EXISTS root VARCHAR;
"""


def _root(warehouse: Warehouse) -> str | None:
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
    warehouse: Warehouse, name: str, path: str, fingerprint: str | None, *, data_fingerprint: str | None = None,
    started_from: str | None = None, root_model: str | None = None, run_id: str | None = None,
) -> None:
    """Record ``path`` as the current checkpoint called ``name``, and in its history with what it was trained on
    (``data_fingerprint``: data and settings, not the starting point), the model it ``started_from`` and the
    ``root_model`` its line of checkpoints began with."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    root = _root(warehouse)
    with warehouse.write() as con:
        con.execute(CHECKPOINTS_DDL)
        con.execute("INSERT OR REPLACE INTO checkpoints (name, path, fingerprint, created_at, root) "
                    "VALUES (?, ?, ?, ?, ?)", [name, path, fingerprint, now, root])
        con.execute("INSERT INTO checkpoint_history (name, path, fingerprint, data_fingerprint, started_from, "
                    "root_model, run_id, created_at, root) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [name, path, fingerprint, data_fingerprint, started_from, root_model, run_id, now, root])


def registered_checkpoint(warehouse: Warehouse, name: str, as_recorded: bool = False) -> tuple[str, str | None] | None:
    """The (path, fingerprint) recorded for ``name`` (the path where it is now; ``as_recorded``: as written,
    before the data home moved), or None when nothing is recorded."""
    with warehouse.write() as con:  # creates the table on a fresh warehouse
        con.execute(CHECKPOINTS_DDL)
        row = con.execute("SELECT path, fingerprint, root FROM checkpoints WHERE name = ?", [name]).fetchone()
    if row is None:
        return None
    return (row[0] if as_recorded else _here(row[0], row[2], _root(warehouse))), row[1]


def current_checkpoint(warehouse: Warehouse, name: str) -> str:
    """The path recorded for ``name``; a clear error when the asset that makes it has not run."""
    registered = registered_checkpoint(warehouse, name)
    if registered is None:
        raise FileNotFoundError(f"no {name!r} checkpoint recorded yet: materialize the {name} asset first")
    return registered[0]


def checkpoint_history(warehouse: Warehouse, name: str) -> list[CheckpointRecord]:
    """Every checkpoint recorded as ``name``, newest first."""
    with warehouse.write() as con:  # creates the table on a fresh warehouse
        con.execute(CHECKPOINTS_DDL)
        rows = con.execute(
            "SELECT path, fingerprint, data_fingerprint, started_from, root_model, run_id, created_at, root "
            "FROM checkpoint_history WHERE name = ? ORDER BY created_at DESC, rowid DESC", [name]).fetchall()
    root = _root(warehouse)
    return [CheckpointRecord(_here(path, recorded, root), fingerprint, data, _here(started, recorded, root),
                             _here(model, recorded, root), run_id, created)
            for path, fingerprint, data, started, model, run_id, created, recorded in rows]
