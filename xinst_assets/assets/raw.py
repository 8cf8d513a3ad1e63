"""Stage 1: raw web text, ingested incrementally per language from shards on disk."""


import contextlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    asset,
)

from xinst_assets.core.discovery import Discovery, SourceError
from xinst_assets.core.ingest import FILE_REASONS, Shard, ShardStats, stage_shard
from xinst_assets.core.progress import Progress
from xinst_assets.assets.ranges import LanguageCheck, add_language_metadata
from xinst_assets.assets.reporting import counts_table, markdown_table
from xinst_assets.assets.transient import retry_transient
from xinst_assets.resources.raw_sources import RawSources
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.store import Store
from xinst_assets.store.raw_text import RawTotals, StagedShard, known_shards, write_ingest

def build_raw_web_text(partitions_def: PartitionsDefinition):
    """The ``raw_web_text`` asset for the given language partitions."""

    @asset(
        name="raw_web_text",
        partitions_def=partitions_def,
        group_name="ingest",
        kinds={"duckdb", "python"},
        owners=["team:data"],
        check_specs=[
            AssetCheckSpec("documents_ingested", asset="raw_web_text", description=(
                "A language with shards has documents: fails when every record was quarantined or every shard "
                "was empty or unreadable (a wrong text column, a wrong format, a broken export).")),
        ],
        description=(
            "Web documents of one language (CulturaX-style shards: JSONL, JSONL.gz or Parquet), with a "
            "stable content id per document. Incremental: only new or changed shards are read; rows of "
            "removed shards go away. Bad records are kept in `raw_quarantine` with a reason. "
            "Tables: raw_documents, raw_quarantine, raw_shards."
        ),
    )
    def raw_web_text(
        context: AssetExecutionContext, store: Store, raw_sources: RawSources, storage: XinstStorage
    ) -> MaterializeResult:
        langs = list(context.partition_keys)
        try:
            discoveries = {lang: raw_sources.discover(lang) for lang in langs}
        except SourceError as exc:  # a configuration problem: one line that says what to do
            raise Failure(description=str(exc), allow_retries=False) from None
        with retry_transient(context), contextlib.ExitStack() as scratches:
            warehouse = store.open()
            known = known_shards(warehouse, langs)
            plans = [_stage(context, lang, discoveries[lang], known.get(lang, {}), raw_sources,
                            scratches.enter_context(storage.scratch_dir(f"raw-{lang}"))) for lang in langs]
            # The write windows of every language back to back, one transaction each.
            check = LanguageCheck("documents_ingested", "raw_web_text")
            with warehouse.session():
                for plan in plans:
                    metadata, (passed, figures) = _write(plan, warehouse)
                    add_language_metadata(context, plan.lang, metadata)
                    check.add(plan.lang, passed, figures)
        return MaterializeResult(check_results=[check.result()])

    return raw_web_text


@dataclass
class _IngestPlan:
    """One language's shards to ingest (staged to Parquet) and to drop."""

    lang: str
    shards_total: int
    staged: list[tuple[Shard, Path, Path, ShardStats]]
    removed: list[str]
    rows_read: int
    quarantined: Counter
    discovery: Discovery


def _log_skipped(context: AssetExecutionContext, lang: str, discovery: Discovery) -> None:
    """One warning per path discovery skipped for a reason worth one (at most 20, then a count)."""
    warnings = discovery.warnings
    for skipped in warnings[:20]:
        context.log.warning(f"{lang}: skipped {skipped.line()}")
    if len(warnings) > 20:
        context.log.warning(f"{lang}: {len(warnings) - 20} more paths skipped (see the metadata's discovery_skipped)")


def _stage(
    context: AssetExecutionContext, lang: str, discovery: Discovery, known: dict[str, str], raw_sources: RawSources,
    scratch: Path,
) -> _IngestPlan:
    """Find the new, changed and removed shards of ``lang`` and stage the new and changed ones in ``scratch``."""
    _log_skipped(context, lang, discovery)
    current = {s.key: s for s in discovery.shards}  # known by their place in the source, not their path
    to_read: list[Shard] = [s for key, s in current.items() if known.get(key) != s.fingerprint]
    removed = sorted(set(known) - set(current))
    unchanged = len(current) - len(to_read)
    context.log.info(
        f"{lang}: {len(current)} shards found; {len(to_read)} new or changed, {unchanged} unchanged, "
        f"{len(removed)} removed"
    )
    options = raw_sources.read_options()
    quarantined: Counter = Counter()
    rows_read = 0
    progress = Progress(f"raw_web_text:{lang}", sum(s.size_bytes for s in to_read), context.log.info, unit="bytes")
    staged = []
    for i, shard in enumerate(to_read):
        docs, bad = scratch / f"{i:05d}.docs.parquet", scratch / f"{i:05d}.bad.parquet"
        stats = stage_shard(shard, lang, docs, bad, options, on_bytes=progress.advance)
        staged.append((shard, docs, bad, stats))
        quarantined.update(stats.quarantined)
        rows_read += stats.rows
        for reason, detail in stats.file_issues:
            context.log.warning(f"{lang}: {shard.path}: {reason}: {detail}")
    progress.finish()
    if not to_read and not removed:
        context.log.info(f"{lang}: nothing to do, every shard is already ingested")
    return _IngestPlan(lang, len(current), staged, removed, rows_read, quarantined, discovery)


