"""Stage 1's tables: the raw documents of each language, the records quarantined with a reason, and the shards
ingested (key and fingerprint, so that a run reads only new or changed shards; a shard's key is its place in
its source folder, see :func:`xinst_assets.core.discovery.shard_keys`).

``raw_web_text`` stages each shard it reads to Parquet files outside any transaction; :func:`write_ingest` then
replaces the rows of every re-read or removed shard of one language in one transaction of the partition, on
either backend (on the lakehouse: run again if it loses a commit race, which it may since it only reads the
staged files and the tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

import duckdb

from xinst_assets.core.pause_points import pause_point
from xinst_assets.resources.warehouse import sql_path
from xinst_assets.store.resource import backend_of

RAW_TABLES_DDL = """
CREATE TABLE IF NOT EXISTS raw_documents (
    lang VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, text VARCHAR NOT NULL, url VARCHAR, timestamp VARCHAR,
    source VARCHAR, shard VARCHAR NOT NULL, position BIGINT NOT NULL, source_id VARCHAR, source_lang VARCHAR,
    control_chars INTEGER
);
-- Provenance (the record's own id and language field) and the control characters removed: warehouses from
-- before them get the columns; their shards are read again (the reader's version is part of each shard's
-- fingerprint), which fills them.
ALTER TABLE raw_documents ADD COLUMN IF NOT EXISTS source_id VARCHAR;
ALTER TABLE raw_documents ADD COLUMN IF NOT EXISTS source_lang VARCHAR;
ALTER TABLE raw_documents ADD COLUMN IF NOT EXISTS control_chars INTEGER;
CREATE TABLE IF NOT EXISTS raw_quarantine (
    lang VARCHAR NOT NULL, shard VARCHAR NOT NULL, position BIGINT, reason VARCHAR NOT NULL, detail VARCHAR,
    snippet VARCHAR
);
CREATE TABLE IF NOT EXISTS raw_shards (
    lang VARCHAR NOT NULL, shard VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, size_bytes BIGINT,
    mtime_ns BIGINT, rows_ingested BIGINT, rows_quarantined BIGINT, ingested_at TIMESTAMP{shards_key}
);
"""


def raw_tables_ddl(primary_keys: bool = True) -> str:
    """The DDL (and migrations) of stage 1's tables; ``primary_keys=False`` for a backend without constraints
    (a shard is written once per run by construction: its rows are deleted before they are written again)."""
    return RAW_TABLES_DDL.format(shards_key=",\n    PRIMARY KEY (lang, shard)" if primary_keys else "")


@dataclass(frozen=True)
class StagedShard:
    """One shard read this run: its identity (as ``raw_shards`` records it), what its read gave, and the staged
    files of its documents and quarantined records."""

    key: str  # the shard's key (raw_shards.shard)
    fingerprint: str  # the shard's, or a fingerprint no shard has when the read must be done again
    size_bytes: int
    mtime_ns: int
    rows: int
    quarantined: int
    documents_file: Path
    quarantine_file: Path


@dataclass
class RawTotals:
    """A language's stage 1 tables after a write: what its metadata and check report."""

    documents: int = 0
    distinct_documents: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    quarantine_examples: list[tuple] = field(default_factory=list)  # (shard, position, reason, detail)
    file_problems: list[tuple] = field(default_factory=list)  # (shard, reason, detail)
    with_control_chars: int = 0


def known_shards(store, langs: list[str]) -> dict[str, dict[str, str]]:
    """The ingested shards of each language: shard key -> fingerprint (one read for every language of the run)."""
    backend = backend_of(store)
    if not backend.table_exists("raw_shards"):
        return {}
    with backend.read() as con:
        rows = con.execute("SELECT lang, shard, fingerprint FROM raw_shards WHERE list_contains(?, lang)",
                           [langs]).fetchall()
    known: dict[str, dict[str, str]] = {}
    for lang, shard, fingerprint in rows:
        known.setdefault(lang, {})[shard] = fingerprint
    return known


def write_ingest(store, lang: str, removed: Iterable[str], staged: list[StagedShard], ingested_at: datetime,
                 file_reasons: Iterable[str]) -> RawTotals:
    """Replace the rows of every ``removed`` or ``staged`` shard of ``lang`` in one transaction (the staged
    shards' rows from their files); return the language's totals. ``file_reasons``: the quarantine reasons
    that concern whole files (reported apart from the records')."""
    backend = backend_of(store)
    removed, file_reasons = list(removed), sorted(file_reasons)

    def work(con: duckdb.DuckDBPyConnection) -> RawTotals:
        con.execute(raw_tables_ddl(backend.primary_keys))
        for key in removed + [shard.key for shard in staged]:
            for table in ("raw_documents", "raw_quarantine", "raw_shards"):
                con.execute(f"DELETE FROM {table} WHERE lang = ? AND shard = ?", [lang, key])
        for shard in staged:
            con.execute(f"INSERT INTO raw_documents BY NAME SELECT * FROM "
                        f"read_parquet('{sql_path(shard.documents_file)}')")
            con.execute(f"INSERT INTO raw_quarantine BY NAME SELECT * FROM "
                        f"read_parquet('{sql_path(shard.quarantine_file)}')")
            con.execute("INSERT INTO raw_shards VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [lang, shard.key, shard.fingerprint, shard.size_bytes, shard.mtime_ns, shard.rows,
                         shard.quarantined, ingested_at])
        totals = _totals(con, lang, file_reasons)
        pause_point("raw_web_text: before commit")  # a test's kill lands here (core/pause_points.py)
        return totals

    return backend.partition_transaction("raw_documents", lang, work)


def _totals(con: duckdb.DuckDBPyConnection, lang: str, file_reasons: list[str]) -> RawTotals:
    documents, distinct = con.execute(
        "SELECT count(*), count(DISTINCT doc_id) FROM raw_documents WHERE lang = ?", [lang]).fetchone()
    by_reason = dict(con.execute(
        "SELECT reason, count(*) FROM raw_quarantine WHERE lang = ? GROUP BY reason", [lang]).fetchall())
    examples = con.execute(
        "SELECT shard, position, reason, detail FROM raw_quarantine WHERE lang = ? "
        "AND NOT list_contains(?, reason) ORDER BY shard, position LIMIT 10", [lang, file_reasons]).fetchall()
    file_problems = con.execute(
        "SELECT shard, reason, detail FROM raw_quarantine WHERE lang = ? AND list_contains(?, reason) "
        "ORDER BY shard, position NULLS FIRST LIMIT 50", [lang, file_reasons]).fetchall()
    with_controls = con.execute(
        "SELECT count(*) FROM raw_documents WHERE lang = ? AND control_chars > 0", [lang]).fetchone()[0]
    return RawTotals(int(documents), int(distinct), by_reason, examples, file_problems, int(with_controls))
