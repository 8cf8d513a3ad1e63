"""Curated inputs as assets: seed pairs (for the instruction generator and the curator), parallel pairs (for AFP
and InstructAlign) and evaluation questions, per language; and the replay instructions (the English instruction
data continual InstructAlign replays), one set for all languages."""

import json

from dagster import AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, MaterializeResult, PartitionsDefinition, asset

from xinst_assets.assets.ranges import LanguageCheck, add_language_metadata
from xinst_assets.assets.reporting import counts_table, markdown_table
from xinst_assets.assets.transient import retry_transient
from xinst_assets.core.curated import (
    EVAL_QUESTIONS, PARALLEL_PAIRS, REPLAY_INSTRUCTIONS, REPLAY_LANG, SEED_PAIRS, CuratedKind, curated_files,
    read_curated,
)
from xinst_assets.core.emptiness import CHECK_NAME as NOT_EMPTY, OutputOutcome, all_dropped_reason
from xinst_assets.resources.curated_sources import CuratedSources
from xinst_assets.store import Store
from xinst_assets.store.curated_inputs import replace_curated, stored_curated
from xinst_assets.settings import SAMPLE_DIR

DESCRIPTIONS = {
    "seed_pairs": "Seed (English instruction, response in the language) pairs that teach the instruction "
    "generator, from the embedded sample and user files. Table: seed_pairs.",
    "parallel_pairs": "English <-> language sentence pairs for AFP's contrastive loss and InstructAlign's "
    "objectives. Table: parallel_pairs.",
    "eval_questions": "Evaluation questions in the language (with English versions) for the evaluation stage. "
    "Table: eval_questions.",
    "replay_instructions": "English (instruction, response) pairs standing for the instruction data the tuned "
    "model learned before: continual InstructAlign replays them beside the alignment data so that the model "
    "keeps following instructions. From the embedded sample and user files (CuratedSources.replay_instructions); "
    "never the new cross-lingual data. Table: replay_instructions (lang 'en').",
}


def read_language(
    kind: CuratedKind, lang: str, curated_sources: CuratedSources
) -> tuple[list[dict], list[dict], list]:
    """``lang``'s rows of ``kind`` from its files (the embedded sample and the user's), the rows rejected with
    their reason (duplicates of an id included), and the files read."""
    patterns = getattr(curated_sources, kind.name)
    files = curated_files(kind, lang, SAMPLE_DIR if curated_sources.include_embedded else None, patterns)
    rows, rejected, seen = [], [], set()
    for path in files:
        good, bad = read_curated(kind, path, lang)
        for row in good:
            if row["id"] in seen:
                rejected.append({"file": str(path), "line": None, "reason": "duplicate", "detail": row["id"]})
                continue
            seen.add(row["id"])
            rows.append(row)
        rejected += bad
    return rows, rejected, files


def _sync_language(
    context: AssetExecutionContext, kind: CuratedKind, lang: str, warehouse, curated_sources: CuratedSources
) -> tuple[dict, OutputOutcome]:
    """Read ``lang``'s files of ``kind``, store their rows and rejections when they differ from the stored
    ones, and return the language's metadata and whether anything usable came out of non-empty files."""
    rows, rejected, files = read_language(kind, lang, curated_sources)
    fields = ["id", *kind.required, *kind.optional, "source"]
    new_rows = sorted(tuple(None if r.get(f) is None else str(r[f]) for f in fields) for r in rows)
    new_rejected = sorted(((r["file"], r["line"], r["reason"], r["detail"]) for r in rejected), key=repr)
    if stored_curated(warehouse, kind, lang, fields) == (new_rows, new_rejected):
        # The nightly case: the files say what the tables hold; no write (and checkpoint).
        context.log.info(f"{kind.name}/{lang}: {len(rows)} rows, unchanged")
    else:
        replace_curated(warehouse, kind, lang, fields, new_rows, new_rejected)
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    if not rows:
        context.log.warning(f"{kind.name}/{lang}: no rows in {len(files)} file(s)")
    outcome = OutputOutcome(len(rows) + len(rejected), len(rows),
                            all_dropped_reason(len(rejected), "rows", "were usable", reasons))
    return {
        "dagster/row_count": len(rows),
        "files": json.dumps([str(f.name) for f in files]),
        "rejected": len(rejected),
        "rejected_by_reason": counts_table(reasons),
        "preview": markdown_table([[r[f] for f in kind.required] for r in rows[:5]], list(kind.required)),
    }, outcome


def _build(kind: CuratedKind, partitions_def: PartitionsDefinition | None):
    @asset(
        name=kind.name,
        partitions_def=partitions_def if kind.per_language else None,
        group_name="curated_inputs",
        kinds={"python", "duckdb"},
        owners=["team:data"],
        description=DESCRIPTIONS[kind.name],
        check_specs=[AssetCheckSpec(
            NOT_EMPTY, asset=kind.name, blocking=True,
            description="A language whose files hold rows gets at least one usable row; otherwise the check fails "
            "with the reasons every row was rejected.")],
    )
    def curated(context: AssetExecutionContext, store: Store, curated_sources: CuratedSources):
        warehouse = store.open()
        not_empty = LanguageCheck(NOT_EMPTY, kind.name, AssetCheckSeverity.ERROR)
        # The files are small: one session compares (and, where they changed, writes) every language's rows.
        with retry_transient(context), warehouse.session():
            for lang in context.partition_keys if kind.per_language else [REPLAY_LANG]:
                metadata, outcome = _sync_language(context, kind, lang, warehouse, curated_sources)
                if kind.per_language:
                    add_language_metadata(context, lang, metadata)
                not_empty.add(lang, outcome.passed, outcome.metadata())
        yield MaterializeResult(metadata=None if kind.per_language else metadata)
        yield not_empty.result()

    return curated


def build_curated_assets(partitions_def: PartitionsDefinition) -> list:
    """``seed_pairs``, ``parallel_pairs`` and ``eval_questions`` (per language) and ``replay_instructions``."""
    return [_build(kind, partitions_def) for kind in (SEED_PAIRS, PARALLEL_PAIRS, EVAL_QUESTIONS, REPLAY_INSTRUCTIONS)]
