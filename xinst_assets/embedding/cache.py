"""A content-addressed cache of embeddings in DuckDB: a rerun or a nightly refresh embeds only new texts.

One table, ``embedding_cache(key, model, dim, vector)``; ``key`` is :func:`cache_key` = a stable hash of
(embedder fingerprint, exact text), so the same text under another model (or another truncation length) is a
different entry. The functions take an open DuckDB connection, so the caller owns the transaction (the
warehouse allows one writer at a time): :func:`lookup` reads a batch of keys in one query, :func:`store`
inserts new rows (existing keys are left alone: on the lakehouse, where the key cannot be a PRIMARY KEY, the
rows whose key is absent; see :mod:`xinst_assets.store.content_cache`). :func:`embed_with_cache` does the whole
round trip with short windows: one read for the lookup, then one write per embedded chunk, so a crash loses at
most one chunk of work.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from xinst_assets.core.text import stable_hash
from xinst_assets.embedding.embedders import Embedder
from xinst_assets.store.content_cache import Transaction, create_keyed_table, insert_absent, write_in

TABLE = "embedding_cache"
COLUMNS = "model VARCHAR NOT NULL, dim INTEGER NOT NULL, vector FLOAT[] NOT NULL"
# Texts embedded between two cache writes. MiniLM embeds ~135 texts/s per thread, so one chunk is about
# 15-30 s of work on 2 cores: short enough that a crash loses little, long enough that writes (~10 ms) are
# negligible.
DEFAULT_CHUNK = 4096

ConnectionFactory = Callable[[], ContextManager[duckdb.DuckDBPyConnection]]


def cache_key(fingerprint: str, text: str) -> str:
    """The cache key of ``text`` under an embedder with this fingerprint (the exact text, not normalised)."""
    return stable_hash("embedding", fingerprint, text)


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``embedding_cache`` if it does not exist (needs a writable connection; the key is a PRIMARY KEY
    where the backend has them)."""
    create_keyed_table(con, TABLE, COLUMNS)


def _table_exists(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name = ? AND table_schema = current_schema()",
        [TABLE],
    ).fetchone()
    return bool(row and row[0])


def _to_arrow(result: duckdb.DuckDBPyConnection) -> pa.Table:
    fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table  # renamed in duckdb 1.5
    return fetch()


def lookup(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Cached vectors for ``keys`` (one query for the whole batch); keys not in the cache are absent.

    Works on a read-only connection; a database without the table is an empty cache.
    """
    unique = list(dict.fromkeys(keys))
    if not unique or not _table_exists(con):
        return {}
    wanted = pa.table({"key": pa.array(unique, type=pa.string())})
    con.register("_xinst_wanted_keys", wanted)
    try:
        found = _to_arrow(
            con.execute(f"SELECT c.key, c.dim, c.vector FROM {TABLE} c JOIN _xinst_wanted_keys w USING (key)")
        )
    finally:
        con.unregister("_xinst_wanted_keys")
    if found.num_rows == 0:
        return {}
    dims = set(found.column("dim").to_pylist())
    if len(dims) != 1:  # keys include the fingerprint, which includes the width: this means a corrupt table
        raise ValueError(f"{TABLE} rows for one batch of keys have several widths {sorted(dims)}")
    dim = dims.pop()
    flat = found.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    matrix = np.asarray(flat, dtype=np.float32).reshape(found.num_rows, dim)
    return dict(zip(found.column("key").to_pylist(), matrix))


def store(con: duckdb.DuckDBPyConnection, keys: Sequence[str], vectors: np.ndarray, model: str) -> int:
    """Insert ``vectors`` (rows aligned with ``keys``) for ``model``; keys already cached are kept as is.

    Creates the table if needed. Returns the number of rows offered (after removing repeated keys).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(keys):
        raise ValueError(f"store(): {len(keys)} keys but vectors of shape {vectors.shape}")
    ensure_table(con)
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    if not first:
        return 0
    rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    dim = vectors.shape[1]
    kept = vectors[rows]
    offsets = pa.array(np.arange(0, (len(rows) + 1) * dim, dim, dtype=np.int32))
    table = pa.table(
        {
            "key": pa.array(list(first), type=pa.string()),
            "model": pa.array([model] * len(rows), type=pa.string()),
            "dim": pa.array(np.full(len(rows), dim, dtype=np.int32)),
            "vector": pa.ListArray.from_arrays(offsets, pa.array(kept.reshape(-1))),
        }
    )
    insert_absent(con, TABLE, table, "n.key, n.model, n.dim, n.vector")
    return len(rows)


@dataclass(frozen=True)
class CachedEmbeddings:
    """Embeddings aligned with the input texts, and how many distinct texts came from the cache."""

    matrix: np.ndarray  # (len(texts), dim) float32, unit-norm rows
    hits: int  # distinct texts found in the cache
    misses: int  # distinct texts embedded now (and stored)


def embed_with_cache(
    embedder: Embedder,
    texts: Sequence[str],
    read: ConnectionFactory | None,
    write: ConnectionFactory | None,
    chunk: int = DEFAULT_CHUNK,
    on_chunk: Callable[[int], None] | None = None,
    transaction: Transaction | None = None,
) -> CachedEmbeddings:
    """Embed ``texts``, reading known vectors from the cache and storing new ones.

    ``read`` and ``write`` return context managers yielding a DuckDB connection (``Warehouse.read`` and
    ``Warehouse.write`` fit); either may be ``None`` (no lookup / no storing). Repeated texts are embedded
    once.
    ``on_chunk(n)`` is called after each chunk of ``n`` new texts (for progress reporting). ``transaction``
    (a store's, :meth:`StoreBackend.transaction`: run again on a lost commit race), when given, runs the
    writes instead of ``write``.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    fingerprint = embedder.fingerprint()
    keys = [cache_key(fingerprint, text) for text in texts]
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    found: dict[str, np.ndarray] = {}
    if read is not None and first:
        with read() as con:
            found = lookup(con, list(first))
    missing = [key for key in first if key not in found]
    for start in range(0, len(missing), chunk):
        part = missing[start : start + chunk]
        vectors = embedder.embed([texts[first[key]] for key in part])
        if write is not None:
            write_in(transaction, write, lambda con, part=part, vectors=vectors: store(con, part, vectors, fingerprint))
        found.update(zip(part, vectors))
        if on_chunk is not None:
            on_chunk(len(part))
    matrix = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for i, key in enumerate(keys):
        matrix[i] = found[key]
    return CachedEmbeddings(matrix=matrix, hits=len(first) - len(missing), misses=len(missing))


@contextlib.contextmanager
def connection(con: duckdb.DuckDBPyConnection):
    """Wrap an already open connection as a factory result (for callers that manage one connection)."""
    yield con
