"""Stage 2: language-filtered text.

``document_signals`` runs fastText LID and the quality heuristics on each new document (cached by content id
and settings) and stores the MinHash signature of each survivor, computed from the same words; dbt's
``screened_documents`` joins them with the raw rows and removes exact duplicates, and
``language_filtered_text`` removes near duplicates with MinHash LSH, globally within the language and across
nightly refreshes, in clusters that do not depend on the order documents arrive in (core.dedup's rule: a refresh
clusters again the components its documents touch), writing the kept set and the audit trail of every rejected
document. Its LSH index is a
DuckDB scratch database fed from staged Parquet files (``NearDuplicateIndex``), so neither stage holds a
language's documents in memory.
"""

import contextlib
import json
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field
from dagster import (
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetSpec,
    Config,
    asset,
    multi_asset,
)

from xinst_assets.assets.ranges import LanguageCheck, add_language_metadata, run_languages
from xinst_assets.assets.transient import retry_transient
from xinst_assets.assets.reporting import counts_table, markdown_table
from xinst_assets.core.dedup import (
    KEPT,
    IndexStats,
    MinhashSigner,
    NearDuplicateIndex,
    band_hashes,
    band_key_lists,
    signature_matrix,
)
from xinst_assets.core.filtering import FilterSettings, process_second_opinion
from xinst_assets.core.pause_points import pause_point
from xinst_assets.core.progress import Progress
from xinst_assets.core.screening_files import ScreeningJob, available_cores, screen_files
from xinst_assets.core.text import stable_hash
from xinst_assets.languages import LanguageRegistry
from xinst_assets.resources.lid import LidModel
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.resources.warehouse import (
    Warehouse,
    copy_to_parquet,
    drop_primary_key,
    has_table,
    rows_by_id,
    sql_path,
    sync_partition,
)

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
# Staged Parquet files are read with pre_buffer=False: with pyarrow's default (True) the reader keeps every
# row group it has read until it is closed, so a streamed file would end up in memory whole.
# DuckDB memory for the near-dedup index: it spills to the scratch folder beyond this.
DEDUP_MEMORY_LIMIT = "1GB"
NEAR_DEDUP_PARALLEL = 4  # languages whose indexes are built at the same time (each within DEDUP_MEMORY_LIMIT)
# Up to this many documents (new and representatives), the index lives in memory (~50 MB at most): a
# refresh's index is small, and its database file would cost more than the work.
IN_MEMORY_MAX_DOCS = 50_000
PURITY_MIN = 0.95
# Web crawls keep roughly 10-60% of documents after LID, quality and dedup (FineWeb-2 reports similar ranges);
# a kept fraction outside these wide bounds usually means a wrong source folder or a broken threshold.
KEPT_FRACTION_BOUNDS = (0.02, 0.99)


class DocumentSignalsConfig(Config):
    """Run configuration of ``document_signals``."""

    workers: int = Field(default=0, description="Processes that screen documents (0: one per available core). A run "
                         "over several languages, or one large language, screens on all of them.")


