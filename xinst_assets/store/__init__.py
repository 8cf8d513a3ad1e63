"""The warehouse's tables: one interface, two backends.

* ``embedded`` (the default): the single DuckDB file under the data home (``Warehouse``: file lock, short
  windows), for one machine;
* ``lakehouse``: DuckLake, its catalog in Postgres and its Parquet data in a shared folder or on S3-compatible
  storage, for runs on many machines at once, with no lock: each partition's write is its own transaction,
  run again when it loses a commit race.

:class:`Store` (a Dagster resource) chooses between them from configuration. Each stage's tables have a module
here (DDL and migrations, the reads and per-partition writes the stage uses: ``raw_text``, ``signals``,
``near_dedup``, ``curated_inputs``, ``candidates``, ``scored_pairs``, ``dataset``, ``tuning``, ``checkpoints``); its functions
take a ``Store``, a backend or a ``Warehouse`` (:func:`~xinst_assets.store.resource.backend_of`). What still
needs the embedded file is listed in docs/deployment.md.
"""

from xinst_assets.store.base import (
    RetryPolicy,
    StoreBackend,
    TransactionStats,
    WriteConflict,
    is_write_conflict,
    replace_partition_rows,
    run_transaction,
)
from xinst_assets.store.embedded import EmbeddedBackend
from xinst_assets.store.copy import copy_warehouse
from xinst_assets.store.lakehouse import (
    LakehouseBackend,
    LakehouseSettings,
    S3Settings,
    claim_partition,
    marker_table,
)
from xinst_assets.store.resource import Store

__all__ = [
    "EmbeddedBackend", "LakehouseBackend", "LakehouseSettings", "RetryPolicy", "S3Settings", "Store",
    "StoreBackend", "TransactionStats", "WriteConflict", "is_write_conflict", "replace_partition_rows",
    "run_transaction", "claim_partition", "marker_table", "copy_warehouse",
]
