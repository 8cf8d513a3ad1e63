"""Stage 2: language-filtered text.

``document_signals`` runs fastText LID and the quality heuristics on each new document (cached by content id
and settings) and stores the MinHash signature of each survivor, computed from the same words; dbt's
``screened_documents`` joins them with the raw rows and removes exact duplicates, and
``language_filtered_text`` removes near duplicates with MinHash LSH, globally within the language and across
nightly refreshes, writing the kept set and the audit trail of every rejected document. Its LSH index is a
DuckDB scratch database fed from staged Parquet files (``NearDuplicateIndex``), so neither stage holds a
language's documents in memory.
"""

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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
    asset,
    multi_asset,
)

from xinst_assets.assets.transient import retry_transient
from xinst_assets.assets.reporting import counts_table, markdown_table
from xinst_assets.core.dedup import (
    MinhashSigner,
    NearDuplicateIndex,
    REGIVEN,
    signature_matrix,
    signature_to_bytes,
)
from xinst_assets.core.filtering import Document, DocumentScreener, FilterSettings
from xinst_assets.core.progress import Progress
from xinst_assets.core.text import stable_hash
from xinst_assets.languages import LanguageRegistry
from xinst_assets.resources.lid import LidModel
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.resources.warehouse import Warehouse, drop_primary_key, sql_path, sync_partition

# The per-document tables have no PRIMARY KEY on purpose (see warehouse.drop_primary_key): a refresh would
# pay for rewriting the key index of every language. (lang, doc_id) is unique by construction: rows are
# deleted before they are written again, and the no_duplicates_kept check watches the kept set.
SIGNALS_DDL = """
CREATE TABLE IF NOT EXISTS document_signals (
    lang VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, settings_key VARCHAR NOT NULL,
    lid_label VARCHAR, lid_score DOUBLE, lid_runner_up VARCHAR, lid_runner_up_score DOUBLE,
    chars BIGINT, words BIGINT, reject_reason VARCHAR, first_seen_at TIMESTAMP NOT NULL,
    minhash BLOB
);
-- Warehouses from before signatures were stored with the signals (their settings key changes too, so every
-- document is screened again and gets one).
ALTER TABLE document_signals ADD COLUMN IF NOT EXISTS minhash BLOB;
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
"""
BATCH_DOCS = 2_000
# Staged Parquet files are read with pre_buffer=False: with pyarrow's default (True) the reader keeps every
# row group it has read until it is closed, so a streamed file would end up in memory whole.
# DuckDB memory for the near-dedup index: it spills to the scratch folder beyond this.
DEDUP_MEMORY_LIMIT = "1GB"
PURITY_MIN = 0.95
# Web crawls keep roughly 10-60% of documents after LID, quality and dedup (FineWeb-2 reports similar ranges);
# a kept fraction outside these wide bounds usually means a wrong source folder or a broken threshold.
KEPT_FRACTION_BOUNDS = (0.02, 0.99)


def settings_key(settings: FilterSettings, lid_fingerprint: str, lid_threshold: float) -> str:
    """Identifies everything that decides a document's LID/quality verdict; a change re-screens documents."""
    described = {
        "quality": settings.quality.as_metadata(),
        "lid_policy": asdict(settings.lid_policy),
        "lid_model": lid_fingerprint,
        "lid_threshold": lid_threshold,
        "minhash": settings.minhash.fingerprint,  # the stored signatures are valid for these settings only
    }
    return stable_hash(json.dumps(described, sort_keys=True, default=str))


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _screen_new_documents(context, lang, identifier, settings, key, warehouse, scratch: Path):
    """LID + quality (+ survivors' MinHash) for documents without a verdict under ``key``: (staged file, count)."""
    pending = scratch / "pending.parquet"
    # The ids to screen first, then their texts: the anti-join reads ids only, and a refresh with nothing new
    # never touches the language's texts.
    query = """
        WITH todo AS (
            SELECT DISTINCT doc_id FROM raw_documents r
            WHERE lang = ? AND NOT EXISTS (
                SELECT 1 FROM document_signals s WHERE s.lang = ? AND s.doc_id = r.doc_id AND s.settings_key = ?))
        SELECT doc_id, any_value(text) AS text, min(timestamp) AS published_at
        FROM raw_documents
        WHERE lang = ? AND doc_id IN (SELECT doc_id FROM todo)
        GROUP BY doc_id ORDER BY doc_id
    """
    total = warehouse.export_partition(query, [lang.code, lang.code, key, lang.code], pending)
    out = scratch / "signals.parquet"
    schema = pa.schema([("doc_id", pa.string()), ("lid_label", pa.string()), ("lid_score", pa.float64()),
                        ("lid_runner_up", pa.string()), ("lid_runner_up_score", pa.float64()),
                        ("chars", pa.int64()), ("words", pa.int64()), ("reject_reason", pa.string()),
                        ("minhash", pa.binary())])
    progress = Progress(f"document_signals:{lang.code}", total, context.log.info, unit="docs")
    screener = DocumentScreener(lang, identifier, settings)
    with pq.ParquetWriter(out, schema) as writer:
        for batch in pq.ParquetFile(pending, pre_buffer=False).iter_batches(batch_size=BATCH_DOCS):
            rows = batch.to_pylist()
            docs = [Document(r["doc_id"], r["text"], published_at=r["published_at"]) for r in rows]
            screened = screener.screen(docs)
            minhash: list[bytes | None] = [None] * len(docs)
            for i, signature in zip(screened.kept.tolist(), screened.signatures):
                minhash[i] = signature_to_bytes(signature)
            writer.write_table(pa.Table.from_pylist(
                [{"doc_id": d.doc_id, "lid_label": d.lid_lang, "lid_score": d.lid_score,
                  "lid_runner_up": d.lid_runner_up, "lid_runner_up_score": d.lid_runner_up_score,
                  "chars": d.chars, "words": d.words, "reject_reason": d.reason, "minhash": m}
                 for d, m in zip(screened.decisions, minhash)],
                schema=schema,
            ))
            progress.advance(len(rows))
    progress.finish()
    return out, total