def settings_key(settings: FilterSettings, lid_fingerprint: str, lid_threshold: float,
                 second_lid: str | None = None, confusable: tuple[str, ...] = ()) -> str:
    """Identifies everything that decides a document's LID/quality verdict; a change re-screens documents.
    ``second_lid``: the second-opinion model's fingerprint (None: none, fastText decides alone)."""
    described = {
        "quality": settings.quality.as_metadata(),
        "lid_policy": asdict(settings.lid_policy),
        "lid_model": lid_fingerprint,
        "lid_threshold": lid_threshold,
        "second_lid": second_lid,
        "lid_confusable": list(confusable),
        "minhash": settings.minhash.fingerprint,  # the stored signatures are valid for these settings only
    }
    return stable_hash(json.dumps(described, sort_keys=True, default=str))


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _export_pending(lang, key, warehouse, scratch: Path) -> tuple[Path, int, Path | None]:
    """Stage the documents of ``lang`` without a verdict under ``key`` (doc id, text, first timestamp); return
    the file, its row count, and a file of the ids whose verdicts are stored but whose documents are gone from
    raw_documents (None when there are none)."""
    pending, gone = scratch / "pending.parquet", scratch / "gone.parquet"
    # The ids first, then their texts: the join reads ids only, and the texts of the documents to screen alone
    # are read, by row id (the first copy of each), so a refresh does not read the language's texts. One full
    # join of the two id columns finds both sides: documents to screen and verdicts to drop.
    with warehouse.read() as con:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _pending AS
            WITH r AS (SELECT doc_id, min(rowid) AS first_row, min(timestamp) AS published_at
                       FROM raw_documents WHERE lang = ? GROUP BY doc_id),
                 s AS (SELECT doc_id, bool_or(settings_key = ?) AS current
                       FROM document_signals WHERE lang = ? GROUP BY doc_id)
            SELECT coalesce(r.doc_id, s.doc_id) AS doc_id, r.first_row, r.published_at, r.doc_id IS NULL AS gone
            FROM r FULL OUTER JOIN s ON s.doc_id = r.doc_id
            WHERE r.doc_id IS NULL OR s.doc_id IS NULL OR NOT s.current""", [lang.code, key, lang.code])
        texts = rows_by_id(con, "raw_documents", "text", "_pending", "first_row")
        count = copy_to_parquet(con, f"""
            SELECT t.doc_id, x.text, t.published_at FROM _pending t JOIN ({texts}) x ON x._row_id = t.first_row
            ORDER BY t.doc_id""", None, pending)
        gone_count = copy_to_parquet(con, "SELECT doc_id FROM _pending WHERE gone", None, gone)
        con.execute("DROP TABLE _pending")
    return pending, count, gone if gone_count else None


def _write_signals(lang, key, staged: Path, gone: Path | None, screened: int, warehouse) -> dict:
    """Store the new verdicts of ``lang`` in one transaction, dropping those of the ``gone`` documents (the
    export's, still without a raw row); return the language's metadata counts."""
    now = _now()
    with warehouse.write() as con:
        if gone is not None:
            con.execute(
                f"DELETE FROM document_signals s WHERE lang = ? AND doc_id IN (SELECT doc_id FROM "
                f"read_parquet('{sql_path(gone)}')) AND NOT EXISTS "
                "(SELECT 1 FROM raw_documents r WHERE r.lang = ? AND r.doc_id = s.doc_id)", [lang.code] * 2)
        (version,) = con.execute("SELECT coalesce(max(signals_version), 0) + 1 FROM document_signal_writes "
                                 "WHERE lang = ?", [lang.code]).fetchone()
        if screened:
            con.execute("INSERT INTO document_signal_writes VALUES (?, ?, ?, ?)", [lang.code, version, now, screened])
        # first_seen_at survives a re-screen.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _new_signals AS
            SELECT ? AS lang, n.doc_id, ? AS settings_key, n.lid_label, n.lid_score, n.lid_runner_up,
                   n.lid_runner_up_score, n.chars, n.words, n.reject_reason,
                   coalesce(old.first_seen_at, ?::TIMESTAMP) AS first_seen_at, n.minhash,
                   n.lid_second_label, n.lid_second_score, n.lid_decided_by, n.lid_english_share,
                   ?::BIGINT AS signals_version
            FROM read_parquet('{sql_path(staged)}') n
            LEFT JOIN document_signals old ON old.lang = ? AND old.doc_id = n.doc_id
        """, [lang.code, key, now, version, lang.code])
        con.execute("DELETE FROM document_signals WHERE lang = ? AND doc_id IN "
                    "(SELECT doc_id FROM _new_signals)", [lang.code])
        con.execute("INSERT INTO document_signals BY NAME SELECT * FROM _new_signals")
        con.execute("DROP TABLE _new_signals")
        total, rejected = con.execute(
            "SELECT count(*), count(reject_reason) FROM document_signals WHERE lang = ?", [lang.code]
        ).fetchone()
        by_reason = dict(con.execute(
            "SELECT reject_reason, count(*) FROM document_signals WHERE lang = ? "
            "AND reject_reason IS NOT NULL GROUP BY 1", [lang.code]).fetchall())
        pause_point("document_signals: before commit")  # a test's kill lands here (core/pause_points.py)
    return {
        "dagster/row_count": int(total),
        "documents_screened_this_run": screened,
        "documents_from_cache": int(total) - screened,
        "passed_lid_and_quality": int(total - rejected),
        "rejected": int(rejected),
        "rejected_by_reason": counts_table(by_reason),
    }


# The survivors of a language, as near-dedup reads them (alias s).
ALIVE = "FROM screened_documents s WHERE s.lang = ? AND s.reject_reason IS NULL"
SIGNATURE_BATCH = 5_000  # documents per batch into the index: bounded memory
# Up to this many new documents, a refresh clusters again only the components they reach (and those of changed
# or removed documents); beyond it, the whole language, as a first run does: most components would be reached.
PRUNE_MAX_NEW = 100_000


