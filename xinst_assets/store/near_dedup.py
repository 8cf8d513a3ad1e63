"""Stage 2's near-dedup tables: ``near_dedup_state`` (each survivor's decision: kept or the duplicate of
which representative, its signature, LSH band keys and component), ``filtered_documents`` (the kept set) and
``filter_rejections`` (the audit trail of every rejected document), read from dbt's ``screened_documents`` and
its change log ``screening_changes``.

``language_filtered_text`` stages its input (:func:`export_near_dedup`: in a refresh only the documents the
change log lists and the earlier members of the components they reach), clusters it outside any transaction
(core.dedup), reads texts for the exact similarity check (:func:`text_reader`) and stores the decisions and
syncs the kept set and rejections in one transaction per language (:func:`write_filtered`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xinst_assets.core.dedup import MinhashConfig, band_hashes, signature_matrix
from xinst_assets.resources.warehouse import (
    copy_to_parquet,
    drop_primary_key,
    has_table,
    rows_by_id,
    sql_path,
    sync_partition,
)
from xinst_assets.store.resource import backend_of

FILTERED_DDL = """
CREATE TABLE IF NOT EXISTS near_dedup_state (
    lang VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, config VARCHAR NOT NULL, keep BOOLEAN NOT NULL,
    duplicate_of VARCHAR, content_key VARCHAR, signature BLOB
);
CREATE TABLE IF NOT EXISTS filtered_documents (
    lang VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, text VARCHAR NOT NULL, url VARCHAR, timestamp VARCHAR,
    source VARCHAR, lid_score DOUBLE, lid_runner_up VARCHAR, cluster_size BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS filter_rejections (
    lang VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, shard VARCHAR, position BIGINT, url VARCHAR,
    reason VARCHAR NOT NULL, duplicate_of VARCHAR, lid_label VARCHAR, lid_score DOUBLE, text VARCHAR
);
-- The raw row each document was read from (its shard, position and that shard's ingest): the keyed sync
-- compares these instead of the texts they determine. Tables from before them get them (rows written again once).
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS shard VARCHAR;
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS position BIGINT;
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS shard_ingested_at TIMESTAMP;
ALTER TABLE filter_rejections ADD COLUMN IF NOT EXISTS shard_ingested_at TIMESTAMP;
-- The LSH band keys of each representative (band_key_lists), for the refresh's pruning; representatives
-- stored before them get them in their language's next write.
ALTER TABLE near_dedup_state ADD COLUMN IF NOT EXISTS band_keys UBIGINT[];
-- The component of each document (core.dedup: its best-ranked document), the unit a refresh clusters again.
ALTER TABLE near_dedup_state ADD COLUMN IF NOT EXISTS component VARCHAR;
-- Both language-ID models in the audit trail: fastText's top label and runner-up score, the second opinion's
-- choice and confidence, who decided, and the English share of a mixed document.
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS lid_label VARCHAR;
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS lid_second_label VARCHAR;
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS lid_second_score DOUBLE;
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS lid_decided_by VARCHAR;
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS lid_english_share DOUBLE;
ALTER TABLE filter_rejections ADD COLUMN IF NOT EXISTS lid_runner_up VARCHAR;
ALTER TABLE filter_rejections ADD COLUMN IF NOT EXISTS lid_runner_up_score DOUBLE;
ALTER TABLE filter_rejections ADD COLUMN IF NOT EXISTS lid_second_label VARCHAR;
ALTER TABLE filter_rejections ADD COLUMN IF NOT EXISTS lid_second_score DOUBLE;
ALTER TABLE filter_rejections ADD COLUMN IF NOT EXISTS lid_decided_by VARCHAR;
ALTER TABLE filter_rejections ADD COLUMN IF NOT EXISTS lid_english_share DOUBLE;
-- Each kept text's length, for the statistics (which would otherwise read every kept text again).
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS chars BIGINT;
UPDATE filtered_documents SET chars = length(text) WHERE chars IS NULL;
-- Provenance: the record's own id and language field in its source (raw_documents.source_id, source_lang).
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS source_id VARCHAR;
ALTER TABLE filtered_documents ADD COLUMN IF NOT EXISTS source_lang VARCHAR;
ALTER TABLE filter_rejections ADD COLUMN IF NOT EXISTS source_id VARCHAR;
ALTER TABLE filter_rejections ADD COLUMN IF NOT EXISTS source_lang VARCHAR;
"""


def create_filtered_tables(store) -> None:
    """Create and migrate the near-dedup tables (dropping a primary key that earlier versions gave the
    per-document ones)."""
    def work(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(FILTERED_DDL)
        for table in ("near_dedup_state", "filtered_documents"):
            drop_primary_key(con, table)

    backend_of(store).transaction(work)


# The survivors of a language, as near-dedup reads them (alias s).
ALIVE = "FROM screened_documents s WHERE s.lang = ? AND s.reject_reason IS NULL"
SIGNATURE_BATCH = 5_000  # documents per batch into the index: bounded memory
# Up to this many new documents, a refresh clusters again only the components they reach (and those of changed
# or removed documents); beyond it, the whole language, as a first run does: most components would be reached.
PRUNE_MAX_NEW = 100_000


@dataclass
class Changes:
    """What near-dedup must look at again in a language: dbt's screening logs the content ids each build
    computed again (screening_changes, see dbt/macros/screening.sql); a refresh reads the entries up to the
    latest build (``through``) and deletes them once applied. ``whole``: cluster the whole language, as a
    first run does (no log yet, a build of the whole language, no stored decision, or other settings)."""

    through: int | None = None
    whole: bool = True


def read_changes(con, lang, decision_key: str) -> Changes:
    """The language's entries in the change log, and whether they cover the whole language; in scoped mode
    the temp table ``_changed`` (doc_id) lists them."""
    if not has_table(con, "screening_changes"):
        return Changes()
    through, whole = con.execute("SELECT max(build_seq), coalesce(bool_or(doc_id IS NULL), false) "
                                 "FROM screening_changes WHERE lang = ?", [lang]).fetchone()
    stored, other = con.execute("SELECT count(*), count(*) FILTER (WHERE config <> ?) FROM near_dedup_state "
                                "WHERE lang = ?", [decision_key, lang]).fetchone()
    changes = Changes(through, bool(whole) or stored == 0 or other > 0)
    if not changes.whole:
        _list_changed(con, lang, changes)
    return changes


def _list_changed(con, lang, changes: Changes) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _changed AS SELECT DISTINCT doc_id FROM screening_changes "
                "WHERE lang = ? AND build_seq <= ? AND doc_id IS NOT NULL", [lang, changes.through or 0])


@dataclass
class NearDedupInput:
    """One language's staged near-dedup input: the documents to cluster. ``todo``: the new or changed ones
    (every survivor in a whole run); ``members``: in a refresh, the earlier documents of every component that
    those reach or that a changed or removed document was in (the clusters of the module core.dedup are
    decided per component, so these are all that can change)."""

    todo_file: Path
    todo: int
    changes: Changes
    members_file: Path | None = None
    members: int = 0

    @property
    def documents(self) -> int:
        return self.todo + self.members


def export_near_dedup(store, lang: str, config: MinhashConfig, scratch: Path, log) -> NearDedupInput:
    """Stage this run's survivors of ``lang`` to cluster and, in a refresh, the earlier documents of the
    components they reach (see :class:`NearDedupInput`) in ``scratch``. One read window: the change log's temp
    table ``_changed`` serves every export. ``log``: where to say what it does (``.info``)."""
    members_file, todo_file = scratch / "members.parquet", scratch / "todo.parquet"
    with backend_of(store).read() as con:
        changes = read_changes(con, lang, config.decision_key)
        todo = _export_todo(con, lang, changes, todo_file)
        if not changes.whole and not (todo <= PRUNE_MAX_NEW and _all_signed(todo_file)):
            changes = Changes(changes.through, whole=True)  # so many new documents: the whole language
            todo = _export_todo(con, lang, changes, todo_file)
        members = 0 if changes.whole else _export_members(con, lang, config, todo_file, scratch, members_file)
    if todo + members == 0:
        log.info(f"{lang}: near-dedup: no new documents")
        return NearDedupInput(todo_file, 0, changes)
    log.info(f"{lang}: near-dedup of {todo:,} new documents with the {members:,} earlier documents of the "
             "components they reach" if not changes.whole else
             f"{lang}: near-dedup of the whole language ({todo:,} documents)")
    return NearDedupInput(todo_file, todo, changes, members_file if members else None, members)


def _export_todo(con, lang, changes: Changes, todo_file: Path) -> int:
    """Stage the survivors to cluster (doc id, stored signature, the text of those without one, exact copies);
    return how many: every survivor in a whole run, those the change log lists in a refresh. The ids first;
    then the signatures of those documents by row id (a join on the doc id would read the signature column of
    the whole language, about 1 KB per document, for a night's few new ones), and texts only for documents
    screened before signatures were stored."""
    scope = "" if changes.whole else "AND s.doc_id IN (SELECT doc_id FROM _changed)"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _todo AS SELECT s.doc_id, s.exact_copies {ALIVE} {scope}",
                [lang])
    con.execute("CREATE OR REPLACE TEMP TABLE _todo_rows AS SELECT g.doc_id, g.rowid AS row_id "
                "FROM document_signals g WHERE g.lang = ? AND g.doc_id IN (SELECT doc_id FROM _todo)", [lang])
    signatures = rows_by_id(con, "document_signals", "minhash", "_todo_rows", "row_id")
    todo = copy_to_parquet(con, f"""
        WITH signed AS (
            SELECT t.doc_id, t.exact_copies, g.minhash FROM _todo t
            LEFT JOIN _todo_rows r ON r.doc_id = t.doc_id LEFT JOIN ({signatures}) g ON g._row_id = r.row_id)
        SELECT s.doc_id, s.minhash, x.text, s.exact_copies FROM signed s LEFT JOIN (
            SELECT doc_id, text FROM screened_documents
            WHERE lang = ? AND reject_reason IS NULL AND doc_id IN (SELECT doc_id FROM signed WHERE minhash IS NULL)
        ) x ON x.doc_id = s.doc_id
        ORDER BY s.doc_id""", [lang], todo_file)
    con.execute("DROP TABLE _todo")
    con.execute("DROP TABLE _todo_rows")
    return todo


def _export_members(con, lang, config, todo_file: Path, scratch: Path, members_file: Path) -> int:
    """Stage (doc id, stored signature, exact copies) the earlier documents of every stored component that a
    document to cluster reaches, or that a document of the change log was in (changed or removed); return how
    many.

    Every document is stored with the keys of its LSH bands (band_key_lists): a stored document can be near a
    new one only if they share a key, so the new documents' keys are joined with the stored ones, and the other
    documents are not even read. A key collision only lets an extra component through, and a component clustered
    again without a change comes out the same."""
    keys_file = _stage_band_keys(todo_file, config, scratch / "todo_keys.parquet")
    stored = "FROM near_dedup_state WHERE lang = ? AND config = ?"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _reached AS
        WITH seeds AS (
            SELECT doc_id FROM _changed
            UNION
            SELECT u.doc_id FROM (SELECT doc_id, unnest(band_keys) AS k {stored}) u
            SEMI JOIN read_parquet('{sql_path(keys_file)}') t ON t.k = u.k)
        SELECT DISTINCT component {stored} AND doc_id IN (SELECT doc_id FROM seeds)""",
        [lang, config.decision_key] * 2)
    members = copy_to_parquet(con, f"""
        SELECT n.doc_id, n.signature, s.exact_copies FROM near_dedup_state n
        JOIN (SELECT s.doc_id, s.exact_copies {ALIVE}) s ON s.doc_id = n.doc_id
        WHERE n.lang = ? AND n.config = ? AND n.component IN (SELECT component FROM _reached)
          AND n.doc_id NOT IN (SELECT doc_id FROM _changed)
        ORDER BY n.doc_id""", [lang, lang, config.decision_key], members_file)
    con.execute("DROP TABLE _reached")
    return members


def _stage_band_keys(todo_file: Path, config, keys_file: Path) -> Path:
    """Stage the distinct band keys of the documents to cluster (column ``k``), from their signatures (those
    without shingles have no bands: they are near nothing)."""
    empty = np.full(config.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    keys = []
    for batch in pq.ParquetFile(todo_file, pre_buffer=False).iter_batches(batch_size=SIGNATURE_BATCH,
                                                                         columns=["minhash"]):
        matrix, valid = signature_matrix(batch.column("minhash"), config)
        keys.append(band_hashes(matrix[valid & ~(matrix == empty).all(axis=1)], config).ravel())
    unique = np.unique(np.concatenate(keys)) if keys else np.empty(0, dtype=np.uint64)
    pq.write_table(pa.table({"k": pa.array(unique, pa.uint64())}), keys_file)
    return keys_file


def text_reader(store, lang: str) -> Callable[[list[str]], list[str | None]]:
    """Texts of survivors by doc id, for the index's exact similarity check (on the calling thread's warehouse
    session when it joined one)."""
    backend = backend_of(store)

    def read(doc_ids):
        # The row ids first, then the texts by row id: filtering the text column on the doc ids would read
        # nearly every text of the language (a few thousand wanted ids touch most of its row groups).
        with backend.read() as con:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _wanted AS SELECT s.rowid AS row_id, s.doc_id {ALIVE} "
                        "AND s.doc_id IN (SELECT unnest(?::VARCHAR[]))", [lang, list(doc_ids)])
            texts = rows_by_id(con, "screened_documents", "text", "_wanted", "row_id")
            found = dict(con.execute(f"SELECT w.doc_id, t.text FROM _wanted w JOIN ({texts}) t ON t._row_id = w.row_id"
                                     ).fetchall())
            con.execute("DROP TABLE _wanted")
        return [found.get(doc_id) for doc_id in doc_ids]
    return read


def _all_signed(todo_file: Path) -> bool:
    """Whether every document to decide has its stored signature (not one screened before they were stored).
    Read from the file's column statistics when it has them, not from the signatures themselves."""
    metadata = pq.ParquetFile(todo_file).metadata
    column = metadata.schema.names.index("minhash")
    stats = [metadata.row_group(i).column(column).statistics for i in range(metadata.num_row_groups)]
    if all(s is not None and s.has_null_count for s in stats):
        return sum(s.null_count for s in stats) == 0
    return pq.read_table(todo_file, columns=["minhash"]).column("minhash").null_count == 0


def _affected_rows(con, sql: str, parameters) -> int:
    """Run an INSERT or UPDATE; how many rows it wrote."""
    row = con.execute(sql, parameters).fetchone()
    return int(row[0]) if row else 0


def write_filtered(store, lang: str, decision_key: str, staged: Path | None, changes: Changes) -> dict:
    """Store the new near-dedup decisions of ``lang`` (``staged``: the ``near_dedup_state`` rows decided now,
    made under ``decision_key``; None when nothing was clustered) and sync its kept set and rejections to
    them, in one transaction, then delete the change-log entries applied; return the figures its metadata
    and checks report (kept, clustered, by_reason, purity, duplicated_ids, kept_marked_dup, examples,
    decisions_written: the near_dedup_state rows inserted or updated). In
    scoped mode (``changes``), only the documents the log lists and those clustered now (whole components:
    every representative that gains or loses members is among them) are compared and written. The tables
    must exist (:func:`create_filtered_tables`)."""
    key = decision_key

    def work(con: duckdb.DuckDBPyConnection) -> dict:
        scope, written = "", 0
        decided = f"SELECT doc_id FROM read_parquet('{sql_path(staged)}')" if staged else "SELECT NULL"
        if changes.whole:  # every survivor was clustered: the language's decisions are replaced
            con.execute("DELETE FROM near_dedup_state WHERE lang = ?", [lang])
        else:
            _list_changed(con, lang, changes)
            con.execute(f"CREATE OR REPLACE TEMP TABLE _affected AS SELECT doc_id FROM _changed UNION {decided}")
            scope = "AND {column} IN (SELECT doc_id FROM _affected)"
            # Listed documents (new, changed or gone) lose their stored decisions; the earlier documents
            # clustered again keep their rows, and only the decisions that changed are written (their signatures
            # and band keys are those stored: rewriting them cost most of a refresh's commit).
            con.execute("DELETE FROM near_dedup_state WHERE lang = ? AND doc_id IN (SELECT doc_id FROM _changed)",
                        [lang])
            if staged is not None:
                written += _affected_rows(con, f"""
                    UPDATE near_dedup_state n
                    SET keep = s.keep, duplicate_of = s.duplicate_of, content_key = s.content_key,
                        component = s.component
                    FROM read_parquet('{sql_path(staged)}') s
                    WHERE n.lang = ? AND n.doc_id = s.doc_id
                      AND (n.keep IS DISTINCT FROM s.keep OR n.duplicate_of IS DISTINCT FROM s.duplicate_of
                           OR n.content_key IS DISTINCT FROM s.content_key
                           OR n.component IS DISTINCT FROM s.component)""", [lang])
        if staged is not None:
            stored = ("" if changes.whole else
                      "WHERE doc_id NOT IN (SELECT doc_id FROM near_dedup_state WHERE lang = $lang)")
            written += _affected_rows(con, f"""
                INSERT INTO near_dedup_state BY NAME
                SELECT $lang AS lang, doc_id, $key AS config, keep, duplicate_of, content_key, signature, band_keys,
                       component
                FROM read_parquet('{sql_path(staged)}') {stored}""", {"lang": lang, "key": key})
        # Kept: the representative's own exact copies plus those of every near duplicate it absorbed.
        # Synced, not replaced: a refresh writes only the rows that change.
        # (Every table is filtered on the language explicitly: DuckDB does not carry a parameter's
        # filter across a join condition, and would scan every language.)
        sync_partition(con, "filtered_documents", lang, f"""
            WITH absorbed AS (
                SELECT n.duplicate_of AS doc_id, sum(d.exact_copies) AS copies
                FROM near_dedup_state n
                JOIN screened_documents d ON d.lang = ? AND d.doc_id = n.doc_id AND d.reject_reason IS NULL
                WHERE n.lang = ? AND NOT n.keep {scope.format(column="n.duplicate_of")}
                GROUP BY n.duplicate_of)
            SELECT s.lang, s.doc_id, s.url, s.timestamp, s.source, s.lid_score, s.lid_runner_up,
                   s.exact_copies + coalesce(a.copies, 0) AS cluster_size, s.shard, s.position,
                   s.shard_ingested_at, s.source_id, s.source_lang, s.lid_label, s.lid_second_label,
                   s.lid_second_score, s.lid_decided_by, s.lid_english_share, s.rowid AS _row_id
            FROM screened_documents s
            JOIN near_dedup_state k ON k.lang = ? AND k.doc_id = s.doc_id AND k.keep
            LEFT JOIN absorbed a ON a.doc_id = s.doc_id
            WHERE s.lang = ? AND s.reject_reason IS NULL {scope.format(column="s.doc_id")}""", [lang] * 4,
            key=["doc_id"], by_row_id=("screened_documents", {"text": "text", "chars": "length(text)"}),
            scope=("doc_id", "SELECT doc_id FROM _affected") if scope else None)
        sync_partition(con, "filter_rejections", lang, f"""
            SELECT s.lang, s.doc_id, s.shard, s.position, s.url,
                   coalesce(s.reject_reason, 'dedup_near_duplicate') AS reason,
                   CASE WHEN s.reject_reason = 'dedup_exact_duplicate' THEN s.doc_id
                        ELSE n.duplicate_of END AS duplicate_of,
                   s.lid_label, s.lid_score, s.shard_ingested_at, s.source_id, s.source_lang, s.lid_runner_up,
                   s.lid_runner_up_score, s.lid_second_label, s.lid_second_score, s.lid_decided_by,
                   s.lid_english_share, s.rowid AS _row_id
            FROM screened_documents s
            LEFT JOIN near_dedup_state n ON n.lang = ? AND n.doc_id = s.doc_id
            WHERE s.lang = ? AND (s.reject_reason IS NOT NULL OR NOT n.keep) {scope.format(column="s.doc_id")}""",
            [lang] * 2, key=["doc_id", "shard", "position"], by_row_id=("screened_documents", {"text": "text"}),
            scope=("doc_id", "SELECT doc_id FROM _affected") if scope else None)
        if changes.through is not None:  # applied: the log's entries up to the build read go
            con.execute("DELETE FROM screening_changes WHERE lang = ? AND build_seq <= ?", [lang, changes.through])
        if scope:
            con.execute("DROP TABLE _affected")
        kept, clustered = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE cluster_size > 1) FROM filtered_documents "
            "WHERE lang = ?", [lang]).fetchone()
        by_reason = dict(con.execute(
            "SELECT reason, count(*) FROM filter_rejections WHERE lang = ? GROUP BY reason",
            [lang]).fetchall())
        purity, duplicated_ids, kept_marked_dup = con.execute("""
            SELECT avg(CASE WHEN s.lid_label = f.lang OR s.lid_second_label = f.lang THEN 1.0 ELSE 0.0 END),
                   count(*) - count(DISTINCT f.doc_id),
                   count(*) FILTER (WHERE r.doc_id IS NOT NULL)
            FROM filtered_documents f
            LEFT JOIN document_signals s ON s.lang = ? AND s.doc_id = f.doc_id
            LEFT JOIN (SELECT DISTINCT doc_id FROM filter_rejections
                       WHERE lang = ? AND reason LIKE 'dedup_near%') r ON r.doc_id = f.doc_id
            WHERE f.lang = ?""", [lang] * 3).fetchone()
        # Two examples per reason family; their texts read by row id, not every rejected text.
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _examples AS
            SELECT rowid AS r, reason, url FROM filter_rejections WHERE lang = ?
            QUALIFY row_number() OVER (PARTITION BY split_part(reason, ':', 1) ORDER BY doc_id) <= 2
            ORDER BY reason LIMIT 20""", [lang])
        texts = rows_by_id(con, "filter_rejections", "left(text, 100) AS text", "_examples", "r")
        examples = con.execute(f"SELECT p.reason, p.url, f.text FROM _examples p JOIN ({texts}) f ON f._row_id = p.r "
                               "ORDER BY p.reason, p.r").fetchall()
        con.execute("DROP TABLE _examples")
        return {"kept": kept, "clustered": clustered, "by_reason": by_reason, "purity": purity,
                "duplicated_ids": duplicated_ids, "kept_marked_dup": kept_marked_dup, "examples": examples,
                "decisions_written": written}

    return backend_of(store).partition_transaction("filtered_documents", lang, work)