# The order in which near-dedup visits documents: first seen, then published, then doc id (timestamps are
# ISO 8601 strings; missing ones last), as core.dedup orders candidates.
VISIT_ORDER = "CAST(s.first_seen_at AS VARCHAR) NULLS LAST, s.timestamp NULLS LAST, s.doc_id"
SIGNATURE_BATCH = 5_000  # documents per batch into the index: bounded memory
# Up to this many new documents, a refresh reads and indexes only the earlier representatives that could be
# their candidates; beyond it, all of them (as a first run does): most of them would share a band anyway.
PRUNE_MAX_NEW = 100_000


def _near_dedup(context, lang, settings, warehouse, scratch: Path) -> tuple[Path | None, int, int]:
    """Near-dedup of this run's survivors against the representatives kept earlier, with bounded memory.

    Both sides are staged to Parquet under the shared lock (ordered by DuckDB), then streamed in batches into
    a :class:`NearDuplicateIndex` in ``scratch``; its decisions are staged as the new ``near_dedup_state``
    rows. Returns (staged state file, new documents, earlier representatives indexed); no file when there is
    nothing to decide.
    """
    config = settings.minhash
    alive = "FROM screened_documents s WHERE s.lang = ? AND s.reject_reason IS NULL"
    previous_file, todo_file = scratch / "previous.parquet", scratch / "todo.parquet"
    # Representatives from earlier runs that are still here keep their place; duplicates whose
    # representative is gone are decided again, so no document is lost with a vanished original.
    # The ids first; then the signatures of those documents only, and texts only for documents without one
    # (screened before signatures were stored): a refresh does not read every signature and text.
    todo = warehouse.export_partition(f"""
        WITH todo AS (
            SELECT s.doc_id, s.first_seen_at, s.timestamp {alive}
              AND NOT EXISTS (
                SELECT 1 FROM near_dedup_state n WHERE n.lang = ? AND n.doc_id = s.doc_id AND n.config = ?
                  AND (n.keep OR n.duplicate_of IN (SELECT doc_id {alive})))),
        signed AS (
            SELECT t.*, g.minhash FROM todo t LEFT JOIN (
                SELECT doc_id, minhash FROM document_signals
                WHERE lang = ? AND doc_id IN (SELECT doc_id FROM todo)) g ON g.doc_id = t.doc_id)
        SELECT s.doc_id, s.minhash, x.text FROM signed s LEFT JOIN (
            SELECT doc_id, text FROM screened_documents
            WHERE lang = ? AND reject_reason IS NULL AND doc_id IN (SELECT doc_id FROM signed WHERE minhash IS NULL)
        ) x ON x.doc_id = s.doc_id
        ORDER BY {VISIT_ORDER}""", [lang.code, lang.code, config.fingerprint, lang.code, lang.code, lang.code],
        todo_file)
    if todo == 0:  # nothing new or orphaned: the stored decisions stand, no index to build
        context.log.info(f"{lang.code}: near-dedup: no new documents")
        return None, 0, 0
    # A refresh adds few documents to many representatives: only those that share an LSH band (or the content
    # id) with a new document can be a candidate, so the others are not even read. DuckDB compares the bands
    # as slices of the stored signatures (a hash collision only lets an extra one through), so the decisions
    # are exactly those made with every representative indexed.
    prune = 0 < todo <= PRUNE_MAX_NEW and _all_signed(todo_file)
    band_bytes = config.rows_per_band * 8
    representatives = f"""
        SELECT n.doc_id, n.content_key, n.signature, s.first_seen_at, s.timestamp
        {alive.replace("WHERE", "JOIN near_dedup_state n ON n.lang = ? AND n.doc_id = s.doc_id WHERE")}
          AND n.config = ? AND n.keep"""
    reachable = f"""
        WITH todo AS (SELECT doc_id, minhash FROM read_parquet('{sql_path(todo_file)}')),
        todo_bands AS (
            SELECT DISTINCT b.band, hash(t.minhash[b.band * {band_bytes} + 1 : (b.band + 1) * {band_bytes}]) AS k
            FROM todo t CROSS JOIN range({config.num_bands}) b(band)),
        reps AS ({representatives})
        SELECT * FROM reps r WHERE r.content_key IN (SELECT doc_id FROM todo) OR r.doc_id IN (
            SELECT r2.doc_id FROM reps r2 CROSS JOIN range({config.num_bands}) b(band)
            SEMI JOIN todo_bands t ON t.band = b.band
                 AND t.k = hash(r2.signature[b.band * {band_bytes} + 1 : (b.band + 1) * {band_bytes}]))"""
    previous = warehouse.export_partition(f"""
        SELECT doc_id, content_key, signature FROM ({reachable if prune else representatives}) s
        ORDER BY {VISIT_ORDER}""", [lang.code] * 2 + [config.fingerprint], previous_file)
    reached = " that share a band with one of them" if prune else ""
    context.log.info(f"{lang.code}: near-dedup of {todo:,} new documents against the {previous:,} "
                     f"representatives kept earlier{reached}")
    state = scratch / "state.parquet"
    state_schema = pa.schema([("doc_id", pa.string()), ("keep", pa.bool_()), ("duplicate_of", pa.string()),
                              ("content_key", pa.string()), ("signature", pa.binary())])
    with NearDuplicateIndex(config, scratch / "index", memory_limit=DEDUP_MEMORY_LIMIT,
                            threads=warehouse.threads) as index:
        for batch in pq.ParquetFile(previous_file, pre_buffer=False).iter_batches(batch_size=SIGNATURE_BATCH):
            matrix = signature_matrix(batch.column("signature"), config)[0]
            ids = batch.column("doc_id").to_pylist()
            index.add_previous(ids, batch.column("content_key").to_pylist(), matrix, [1] * len(ids))
        for ids, signatures, shingled in _todo_signatures(todo_file, config, lang):
            # The doc id is the content id of the normalised text (raw_web_text), the exact-dedup key.
            index.add(ids, ids, signatures, shingled)
        with pq.ParquetWriter(state, state_schema) as writer:
            for batch in index.results():
                kind = batch.column("kind").to_pylist()
                new = [k != REGIVEN for k in kind]  # a stored representative seen again: unchanged
                keep = [k == "kept" for k in kind]
                writer.write_table(pa.Table.from_arrays([
                    batch.column("doc_id"), pa.array(keep), batch.column("duplicate_of"),
                    pa.array([c if k else None for c, k in zip(batch.column("content_key").to_pylist(), keep)],
                             pa.string()),
                    pa.array([b if k else None for b, k in zip(batch.column("signature").to_pylist(), keep)],
                             pa.binary()),
                ], schema=state_schema).filter(pa.array(new)))
    return state, todo, previous