@dataclass
class _Changes:
    """What near-dedup must look at again in a language: dbt's screening logs the content ids each build
    computed again (screening_changes, see dbt/macros/screening.sql); a refresh reads the entries up to the
    latest build (``through``) and deletes them once applied. ``whole``: cluster the whole language, as a
    first run does (no log yet, a build of the whole language, no stored decision, or other settings)."""

    through: int | None = None
    whole: bool = True


def _read_changes(con, lang, decision_key: str) -> _Changes:
    """The language's entries in the change log, and whether they cover the whole language; in scoped mode
    the temp table ``_changed`` (doc_id) lists them."""
    if not has_table(con, "screening_changes"):
        return _Changes()
    through, whole = con.execute("SELECT max(build_seq), coalesce(bool_or(doc_id IS NULL), false) "
                                 "FROM screening_changes WHERE lang = ?", [lang.code]).fetchone()
    stored, other = con.execute("SELECT count(*), count(*) FILTER (WHERE config <> ?) FROM near_dedup_state "
                                "WHERE lang = ?", [decision_key, lang.code]).fetchone()
    changes = _Changes(through, bool(whole) or stored == 0 or other > 0)
    if not changes.whole:
        _list_changed(con, lang, changes)
    return changes


def _list_changed(con, lang, changes: _Changes) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _changed AS SELECT DISTINCT doc_id FROM screening_changes "
                "WHERE lang = ? AND build_seq <= ? AND doc_id IS NOT NULL", [lang.code, changes.through or 0])


@dataclass
class _NearDedupInput:
    """One language's staged near-dedup input: the documents to cluster. ``todo``: the new or changed ones
    (every survivor in a whole run); ``members``: in a refresh, the earlier documents of every component that
    those reach or that a changed or removed document was in (the clusters of the module core.dedup are
    decided per component, so these are all that can change)."""

    todo_file: Path
    todo: int
    changes: _Changes
    members_file: Path | None = None
    members: int = 0

    @property
    def documents(self) -> int:
        return self.todo + self.members


def _export_near_dedup(log, lang, settings, warehouse, scratch: Path) -> _NearDedupInput:
    """Stage this run's survivors to cluster and, in a refresh, the earlier documents of the components they
    reach (see :class:`_NearDedupInput`). One read window: the change log's temp table ``_changed`` serves
    every export. ``log``: where to say what it does (``.info``)."""
    config = settings.minhash
    members_file, todo_file = scratch / "members.parquet", scratch / "todo.parquet"
    with warehouse.read() as con:
        changes = _read_changes(con, lang, config.decision_key)
        todo = _export_todo(con, lang, changes, todo_file)
        if not changes.whole and not (todo <= PRUNE_MAX_NEW and _all_signed(todo_file)):
            changes = _Changes(changes.through, whole=True)  # so many new documents: the whole language
            todo = _export_todo(con, lang, changes, todo_file)
        members = 0 if changes.whole else _export_members(con, lang, config, todo_file, scratch, members_file)
    if todo + members == 0:
        log.info(f"{lang.code}: near-dedup: no new documents")
        return _NearDedupInput(todo_file, 0, changes)
    log.info(f"{lang.code}: near-dedup of {todo:,} new documents with the {members:,} earlier documents of the "
             "components they reach" if not changes.whole else
             f"{lang.code}: near-dedup of the whole language ({todo:,} documents)")
    return _NearDedupInput(todo_file, todo, changes, members_file if members else None, members)


