"""Stage 2's verdict cache: ``document_signals`` (the language-ID and quality verdict and the MinHash signature
of each document, by content id and settings) and ``document_signal_writes`` (a counter of writes per
language, which dbt's screening reads to find the verdicts newer than those it screened).

``document_signals`` stages the documents without a current verdict (:func:`export_pending`), screens them
outside any transaction, and stores the new verdicts in one transaction per language (:func:`write_signals`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from xinst_assets.core.pause_points import pause_point
from xinst_assets.resources.warehouse import copy_to_parquet, drop_primary_key, rows_by_id, sql_path
from xinst_assets.store.resource import backend_of

# The per-document tables have no PRIMARY KEY on purpose (see warehouse.drop_primary_key): a refresh would
# pay for rewriting the key index of every language. (lang, doc_id) is unique by construction: rows are
# deleted before they are written again, and the no_duplicates_kept check watches the kept set.
SIGNALS_DDL = """
CREATE TABLE IF NOT EXISTS document_signals (
    lang VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, settings_key VARCHAR NOT NULL,
    lid_label VARCHAR, lid_score DOUBLE, lid_runner_up VARCHAR, lid_runner_up_score DOUBLE,
    chars BIGINT, words BIGINT, reject_reason VARCHAR, first_seen_at TIMESTAMP NOT NULL,
    minhash BLOB, signals_version BIGINT
);
-- Warehouses from before signatures were stored with the signals (their settings key changes too, so every
-- document is screened again and gets one).
ALTER TABLE document_signals ADD COLUMN IF NOT EXISTS minhash BLOB;
-- Which write of the language produced each verdict: dbt's screening computes again the content ids with a
-- verdict newer than the latest it screened, without comparing every verdict with its rows. The numbers come
-- from a counter of writes per language (never from the verdicts' own maximum, which falls when the newest
-- verdicts are deleted with their documents: a later write would then reuse a number already screened).
ALTER TABLE document_signals ADD COLUMN IF NOT EXISTS signals_version BIGINT;
-- The second-opinion language ID and the mixed-document analysis (core/lid_decision.py): the second model's
-- choice and confidence, who decided, and the English share of a segmented document.
ALTER TABLE document_signals ADD COLUMN IF NOT EXISTS lid_second_label VARCHAR;
ALTER TABLE document_signals ADD COLUMN IF NOT EXISTS lid_second_score DOUBLE;
ALTER TABLE document_signals ADD COLUMN IF NOT EXISTS lid_decided_by VARCHAR;
ALTER TABLE document_signals ADD COLUMN IF NOT EXISTS lid_english_share DOUBLE;
CREATE TABLE IF NOT EXISTS document_signal_writes (
    lang VARCHAR NOT NULL, signals_version BIGINT NOT NULL, written_at TIMESTAMP NOT NULL, documents BIGINT NOT NULL
);
"""


def create_signal_tables(store) -> None:
    """Create and migrate the verdict tables (dropping a primary key that earlier versions gave them)."""
    def work(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(SIGNALS_DDL)
        drop_primary_key(con, "document_signals")

    backend_of(store).transaction(work)


@dataclass(frozen=True)
class PendingDocuments:
    """One language's documents to screen, staged: ``file`` (doc id, text, first timestamp) with ``count``
    rows, and ``gone``, a file of the ids whose verdicts are stored but whose documents left raw_documents
    (None when there are none)."""

    file: Path
    count: int
    gone: Path | None


def export_pending(store, lang: str, settings_key: str, scratch: Path) -> PendingDocuments:
    """Stage the documents of ``lang`` without a verdict under ``settings_key``, and the ids of the verdicts
    whose documents are gone, in ``scratch``."""
    pending, gone = scratch / "pending.parquet", scratch / "gone.parquet"
    # The ids first, then their texts: the join reads ids only, and the texts of the documents to screen alone
    # are read, by row id (the first copy of each), so a refresh does not read the language's texts. One full
    # join of the two id columns finds both sides: documents to screen and verdicts to drop.
    with backend_of(store).read() as con:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _pending AS
            WITH r AS (SELECT doc_id, min(rowid) AS first_row, min(timestamp) AS published_at
                       FROM raw_documents WHERE lang = ? GROUP BY doc_id),
                 s AS (SELECT doc_id, bool_or(settings_key = ?) AS current
                       FROM document_signals WHERE lang = ? GROUP BY doc_id)
            SELECT coalesce(r.doc_id, s.doc_id) AS doc_id, r.first_row, r.published_at, r.doc_id IS NULL AS gone
            FROM r FULL OUTER JOIN s ON s.doc_id = r.doc_id
            WHERE r.doc_id IS NULL OR s.doc_id IS NULL OR NOT s.current""", [lang, settings_key, lang])
        texts = rows_by_id(con, "raw_documents", "text", "_pending", "first_row")
        count = copy_to_parquet(con, f"""
            SELECT t.doc_id, x.text, t.published_at FROM _pending t JOIN ({texts}) x ON x._row_id = t.first_row
            ORDER BY t.doc_id""", None, pending)
        gone_count = copy_to_parquet(con, "SELECT doc_id FROM _pending WHERE gone", None, gone)
        con.execute("DROP TABLE _pending")
    return PendingDocuments(pending, count, gone if gone_count else None)