def _todo_signatures(todo_file: Path, config, lang):
    """Batches of (doc ids, signature matrix, has shingles) of the documents to decide, in visiting order."""
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
        yield ids, signatures, shingled


def _all_signed(todo_file: Path) -> bool:
    """Whether every document to decide has its stored signature (not one screened before they were stored).
    Read from the file's column statistics when it has them, not from the signatures themselves."""
    metadata = pq.ParquetFile(todo_file).metadata
    column = metadata.schema.names.index("minhash")
    stats = [metadata.row_group(i).column(column).statistics for i in range(metadata.num_row_groups)]
    if all(s is not None and s.has_null_count for s in stats):
        return sum(s.null_count for s in stats) == 0
    return pq.read_table(todo_file, columns=["minhash"]).column("minhash").null_count == 0


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
        context: AssetExecutionContext, warehouse: Warehouse, lid_model: LidModel, storage: XinstStorage
    ) -> MaterializeResult:
        lang = registry.get(context.partition_key)
        settings = FilterSettings.for_language(lang)
        key = settings_key(settings, lid_model.fingerprint(), lang.lid_threshold)
        identifier = lid_model.identifier(registry)
        with retry_transient(context), warehouse.write() as con:
            con.execute(SIGNALS_DDL)
            drop_primary_key(con, "document_signals")
        with retry_transient(context), storage.scratch_dir(f"signals-{lang.code}") as scratch:
            staged, screened = _screen_new_documents(context, lang, identifier, settings, key, warehouse, scratch)
            now = _now()
            with warehouse.write() as con:
                con.execute(SIGNALS_DDL)
                # Verdicts of documents gone from raw_documents go too; first_seen_at survives a re-screen.
                con.execute(
                    "DELETE FROM document_signals s WHERE lang = ? AND NOT EXISTS "
                    "(SELECT 1 FROM raw_documents r WHERE r.lang = ? AND r.doc_id = s.doc_id)", [lang.code] * 2)
                con.execute(f"""
                    CREATE OR REPLACE TEMP TABLE _new_signals AS
                    SELECT ? AS lang, n.doc_id, ? AS settings_key, n.lid_label, n.lid_score, n.lid_runner_up,
                           n.lid_runner_up_score, n.chars, n.words, n.reject_reason,
                           coalesce(old.first_seen_at, ?::TIMESTAMP) AS first_seen_at, n.minhash
                    FROM read_parquet('{sql_path(staged)}') n
                    LEFT JOIN document_signals old ON old.lang = ? AND old.doc_id = n.doc_id
                """, [lang.code, key, now, lang.code])
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
        return MaterializeResult(metadata={
            "dagster/row_count": int(total),
            "documents_screened_this_run": screened,
            "documents_from_cache": int(total) - screened,
            "passed_lid_and_quality": int(total - rejected),
            "rejected": int(rejected),
            "rejected_by_reason": counts_table(by_reason),
            "lid_model": lid_model.fingerprint(),
            "lid_threshold": lang.lid_threshold,
            "quality_thresholds": MetadataValue.json(settings.quality.as_metadata()),
            "settings_key": key,
        })

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
                           "language as fastText's top label."),
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
        lang = registry.get(context.partition_key)
        settings = FilterSettings.for_language(lang)
        config = settings.minhash.fingerprint
        with retry_transient(context), warehouse.write() as con:
            con.execute(FILTERED_DDL)
            for table in ("near_dedup_state", "filtered_documents"):
                drop_primary_key(con, table)
        with retry_transient(context), storage.scratch_dir(f"filtered-{lang.code}") as scratch:
            staged, new_docs, indexed = _near_dedup(context, lang, settings, warehouse, scratch)
            with warehouse.write() as con:
                con.execute(FILTERED_DDL)
                con.execute(
                    "DELETE FROM near_dedup_state n WHERE lang = ? AND (config <> ? OR NOT EXISTS (SELECT 1 FROM "
                    "screened_documents s WHERE s.lang = ? AND s.doc_id = n.doc_id AND s.reject_reason IS NULL))",
                    [lang.code, config, lang.code])
                if staged is not None:  # the new decisions replace the stored ones of the same documents
                    con.execute(f"DELETE FROM near_dedup_state WHERE lang = ? AND doc_id IN "
                                f"(SELECT doc_id FROM read_parquet('{sql_path(staged)}'))", [lang.code])
                    con.execute(f"""
                        INSERT INTO near_dedup_state
                        SELECT ? AS lang, doc_id, ? AS config, keep, duplicate_of, content_key, signature
                        FROM read_parquet('{sql_path(staged)}')""", [lang.code, config])
                # Kept: the representative's own exact copies plus those of every near duplicate it absorbed.
                # Synced, not replaced: a refresh writes only the rows that change.
                # (Every table is filtered on the language explicitly: DuckDB does not carry a parameter's
                # filter across a join condition, and would scan every language.)
                sync_partition(con, "filtered_documents", lang.code, """
                    WITH absorbed AS (
                        SELECT n.duplicate_of AS doc_id, sum(d.exact_copies) AS copies
                        FROM near_dedup_state n
                        JOIN screened_documents d ON d.lang = ? AND d.doc_id = n.doc_id AND d.reject_reason IS NULL
                        WHERE n.lang = ? AND NOT n.keep
                        GROUP BY n.duplicate_of)
                    SELECT s.lang, s.doc_id, s.text, s.url, s.timestamp, s.source, s.lid_score, s.lid_runner_up,
                           s.exact_copies + coalesce(a.copies, 0) AS cluster_size
                    FROM screened_documents s
                    JOIN near_dedup_state k ON k.lang = ? AND k.doc_id = s.doc_id AND k.keep
                    LEFT JOIN absorbed a ON a.doc_id = s.doc_id
                    WHERE s.lang = ? AND s.reject_reason IS NULL""", [lang.code] * 4, key=["doc_id"])
                sync_partition(con, "filter_rejections", lang.code, """
                    SELECT s.lang, s.doc_id, s.shard, s.position, s.url,
                           coalesce(s.reject_reason, 'dedup_near_duplicate') AS reason,
                           CASE WHEN s.reject_reason = 'dedup_exact_duplicate' THEN s.doc_id
                                ELSE n.duplicate_of END AS duplicate_of,
                           s.lid_label, s.lid_score, s.text
                    FROM screened_documents s
                    LEFT JOIN near_dedup_state n ON n.lang = ? AND n.doc_id = s.doc_id
                    WHERE s.lang = ? AND (s.reject_reason IS NOT NULL OR NOT n.keep)""", [lang.code] * 2,
                    key=["doc_id", "shard", "position"])
                kept, clustered = con.execute(
                    "SELECT count(*), count(*) FILTER (WHERE cluster_size > 1) FROM filtered_documents "
                    "WHERE lang = ?", [lang.code]).fetchone()
                by_reason = dict(con.execute(
                    "SELECT reason, count(*) FROM filter_rejections WHERE lang = ? GROUP BY reason",
                    [lang.code]).fetchall())
                purity, duplicated_ids, kept_marked_dup = con.execute("""
                    SELECT avg(CASE WHEN s.lid_label = f.lang THEN 1.0 ELSE 0.0 END),
                           count(*) - count(DISTINCT f.doc_id),
                           count(*) FILTER (WHERE r.doc_id IS NOT NULL)
                    FROM filtered_documents f
                    LEFT JOIN document_signals s ON s.lang = ? AND s.doc_id = f.doc_id
                    LEFT JOIN (SELECT DISTINCT doc_id FROM filter_rejections
                               WHERE lang = ? AND reason LIKE 'dedup_near%') r ON r.doc_id = f.doc_id
                    WHERE f.lang = ?""", [lang.code] * 3).fetchone()
                examples = con.execute(
                    "SELECT reason, url, left(text, 100) FROM filter_rejections WHERE lang = ? "
                    "QUALIFY row_number() OVER (PARTITION BY split_part(reason, ':', 1) ORDER BY doc_id) <= 2 "
                    "ORDER BY reason LIMIT 20", [lang.code]).fetchall()
        rejected = sum(by_reason.values())
        fraction = kept / (kept + rejected) if kept + rejected else None
        yield MaterializeResult(asset_key="filter_rejections", metadata={
            "dagster/row_count": int(rejected),
            "rejected_by_reason": counts_table(by_reason),
            "rejection_examples": markdown_table(examples, ["reason", "url", "text"]),
        })
        yield MaterializeResult(asset_key="language_filtered_text", metadata={
            "dagster/row_count": int(kept),
            "kept": int(kept),
            "rejected": int(rejected),
            "kept_fraction": round(fraction, 4) if fraction is not None else 0.0,
            "kept_with_duplicates": int(clustered),
            "near_dedup_candidates_this_run": new_docs,
            "earlier_representatives_indexed_this_run": indexed,
            "rejected_by_reason": counts_table(by_reason),
            "rejection_examples": markdown_table(examples, ["reason", "url", "text"]),
            "minhash": MetadataValue.json({**asdict(settings.minhash), "threshold": round(settings.minhash.threshold, 3)}),
        })
        yield AssetCheckResult(
            check_name="language_purity", asset_key="language_filtered_text",
            passed=bool(kept == 0 or (purity or 0) >= PURITY_MIN), severity=AssetCheckSeverity.WARN,
            metadata={"purity": round(float(purity or 0), 4), "kept": int(kept)},
        )
        yield AssetCheckResult(
            check_name="no_duplicates_kept", asset_key="language_filtered_text",
            passed=bool(duplicated_ids == 0 and kept_marked_dup == 0),
            metadata={"duplicated_ids": int(duplicated_ids), "kept_but_marked_duplicate": int(kept_marked_dup)},
        )
        yield AssetCheckResult(
            check_name="kept_fraction_in_bounds", asset_key="language_filtered_text",
            passed=fraction is None or KEPT_FRACTION_BOUNDS[0] <= fraction <= KEPT_FRACTION_BOUNDS[1],
            severity=AssetCheckSeverity.WARN,
            metadata={"kept_fraction": round(fraction, 4) if fraction is not None else "no documents"},
        )

    return [document_signals, language_filtered_text]