def _export_todo(con, lang, changes: _Changes, todo_file: Path) -> int:
    """Stage the survivors to cluster (doc id, stored signature, the text of those without one, exact copies);
    return how many: every survivor in a whole run, those the change log lists in a refresh. The ids first;
    then the signatures of those documents by row id (a join on the doc id would read the signature column of
    the whole language, about 1 KB per document, for a night's few new ones), and texts only for documents
    screened before signatures were stored."""
    scope = "" if changes.whole else "AND s.doc_id IN (SELECT doc_id FROM _changed)"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _todo AS SELECT s.doc_id, s.exact_copies {ALIVE} {scope}",
                [lang.code])
    con.execute("CREATE OR REPLACE TEMP TABLE _todo_rows AS SELECT g.doc_id, g.rowid AS row_id "
                "FROM document_signals g WHERE g.lang = ? AND g.doc_id IN (SELECT doc_id FROM _todo)", [lang.code])
    signatures = rows_by_id(con, "document_signals", "minhash", "_todo_rows", "row_id")
    todo = copy_to_parquet(con, f"""
        WITH signed AS (
            SELECT t.doc_id, t.exact_copies, g.minhash FROM _todo t
            LEFT JOIN _todo_rows r ON r.doc_id = t.doc_id LEFT JOIN ({signatures}) g ON g._row_id = r.row_id)
        SELECT s.doc_id, s.minhash, x.text, s.exact_copies FROM signed s LEFT JOIN (
            SELECT doc_id, text FROM screened_documents
            WHERE lang = ? AND reject_reason IS NULL AND doc_id IN (SELECT doc_id FROM signed WHERE minhash IS NULL)
        ) x ON x.doc_id = s.doc_id
        ORDER BY s.doc_id""", [lang.code], todo_file)
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
        [lang.code, config.decision_key] * 2)
    members = copy_to_parquet(con, f"""
        SELECT n.doc_id, n.signature, s.exact_copies FROM near_dedup_state n
        JOIN (SELECT s.doc_id, s.exact_copies {ALIVE}) s ON s.doc_id = n.doc_id
        WHERE n.lang = ? AND n.config = ? AND n.component IN (SELECT component FROM _reached)
          AND n.doc_id NOT IN (SELECT doc_id FROM _changed)
        ORDER BY n.doc_id""", [lang.code, lang.code, config.decision_key], members_file)
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


def _text_reader(warehouse, lang):
    """Texts of survivors by doc id, for the index's exact similarity check (on the calling thread's warehouse
    session when it joined one)."""
    def read(doc_ids):
        with warehouse.read() as con:
            found = dict(con.execute(f"SELECT s.doc_id, s.text {ALIVE} AND s.doc_id IN (SELECT unnest(?::VARCHAR[]))",
                                     [lang.code, list(doc_ids)]).fetchall())
        return [found.get(doc_id) for doc_id in doc_ids]
    return read


@dataclass
class _Clustered:
    """One language's near-dedup result: the staged ``near_dedup_state`` rows and what the index compared."""

    state: Path
    stats: IndexStats


STATE_SCHEMA = pa.schema([("doc_id", pa.string()), ("keep", pa.bool_()), ("duplicate_of", pa.string()),
                          ("content_key", pa.string()), ("signature", pa.binary()),
                          ("band_keys", pa.list_(pa.uint64())), ("component", pa.string())])