def _documents_ingested(metadata: dict[str, Any], by_reason: dict[str, int]) -> tuple[bool, dict[str, Any]]:
    """Whether a language with shards has documents, with the figures that say why not."""
    figures = {"shards": metadata["shards_total"], "documents": metadata["documents_total"],
               "records_quarantined": metadata["rows_quarantined_total"],
               "file_problems": metadata["file_problems_total"]}
    if metadata["shards_total"] == 0 or metadata["documents_total"] > 0:
        return True, figures
    top = ", ".join(f"{reason} {n:,}" for reason, n in sorted(by_reason.items(), key=lambda kv: -kv[1])[:3])
    reason = (f"{metadata['shards_total']} shards but no document: {top or 'no record'}; see raw_quarantine and "
              "the shard report (a wrong raw_sources.text_column, format or export?)")
    return False, {**figures, "reason": reason}


def _shard_report(plan: _IngestPlan) -> list[tuple]:
    """One row per shard read this run (file-level problems first, at most 50): what came of its records."""
    rows = []
    for shard, _, _, stats in plan.staged:
        problems = "; ".join(f"{reason}: {detail}" for reason, detail in stats.file_issues)
        rows.append((shard.path.rsplit("/", 1)[-1], stats.records, stats.rows, sum(stats.quarantined.values()),
                     problems or "-"))
    rows.sort(key=lambda r: (r[4] == "-", r[0]))
    return rows[:50]


def _write(plan: _IngestPlan, warehouse) -> tuple[dict[str, Any], tuple[bool, dict[str, Any]]]:
    """Replace the rows of every re-read or removed shard of the plan's language in one transaction; return
    the language's materialization metadata and its documents_ingested outcome."""
    staged = [StagedShard(
        shard.key,
        # A read that cannot stand for the shard's current state (unreadable, changed while read) is recorded
        # under a fingerprint no shard has: the next run (and the sensor) sees it as changed.
        f"read-again:{shard.fingerprint}" if stats.read_again else shard.fingerprint,
        shard.size_bytes, shard.mtime_ns, stats.rows, sum(stats.quarantined.values()), docs, bad)
        for shard, docs, bad, stats in plan.staged]
    totals = write_ingest(warehouse, plan.lang, plan.removed, staged, datetime.now(timezone.utc).replace(tzinfo=None),
                          FILE_REASONS)
    return _ingest_metadata(plan, totals)


def _ingest_metadata(plan: _IngestPlan, totals: RawTotals) -> tuple[dict[str, Any], tuple[bool, dict[str, Any]]]:
    """The language's materialization metadata and its documents_ingested outcome."""
    totals_by_reason = totals.quarantined_by_reason
    record_totals = {r: n for r, n in totals_by_reason.items() if r not in FILE_REASONS}
    skipped = plan.discovery.skipped
    nothing = not plan.staged and not plan.removed
    metadata = {
        "dagster/row_count": totals.documents,
        "documents_total": totals.documents,
        "documents_distinct": totals.distinct_documents,
        "shards_total": plan.shards_total,
        "shards_read": len(plan.staged),
        "shards_unchanged": plan.shards_total - len(plan.staged),
        "shards_removed": len(plan.removed),
        "rows_ingested_this_run": plan.rows_read,
        "rows_quarantined_this_run": sum(plan.quarantined.values()),
        "rows_quarantined_total": sum(record_totals.values()),
        "rows_with_control_chars": totals.with_control_chars,
        "quarantined_by_reason": counts_table(totals_by_reason),
        "quarantine_examples": markdown_table(
            [(r[0].rsplit("/", 1)[-1], r[1], r[2], r[3]) for r in totals.quarantine_examples],
            ["file", "line/row", "reason", "detail"],
        ),
        "shard_report": markdown_table(_shard_report(plan),
                                       ["file", "records", "ingested", "quarantined", "file-level problems"]),
        "file_problems_total": sum(n for r, n in totals_by_reason.items() if r in FILE_REASONS),
        "file_problems": markdown_table([(r[0].rsplit("/", 1)[-1], r[1], r[2]) for r in totals.file_problems],
                                        ["file", "reason", "detail"]),
        "paths_skipped": len(skipped),
        "discovery_skipped": markdown_table([(s.path, s.reason, s.detail) for s in skipped[:50]],
                                            ["path", "reason", "detail"]),
        "nothing_to_do": MetadataValue.bool(nothing),
    }
    return metadata, _documents_ingested(metadata, totals_by_reason)
