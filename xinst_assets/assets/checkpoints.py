"""A small registry of trained checkpoints in the warehouse, so later stages find the one an asset produced."""

from datetime import datetime, timezone

from xinst_assets.resources.warehouse import Warehouse

CHECKPOINTS_DDL = """
CREATE TABLE IF NOT EXISTS checkpoints (
    name VARCHAR NOT NULL, path VARCHAR NOT NULL, fingerprint VARCHAR, created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (name)
);
"""


def record_checkpoint(warehouse: Warehouse, name: str, path: str, fingerprint: str | None) -> None:
    """Record ``path`` as the current checkpoint called ``name``."""
    with warehouse.write() as con:
        con.execute(CHECKPOINTS_DDL)
        con.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                    [name, path, fingerprint, datetime.now(timezone.utc).replace(tzinfo=None)])


def current_checkpoint(warehouse: Warehouse, name: str) -> str:
    """The path recorded for ``name``; a clear error when the asset that makes it has not run."""
    with warehouse.write() as con:  # creates the table on a fresh warehouse
        con.execute(CHECKPOINTS_DDL)
        row = con.execute("SELECT path FROM checkpoints WHERE name = ?", [name]).fetchone()
    if row is None:
        raise FileNotFoundError(f"no {name!r} checkpoint recorded yet: materialize the {name} asset first")
    return row[0]