def _near_dedup(lang, settings, staged: _NearDedupInput, threads: int | None, scratch: Path, warehouse,
                joined: contextlib.AbstractContextManager | None = None) -> _Clustered | None:
    """Cluster the staged documents (core.dedup's rule) with bounded memory: both files are streamed in batches
    into a :class:`NearDuplicateIndex` in ``scratch``, and its decisions are staged as the new
    ``near_dedup_state`` rows. Texts for the exact similarity check are read from the warehouse (``joined``: the
    step's session, joined by this thread). Returns none when there is nothing to cluster."""
    if staged.documents == 0:
        if joined is not None:
            with joined:  # (closes its connection)
                pass
        return None
    config = settings.minhash
    state = scratch / "state.parquet"
    empty = np.full(config.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    with contextlib.ExitStack() as stack:
        if joined is not None:
            stack.enter_context(joined)
        index = stack.enter_context(NearDuplicateIndex(
            config, scratch / "index", memory_limit=DEDUP_MEMORY_LIMIT, threads=threads,
            in_memory=staged.documents <= IN_MEMORY_MAX_DOCS, texts=_text_reader(warehouse, lang),
            script=lang.script))
        if staged.members_file is not None:
            for batch in pq.ParquetFile(staged.members_file, pre_buffer=False).iter_batches(batch_size=SIGNATURE_BATCH):
                matrix = signature_matrix(batch.column("signature"), config)[0]
                ids = batch.column("doc_id").to_pylist()
                index.add(ids, ids, matrix, ~(matrix == empty).all(axis=1), batch.column("exact_copies").to_numpy())
        for ids, signatures, shingled, copies in _todo_signatures(staged.todo_file, config, lang):
            # The doc id is the content id of the normalised text (raw_web_text), the exact-dedup key; exact
            # copies were removed by dbt, and count in the rank and the cluster size.
            index.add(ids, ids, signatures, shingled, copies)
        with pq.ParquetWriter(state, STATE_SCHEMA) as writer:
            for batch in index.results():
                keep = pc.equal(batch.column("kind"), KEPT)
                signatures = batch.column("signature")
                writer.write_table(pa.Table.from_arrays([
                    batch.column("doc_id"), keep, batch.column("duplicate_of"),
                    pc.if_else(keep, batch.column("content_key"), pa.scalar(None, pa.string())),
                    signatures, band_key_lists(signatures, config), batch.column("component"),
                ], schema=STATE_SCHEMA))
        return _Clustered(state, index.stats)


def _todo_signatures(todo_file: Path, config, lang):
    """Batches of (doc ids, signature matrix, has shingles, exact copies) of the documents to cluster."""
    signer = None
    empty = np.full(config.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    for batch in pq.ParquetFile(todo_file, pre_buffer=False).iter_batches(batch_size=SIGNATURE_BATCH):
        ids = batch.column("doc_id").to_pylist()
        signatures, stored = signature_matrix(batch.column("minhash"), config)
        shingled = np.ones(len(ids), dtype=bool)
        missing = np.flatnonzero(~stored).tolist()
        if missing:  # screened before signatures were stored with the signals: sign the text now
            signer = signer or MinhashSigner(config)
            texts = batch.column("text").to_pylist()
            matrix, has = signer.signatures([texts[i] for i in missing], lang.script)
            signatures[missing] = matrix
            shingled[missing] = has
        shingled &= ~(signatures == empty).all(axis=1)  # the signature of a text without shingles
        yield ids, signatures, shingled, batch.column("exact_copies").to_numpy()


def _all_signed(todo_file: Path) -> bool:
    """Whether every document to decide has its stored signature (not one screened before they were stored).
    Read from the file's column statistics when it has them, not from the signatures themselves."""
    metadata = pq.ParquetFile(todo_file).metadata
    column = metadata.schema.names.index("minhash")
    stats = [metadata.row_group(i).column(column).statistics for i in range(metadata.num_row_groups)]
    if all(s is not None and s.has_null_count for s in stats):
        return sum(s.null_count for s in stats) == 0
    return pq.read_table(todo_file, columns=["minhash"]).column("minhash").null_count == 0


def _write_filtered(lang, settings, staged: Path | None, changes: _Changes, warehouse, scratch: Path) -> dict:
    """Store the new near-dedup decisions of ``lang`` and sync its kept set and rejections to them, in one
    transaction, then delete the change-log entries applied; return the figures its metadata and checks
    report. In scoped mode (``changes``), only the documents the log lists and those clustered now (whole
    components: every representative that gains or loses members is among them) are compared and written."""
    key = settings.minhash.decision_key
    with warehouse.write() as con:  # (the step created and migrated the tables before its exports)
        scope = ""
        decided = f"SELECT doc_id FROM read_parquet('{sql_path(staged)}')" if staged else "SELECT NULL"
        if changes.whole:  # every survivor was clustered: the language's decisions are replaced
            con.execute("DELETE FROM near_dedup_state WHERE lang = ?", [lang.code])
        else:
            _list_changed(con, lang, changes)
            con.execute(f"CREATE OR REPLACE TEMP TABLE _affected AS SELECT doc_id FROM _changed UNION {decided}")
            scope = "AND {column} IN (SELECT doc_id FROM _affected)"
            # Listed documents that are gone, and those clustered again, lose their stored decisions.
            con.execute("DELETE FROM near_dedup_state WHERE lang = ? AND doc_id IN (SELECT doc_id FROM _affected)",
                        [lang.code])
        if staged is not None:
            con.execute(f"""
                INSERT INTO near_dedup_state BY NAME
                SELECT ? AS lang, doc_id, ? AS config, keep, duplicate_of, content_key, signature, band_keys,
                       component
                FROM read_parquet('{sql_path(staged)}')""", [lang.code, key])
        # Kept: the representative's own exact copies plus those of every near duplicate it absorbed.
        # Synced, not replaced: a refresh writes only the rows that change.
        # (Every table is filtered on the language explicitly: DuckDB does not carry a parameter's
        # filter across a join condition, and would scan every language.)
        sync_partition(con, "filtered_documents", lang.code, f"""
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
            WHERE s.lang = ? AND s.reject_reason IS NULL {scope.format(column="s.doc_id")}""", [lang.code] * 4,
            key=["doc_id"], by_row_id=("screened_documents", {"text": "text", "chars": "length(text)"}),
            scope=("doc_id", "SELECT doc_id FROM _affected") if scope else None)
        sync_partition(con, "filter_rejections", lang.code, f"""
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
            [lang.code] * 2, key=["doc_id", "shard", "position"], by_row_id=("screened_documents", {"text": "text"}),
            scope=("doc_id", "SELECT doc_id FROM _affected") if scope else None)
        if changes.through is not None:  # applied: the log's entries up to the build read go
            con.execute("DELETE FROM screening_changes WHERE lang = ? AND build_seq <= ?", [lang.code, changes.through])
        if scope:
            con.execute("DROP TABLE _affected")
        kept, clustered = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE cluster_size > 1) FROM filtered_documents "
            "WHERE lang = ?", [lang.code]).fetchone()
        by_reason = dict(con.execute(
            "SELECT reason, count(*) FROM filter_rejections WHERE lang = ? GROUP BY reason",
            [lang.code]).fetchall())
        purity, duplicated_ids, kept_marked_dup = con.execute("""
            SELECT avg(CASE WHEN s.lid_label = f.lang OR s.lid_second_label = f.lang THEN 1.0 ELSE 0.0 END),
                   count(*) - count(DISTINCT f.doc_id),
                   count(*) FILTER (WHERE r.doc_id IS NOT NULL)
            FROM filtered_documents f
            LEFT JOIN document_signals s ON s.lang = ? AND s.doc_id = f.doc_id
            LEFT JOIN (SELECT DISTINCT doc_id FROM filter_rejections
                       WHERE lang = ? AND reason LIKE 'dedup_near%') r ON r.doc_id = f.doc_id
            WHERE f.lang = ?""", [lang.code] * 3).fetchone()
        # Two examples per reason family; their texts read by row id, not every rejected text.
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _examples AS
            SELECT rowid AS r, reason, url FROM filter_rejections WHERE lang = ?
            QUALIFY row_number() OVER (PARTITION BY split_part(reason, ':', 1) ORDER BY doc_id) <= 2
            ORDER BY reason LIMIT 20""", [lang.code])
        texts = rows_by_id(con, "filter_rejections", "left(text, 100) AS text", "_examples", "r")
        examples = con.execute(f"SELECT p.reason, p.url, f.text FROM _examples p JOIN ({texts}) f ON f._row_id = p.r "
                               "ORDER BY p.reason, p.r").fetchall()
        con.execute("DROP TABLE _examples")
    return {"kept": kept, "clustered": clustered, "by_reason": by_reason, "purity": purity,
            "duplicated_ids": duplicated_ids, "kept_marked_dup": kept_marked_dup, "examples": examples}


def _write_in_order(joined: contextlib.AbstractContextManager, exported: queue.SimpleQueue, settings: dict,
                    warehouse, scratch: dict) -> list[tuple]:
    """The writer thread of ``language_filtered_text``: for each exported language, in order, wait for its
    index and store its decisions (one transaction each) on its connection of the step's session (``joined``,
    from ``HeldSession.for_thread``); return ``(lang, staged input, summary)`` of each. Stops at ``None``; an
    error stops it there (the languages before it stay stored)."""
    written = []
    with joined:
        while (item := exported.get()) is not None:
            lang, staged, index = item
            clustered = index.result()
            summary = _write_filtered(lang, settings[lang.code], clustered and clustered.state, staged.changes,
                                      warehouse, scratch[lang.code])
            summary["index"] = clustered.stats if clustered else IndexStats()
            written.append((lang, staged, summary))
    return written


def near_dedup_language(lang, settings: FilterSettings, warehouse, scratch: Path, log=None) -> dict:
    """Near-dedup of one language, the asset's own steps one after another (export, cluster, write) outside
    Dagster: for the accuracy bench and the tests. ``log``: a logger (``.info``); the tables must exist (dbt's
    ``screened_documents``, ``document_signals``). Returns the summary the asset reports, with ``staged``."""
    import logging

    with warehouse.write() as con:
        con.execute(FILTERED_DDL)
    staged = _export_near_dedup(log or logging.getLogger(__name__), lang, settings, warehouse, scratch)
    clustered = _near_dedup(lang, settings, staged, warehouse.threads, scratch, warehouse)
    summary = _write_filtered(lang, settings, clustered and clustered.state, staged.changes, warehouse, scratch)
    return {**summary, "index": clustered.stats if clustered else IndexStats(), "staged": staged}


def _report_filtered(context, lang, settings, summary: dict, staged: _NearDedupInput,
                     checks: list[LanguageCheck]) -> None:
    """Record the language's metadata on both assets and its outcome of each check."""
    kept, clustered, by_reason = summary["kept"], summary["clustered"], summary["by_reason"]
    purity, examples = summary["purity"], summary["examples"]
    duplicated_ids, kept_marked_dup = summary["duplicated_ids"], summary["kept_marked_dup"]
    rejected = sum(by_reason.values())
    fraction = kept / (kept + rejected) if kept + rejected else None
    add_language_metadata(context, lang.code, {
        "dagster/row_count": int(rejected),
        "rejected_by_reason": counts_table(by_reason),
        "rejection_examples": markdown_table(examples, ["reason", "url", "text"]),
    }, asset_key="filter_rejections")
    add_language_metadata(context, lang.code, {
        "dagster/row_count": int(kept),
        "kept": int(kept),
        "rejected": int(rejected),
        "kept_fraction": round(fraction, 4) if fraction is not None else 0.0,
        "kept_with_duplicates": int(clustered),
        "near_dedup_candidates_this_run": staged.todo,
        "earlier_documents_clustered_again_this_run": staged.members,
        "near_pairs_this_run": summary["index"].near_pairs,
        "exact_similarity_checks_this_run": summary["index"].exact_checks,
        "rejected_by_reason": counts_table(by_reason),
        "rejection_examples": markdown_table(examples, ["reason", "url", "text"]),
        "minhash": MetadataValue.json({**asdict(settings.minhash), "threshold": round(settings.minhash.threshold, 3),
                                       "decision_key": settings.minhash.decision_key}),
    }, asset_key="language_filtered_text")
    purity_check, duplicates_check, fraction_check = checks
    purity_check.add(lang.code, kept == 0 or (purity or 0) >= PURITY_MIN,
                     {"purity": round(float(purity or 0), 4), "kept": int(kept)})
    duplicates_check.add(lang.code, duplicated_ids == 0 and kept_marked_dup == 0,
                         {"duplicated_ids": int(duplicated_ids), "kept_but_marked_duplicate": int(kept_marked_dup)})
    fraction_check.add(lang.code, fraction is None or KEPT_FRACTION_BOUNDS[0] <= fraction <= KEPT_FRACTION_BOUNDS[1],
                       {"kept_fraction": round(fraction, 4) if fraction is not None else "no documents"})



def build_filtering_assets(partitions_def: PartitionsDefinition, registry: LanguageRegistry) -> list:
    """``document_signals`` and ``language_filtered_text`` with their asset checks."""

    @asset(
        name="document_signals",
        partitions_def=partitions_def,
        deps=["raw_web_text"],
        group_name="filtering",
        kinds={"python", "fasttext", "duckdb"},
        owners=["team:data"],
        description=(
            "fastText language ID (language, score, runner-up) and Gopher/FineWeb-style quality verdict per "
            "document, cached by content id and settings: a refresh only screens new documents. "
            "Table: document_signals."
        ),
    )
    def document_signals(
        context: AssetExecutionContext, config: DocumentSignalsConfig, warehouse: Warehouse, lid_model: LidModel,
        storage: XinstStorage,
    ) -> MaterializeResult:
        langs = run_languages(context, registry)
        identifier = lid_model.identifier(registry)
        settings = {lang.code: FilterSettings.for_language(lang) for lang in langs}
        second = process_second_opinion()
        second_lid = second.fingerprint if second is not None else None
        keys = {lang.code: settings_key(settings[lang.code], lid_model.fingerprint(), lang.lid_threshold,
                                        second_lid if settings[lang.code].lid_policy.second_opinion else None,
                                        lang.lid_confusable)
                for lang in langs}
        with retry_transient(context), contextlib.ExitStack() as scratches:
            scratch = {lang.code: scratches.enter_context(storage.scratch_dir(f"signals-{lang.code}"))
                       for lang in langs}
            jobs, counts, gone = [], {}, {}
            with warehouse.session():  # the exports of every language, one connection
                with warehouse.write() as con:
                    con.execute(SIGNALS_DDL)
                    drop_primary_key(con, "document_signals")
                for lang in langs:
                    pending, counts[lang.code], gone[lang.code] = _export_pending(
                        lang, keys[lang.code], warehouse, scratch[lang.code])
                    jobs.append(ScreeningJob(lang, settings[lang.code], pending, scratch[lang.code] / "signals.parquet"))
            workers = config.workers or available_cores()
            progress = Progress(f"document_signals:{','.join(context.partition_keys)}", sum(counts.values()),
                                context.log.info, unit="docs")
            screen_files(jobs, identifier, registry, workers, on_rows=progress.advance)
            progress.finish()
            pause_point("document_signals: screened, before writing")
            with warehouse.session():  # the writes of every language, one transaction each
                for lang, job in zip(langs, jobs):
                    metadata = _write_signals(lang, keys[lang.code], job.out, gone[lang.code], counts[lang.code],
                                              warehouse)
                    add_language_metadata(context, lang.code, {
                        **metadata,
                        "lid_model": lid_model.fingerprint(),
                        "lid_threshold": lang.lid_threshold,
                        "second_lid": second_lid or "none (fastText alone)",
                        "lid_confusable": ", ".join(lang.lid_confusable) or "none",
                        "calibrated": lang.calibration is not None,
                        "quality_thresholds": MetadataValue.json(settings[lang.code].quality.as_metadata()),
                        "settings_key": keys[lang.code],
                    })
        return MaterializeResult()

    @multi_asset(
        name="language_filtered_text_step",
        partitions_def=partitions_def,
        specs=[
            AssetSpec(
                "language_filtered_text",
                deps=[AssetKey("screened_documents")],
                group_name="filtering",
                kinds={"python", "duckdb"},
                owners=["team:data"],
                description=(
                    "Documents of one language that passed language ID and quality filters, after exact and "
                    "MinHash near-duplicate removal (global within the language, incremental across refreshes), "
                    "each with its duplicate-cluster size. Table: filtered_documents."
                ),
            ),
            AssetSpec(
                "filter_rejections",
                deps=[AssetKey("screened_documents")],
                group_name="filtering",
                kinds={"duckdb"},
                owners=["team:data"],
                description="The audit trail: every rejected document of the language with its reason. "
                "Table: filter_rejections.",
            ),
        ],
        check_specs=[
            AssetCheckSpec("language_purity", asset="language_filtered_text",
                           description=f"At least {PURITY_MIN:.0%} of kept documents have the partition's "
                           "language as fastText's top label or as the second-opinion model's choice."),
            AssetCheckSpec("no_duplicates_kept", asset="language_filtered_text", blocking=True,
                           description="No content id is kept twice and no kept document is marked a duplicate."),
            AssetCheckSpec("kept_fraction_in_bounds", asset="language_filtered_text",
                           description=f"The kept fraction lies within {KEPT_FRACTION_BOUNDS}: outside it, "
                           "thresholds or sources are probably wrong."),
        ],
    )
    def language_filtered_text(
        context: AssetExecutionContext, warehouse: Warehouse, storage: XinstStorage
    ):
        langs = run_languages(context, registry)
        settings = {lang.code: FilterSettings.for_language(lang) for lang in langs}
        checks = [LanguageCheck("language_purity", "language_filtered_text", AssetCheckSeverity.WARN),
                  LanguageCheck("no_duplicates_kept", "language_filtered_text"),
                  LanguageCheck("kept_fraction_in_bounds", "language_filtered_text", AssetCheckSeverity.WARN)]
        with retry_transient(context), contextlib.ExitStack() as scratches:
            scratch = {lang.code: scratches.enter_context(storage.scratch_dir(f"filtered-{lang.code}"))
                       for lang in langs}
            # Each language's index is its own scratch database (DuckDB works outside the GIL), a few at a
            # time, started as soon as the language is exported. A writer thread stores each language's
            # decisions as soon as its index is done, on its own connection of the same session: the warehouse
            # exports the next languages, the indexes are built and the earlier ones are stored all at once.
            with contextlib.ExitStack() as stack:
                pool = stack.enter_context(ThreadPoolExecutor(
                    max_workers=min(len(langs), NEAR_DEDUP_PARALLEL, available_cores())))
                held = stack.enter_context(warehouse.session())
                with warehouse.write() as con:
                    con.execute(FILTERED_DDL)
                    for table in ("near_dedup_state", "filtered_documents"):
                        drop_primary_key(con, table)
                exported: queue.SimpleQueue = queue.SimpleQueue()
                writer = stack.enter_context(ThreadPoolExecutor(max_workers=1)).submit(
                    _write_in_order, held.for_thread(), exported, settings, warehouse, scratch)
                try:
                    for lang in langs:
                        if writer.done():  # it failed: the error is raised below
                            break
                        staged = _export_near_dedup(context.log, lang, settings[lang.code], warehouse,
                                                    scratch[lang.code])
                        # (the index thread joins the session to read texts for its exact similarity check)
                        exported.put((lang, staged, pool.submit(_near_dedup, lang, settings[lang.code], staged,
                                                                 warehouse.threads, scratch[lang.code], warehouse,
                                                                 held.for_thread())))
                finally:
                    exported.put(None)
                written = writer.result()
            for lang, staged, summary in written:
                _report_filtered(context, lang, settings[lang.code], summary, staged, checks)
        yield MaterializeResult(asset_key="filter_rejections")
        yield MaterializeResult(asset_key="language_filtered_text")
        for check in checks:
            yield check.result()

    return [document_signals, language_filtered_text]