@dataclass
class SignalTotals:
    """A language's verdicts after a write."""

    documents: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


def write_signals(store, lang: str, settings_key: str, staged: Path, gone: Path | None, screened: int,
                  now: datetime) -> SignalTotals:
    """Store the new verdicts of ``lang`` (the screened ``staged`` file, ``screened`` rows) in one transaction,
    dropping those of the ``gone`` documents that still have no raw row; return the language's totals. A
    document screened again keeps its ``first_seen_at``."""
    def work(con: duckdb.DuckDBPyConnection) -> SignalTotals:
        if gone is not None:
            con.execute(
                f"DELETE FROM document_signals s WHERE lang = ? AND doc_id IN (SELECT doc_id FROM "
                f"read_parquet('{sql_path(gone)}')) AND NOT EXISTS "
                "(SELECT 1 FROM raw_documents r WHERE r.lang = ? AND r.doc_id = s.doc_id)", [lang] * 2)
        (version,) = con.execute("SELECT coalesce(max(signals_version), 0) + 1 FROM document_signal_writes "
                                 "WHERE lang = ?", [lang]).fetchone()
        if screened:
            con.execute("INSERT INTO document_signal_writes VALUES (?, ?, ?, ?)", [lang, version, now, screened])
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _new_signals AS
            SELECT ? AS lang, n.doc_id, ? AS settings_key, n.lid_label, n.lid_score, n.lid_runner_up,
                   n.lid_runner_up_score, n.chars, n.words, n.reject_reason,
                   coalesce(old.first_seen_at, ?::TIMESTAMP) AS first_seen_at, n.minhash,
                   n.lid_second_label, n.lid_second_score, n.lid_decided_by, n.lid_english_share,
                   ?::BIGINT AS signals_version
            FROM read_parquet('{sql_path(staged)}') n
            LEFT JOIN document_signals old ON old.lang = ? AND old.doc_id = n.doc_id
        """, [lang, settings_key, now, version, lang])
        con.execute("DELETE FROM document_signals WHERE lang = ? AND doc_id IN "
                    "(SELECT doc_id FROM _new_signals)", [lang])
        con.execute("INSERT INTO document_signals BY NAME SELECT * FROM _new_signals")
        con.execute("DROP TABLE _new_signals")
        total, rejected = con.execute(
            "SELECT count(*), count(reject_reason) FROM document_signals WHERE lang = ?", [lang]).fetchone()
        by_reason = dict(con.execute(
            "SELECT reject_reason, count(*) FROM document_signals WHERE lang = ? "
            "AND reject_reason IS NOT NULL GROUP BY 1", [lang]).fetchall())
        pause_point("document_signals: before commit")  # a test's kill lands here (core/pause_points.py)
        return SignalTotals(int(total), int(rejected), by_reason)

    return backend_of(store).partition_transaction("document_signals", lang, work)
