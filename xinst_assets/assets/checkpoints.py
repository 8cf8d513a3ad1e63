"""A small registry of trained checkpoints in the warehouse, so later stages find the one an asset produced.

``checkpoints`` holds the current checkpoint of each name; ``checkpoint_history`` every one ever recorded, with
what it was trained on and from, so that a continual run can start from the previous one (see
:mod:`xinst_assets.core.continual`).
"""

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
"""


def record_checkpoint(
    warehouse: Warehouse, name: str, path: str, fingerprint: str | None, *, data_fingerprint: str | None = None,
    started_from: str | None = None, root_model: str | None = None, run_id: str | None = None,
) -> None:
    """Record ``path`` as the current checkpoint called ``name``, and in its history with what it was trained on
    (``data_fingerprint``: data and settings, not the starting point), the model it ``started_from`` and the
    ``root_model`` its line of checkpoints began with."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with warehouse.write() as con:
        con.execute(CHECKPOINTS_DDL)
        con.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)", [name, path, fingerprint, now])
        con.execute("INSERT INTO checkpoint_history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [name, path, fingerprint, data_fingerprint, started_from, root_model, run_id, now])


def current_checkpoint(warehouse: Warehouse, name: str) -> str:
    """The path recorded for ``name``; a clear error when the asset that makes it has not run."""
    with warehouse.write() as con:  # creates the table on a fresh warehouse
        con.execute(CHECKPOINTS_DDL)
        row = con.execute("SELECT path FROM checkpoints WHERE name = ?", [name]).fetchone()
    if row is None:
        raise FileNotFoundError(f"no {name!r} checkpoint recorded yet: materialize the {name} asset first")
    return row[0]


def checkpoint_history(warehouse: Warehouse, name: str) -> list[CheckpointRecord]:
    """Every checkpoint recorded as ``name``, newest first."""
    with warehouse.write() as con:  # creates the table on a fresh warehouse
        con.execute(CHECKPOINTS_DDL)
        rows = con.execute(
            "SELECT path, fingerprint, data_fingerprint, started_from, root_model, run_id, created_at "
            "FROM checkpoint_history WHERE name = ? ORDER BY created_at DESC, rowid DESC", [name]).fetchall()
    return [CheckpointRecord(*row) for row in rows]
