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
from xinst_assets.store import Store
from xinst_assets.store.near_dedup import (
    SIGNATURE_BATCH,
    NearDedupInput,
    create_filtered_tables,
    export_near_dedup,
    text_reader,
    write_filtered,
)
from xinst_assets.store.resource import backend_of
from xinst_assets.store.signals import SignalTotals, create_signal_tables, export_pending, write_signals

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


def _signals_metadata(totals: SignalTotals, screened: int) -> dict:
    """A language's document_signals metadata counts."""
    return {
        "dagster/row_count": totals.documents,
        "documents_screened_this_run": screened,
        "documents_from_cache": totals.documents - screened,
        "passed_lid_and_quality": totals.documents - totals.rejected,
        "rejected": totals.rejected,
        "rejected_by_reason": counts_table(totals.rejected_by_reason),
    }


@dataclass
class _Clustered:
    """One language's near-dedup result: the staged ``near_dedup_state`` rows and what the index compared."""

    state: Path
    stats: IndexStats


STATE_SCHEMA = pa.schema([("doc_id", pa.string()), ("keep", pa.bool_()), ("duplicate_of", pa.string()),
                          ("content_key", pa.string()), ("signature", pa.binary()),
                          ("band_keys", pa.list_(pa.uint64())), ("component", pa.string())])


def _near_dedup(lang, settings, staged: NearDedupInput, threads: int | None, scratch: Path, warehouse,
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
            in_memory=staged.documents <= IN_MEMORY_MAX_DOCS, texts=text_reader(warehouse, lang.code),
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


def _write_in_order(joined: contextlib.AbstractContextManager, exported: queue.SimpleQueue, settings: dict,
                    warehouse) -> list[tuple]:
    """The writer thread of ``language_filtered_text``: for each exported language, in order, wait for its
    index and store its decisions (one transaction each) on its connection of the step's session (``joined``,
    from ``HeldSession.for_thread``); return ``(lang, staged input, summary)`` of each. Stops at ``None``; an
    error stops it there (the languages before it stay stored)."""
    written = []
    with joined:
        while (item := exported.get()) is not None:
            lang, staged, index = item
            clustered = index.result()
            summary = write_filtered(warehouse, lang.code, settings[lang.code].minhash.decision_key,
                                     clustered and clustered.state, staged.changes)
            summary["index"] = clustered.stats if clustered else IndexStats()
            written.append((lang, staged, summary))
    return written


def near_dedup_language(lang, settings: FilterSettings, warehouse, scratch: Path, log=None) -> dict:
    """Near-dedup of one language, the asset's own steps one after another (export, cluster, write) outside
    Dagster: for the accuracy bench and the tests. ``log``: a logger (``.info``); the tables must exist (dbt's
    ``screened_documents``, ``document_signals``). Returns the summary the asset reports, with ``staged``."""
    import logging

    warehouse = backend_of(warehouse)
    create_filtered_tables(warehouse)
    staged = export_near_dedup(warehouse, lang.code, settings.minhash, scratch, log or logging.getLogger(__name__))
    clustered = _near_dedup(lang, settings, staged, warehouse.threads, scratch, warehouse)
    summary = write_filtered(warehouse, lang.code, settings.minhash.decision_key, clustered and clustered.state,
                             staged.changes)
    return {**summary, "index": clustered.stats if clustered else IndexStats(), "staged": staged}


def _report_filtered(context, lang, settings, summary: dict, staged: NearDedupInput,
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
        "near_dedup_decisions_written_this_run": int(summary["decisions_written"]),
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
        context: AssetExecutionContext, config: DocumentSignalsConfig, store: Store, lid_model: LidModel,
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
            warehouse = store.open()
            with warehouse.session():  # the exports of every language, one connection
                create_signal_tables(warehouse)
                for lang in langs:
                    pending = export_pending(warehouse, lang.code, keys[lang.code], scratch[lang.code])
                    counts[lang.code], gone[lang.code] = pending.count, pending.gone
                    jobs.append(ScreeningJob(lang, settings[lang.code], pending.file,
                                             scratch[lang.code] / "signals.parquet"))
            workers = config.workers or available_cores()
            progress = Progress(f"document_signals:{','.join(context.partition_keys)}", sum(counts.values()),
                                context.log.info, unit="docs")
            screen_files(jobs, identifier, registry, workers, on_rows=progress.advance)
            progress.finish()
            pause_point("document_signals: screened, before writing")
            with warehouse.session():  # the writes of every language, one transaction each
                for lang, job in zip(langs, jobs):
                    totals = write_signals(warehouse, lang.code, keys[lang.code], job.out, gone[lang.code],
                                           counts[lang.code], _now())
                    add_language_metadata(context, lang.code, {
                        **_signals_metadata(totals, counts[lang.code]),
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
        context: AssetExecutionContext, store: Store, storage: XinstStorage
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
                warehouse = store.open()
                held = stack.enter_context(warehouse.session())
                create_filtered_tables(warehouse)
                exported: queue.SimpleQueue = queue.SimpleQueue()
                writer = stack.enter_context(ThreadPoolExecutor(max_workers=1)).submit(
                    _write_in_order, held.for_thread(), exported, settings, warehouse)
                try:
                    for lang in langs:
                        if writer.done():  # it failed: the error is raised below
                            break
                        staged = export_near_dedup(warehouse, lang.code, settings[lang.code].minhash,
                                                   scratch[lang.code], context.log)
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
