"""Stage 3: the instruction generator and the candidate (English instruction, native response) pairs."""

import functools
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field
import pyarrow.parquet as pq
from dagster import (
    AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue,
    PartitionsDefinition, asset,
)

from xinst_assets.store.checkpoints import current_checkpoint, record_checkpoint, registered_checkpoint
from xinst_assets.assets.curated import read_language
from xinst_assets.assets.ranges import LanguageCheck, add_language_metadata, for_each_language, run_languages
from xinst_assets.assets.reporting import counts_table, loss_curve_markdown, markdown_table
from xinst_assets.assets.training_runs import file_sha256, launch_training, run_fingerprint
from xinst_assets.assets.transient import retry_transient
from xinst_assets.core.candidates import CandidateRules, candidate_rejections, clean_instruction
from xinst_assets.core.curated import SEED_PAIRS
from xinst_assets.core.locks import file_lock
from xinst_assets.core.emptiness import CHECK_NAME as NOT_EMPTY, OutputOutcome, all_dropped_reason
from xinst_assets.core.progress import Progress
from xinst_assets.core.prompts import RELEASED_DECODING, generation_prompt
from xinst_assets.core.text import stable_hash
from xinst_assets.inference.cache import GenerationCache, generate_cached
from xinst_assets.languages import Language, LanguageRegistry
from xinst_assets.resources.curated_sources import CuratedSources
from xinst_assets.resources.inference import InferenceSettings, LazyBackend
from xinst_assets.resources.lid import LidModel
from xinst_assets.resources.models import ModelSettings
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.resources.training import TrainingLauncher
from xinst_assets.store import Store
from xinst_assets.store.candidates import filtered_texts, replace_candidates
from xinst_assets.store.curated_inputs import seed_rows
from xinst_assets.training.config import TrainConfig

GENERATION_TASK = "instruction_generation"
# The generation prompt's "### English Instruction:" is followed by one instruction: stop at the next section.
GENERATION_PARAMS = RELEASED_DECODING.with_max_new_tokens(128)
# A randomly initialised demo model learns nothing at fine-tuning rates (1e-5) in a few steps: the demo trains
# it briefly at a from-scratch rate on short sequences so it writes instruction-like English.
DEMO_GENERATOR_STEPS = 120
DEMO_LEARNING_RATE = 3e-3
DEMO_MAX_LENGTH = 256


class CandidateConfig(Config):
    """Per-run settings of candidate generation."""

    max_text_chars: int = Field(default=4000, description="Longer filtered texts are not sent to the generator.")


def export_seed_rows(warehouse, registry: LanguageRegistry, dest: Path) -> int:
    """Write every language's seed pairs stored in ``warehouse`` (a store, its backend or a Warehouse) as
    training rows {instruction, response, lang_name}; return rows."""
    names = {lang.code: lang.name for lang in registry}
    rows = seed_rows(warehouse)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", encoding="utf-8") as out:
        for lang, instruction, response in rows:
            if lang in names:
                out.write(json.dumps({"instruction": instruction, "response": response,
                                      "lang_name": names[lang]}, ensure_ascii=False) + "\n")
    return len(rows)


def complete_seed_rows(curated_sources: CuratedSources, registry: LanguageRegistry) -> tuple[list[dict], dict]:
    """Every registry language's seed pairs, read from the seed files themselves (the rows ``seed_pairs`` stores,
    whichever partitions have run), as training rows {instruction, response, lang_name} in (language, id)
    order; and the rows per language."""
    rows, per_language = [], {}
    for lang in sorted(registry, key=lambda language: language.code):
        seeds, _, _ = read_language(SEED_PAIRS, lang.code, curated_sources)
        per_language[lang.code] = len(seeds)
        rows += [{"instruction": r["instruction"], "response": r["response"], "lang_name": lang.name}
                 for r in sorted(seeds, key=lambda row: row["id"])]
    return rows, per_language


def write_seed_file(rows: list[dict], data_dir: Path, scratch: Path) -> Path:
    """``rows`` as ``data_dir/seed-<sha256 of the content, 16 hex>.jsonl`` (the seed version): written aside
    and moved into place, so the file of a version is always whole."""
    staged = scratch / "seed.jsonl"
    with open(staged, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    data_file = data_dir / f"seed-{file_sha256(staged)[:16]}.jsonl"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not data_file.exists():
        staged.replace(data_file)
    return data_file


def train_generator(context, models: ModelSettings, launcher: TrainingLauncher, storage: XinstStorage,
                    data_file: Path, name: str, start: str | None = None,
                    max_steps: int | None = None) -> tuple[str, dict]:
    """Fine-tune the base model (or the checkpoint ``start``) response -> instruction on ``data_file``, for
    ``max_steps`` (None: the generator settings); reuse an identical finished run (one process trains a run;
    another that wants it waits, then reuses it: see ``launch_training``). ``info`` has ``fingerprint``,
    ``base_model``, ``reported`` (``reused``: no training happened) and ``lineage``."""
    base = start or models.resolve_base_model(storage.paths.models, context.log.warning)
    demo = models.base_model is None
    max_steps = max_steps or models.generator_max_steps or (DEMO_GENERATOR_STEPS if demo else None)
    settings = dict(base_model=base, task="generator", data_files=[str(data_file)], output_dir="",
                    max_steps=max_steps, num_epochs=models.generator_epochs,
                    learning_rate=models.generator_learning_rate or (DEMO_LEARNING_RATE if demo else None),
                    max_length=DEMO_MAX_LENGTH if demo else 512,
                    per_device_batch_size=models.generator_batch_size,
                    save_steps=max(25, (max_steps or 500) // 4), logging_steps=5)
    fingerprint = run_fingerprint(settings, [data_file], home=storage.paths.home)
    run_dir = storage.paths.models / name / fingerprint
    config = TrainConfig.from_dict({**settings, "output_dir": str(run_dir)})
    reported = launch_training(context, launcher, config, run_dir)
    lineage_file = run_dir / "xinst_training.json"
    lineage = json.loads(lineage_file.read_text(encoding="utf-8")) if lineage_file.exists() else {}
    return str(run_dir), {"fingerprint": fingerprint, "base_model": base, "reported": reported, "lineage": lineage}


def build_generation_assets(partitions_def: PartitionsDefinition, registry: LanguageRegistry) -> list:
    """``instruction_generator`` (all languages) and ``candidate_pairs`` (per language)."""

    @asset(
        name="instruction_generator",
        deps=["seed_pairs"],
        group_name="generation",
        kinds={"python", "pytorch", "transformers"},
        owners=["team:ml"],
        pool="gpu",
        description=(
            "The model that writes an English instruction for a text in language L: the base model fine-tuned in "
            "the reverse direction (response -> instruction) on the seed pairs of every language with "
            "X-Instruction's generation prompt, loss on the instruction only; or, with generator_mode "
            "zero_shot, an existing instruct model used with the same prompt. Trained in its own process "
            "(Dagster Pipes), once per seed version (the SHA-256 of every language's seed pairs, read from the "
            "seed files): runs of several partitions at once wait for the one that trains it and reuse its "
            "checkpoint."
        ),
    )
    def instruction_generator(
        context: AssetExecutionContext, store: Store, models: ModelSettings,
        training_launcher: TrainingLauncher, storage: XinstStorage, curated_sources: CuratedSources,
    ) -> MaterializeResult:
        warehouse = store.open()
        if models.generator_mode == "zero_shot":
            if not models.zero_shot_model:
                raise Failure("generator_mode is zero_shot but ModelSettings.zero_shot_model is not set")
            LazyBackend(InferenceSettings(), models.zero_shot_model)  # validates the model before recording it
            record_checkpoint(warehouse, "instruction_generator", models.zero_shot_model, "zero_shot")
            return MaterializeResult(metadata={"mode": "zero_shot", "model": models.zero_shot_model})
        if models.generator_mode != "trained":
            raise Failure(f"unknown generator_mode {models.generator_mode!r}: use trained or zero_shot")
        folder = storage.paths.models / "instruction_generator"

        def waiting(waited: float) -> None:
            context.log.info(f"instruction_generator: another run is making the generator; waiting ({waited:.0f}s "
                             "so far), then its checkpoint is reused")

        # Every partition run of a backfill materializes this asset: one at a time, from reading the seeds to
        # recording the checkpoint, so the first trains, the others find its finished run, and the checkpoint
        # recorded last is that of the seed files read last.
        with file_lock(folder / ".asset.lock", exclusive=True, timeout_s=None, what="instruction generator lock",
                       on_wait=waiting):
            rows, per_language = complete_seed_rows(curated_sources, registry)
            if not rows:
                raise Failure("no seed pairs in any language's seed files: keep the embedded sample "
                              "(CuratedSources.include_embedded) or add seed files (CuratedSources.seed_pairs)")
            with storage.scratch_dir("generator-data") as scratch:
                data_file = write_seed_file(rows, folder / "data", scratch)
            path, info = train_generator(context, models, training_launcher, storage, data_file,
                                         "instruction_generator")
            if registered_checkpoint(warehouse, "instruction_generator", as_recorded=True) != (path, info["fingerprint"]):
                record_checkpoint(warehouse, "instruction_generator", path, info["fingerprint"], run_id=context.run_id)
        lineage = info["lineage"]
        trained = not info["reported"].get("reused", False)
        context.log.info(f"instruction_generator: seed version {data_file.stem[len('seed-'):]} "
                         f"({len(rows)} rows), {'trained by this run' if trained else 'reused'}: {path}")
        return MaterializeResult(metadata={
            "mode": "trained",
            "path": MetadataValue.path(path),
            "base_model": info["base_model"],
            "seed_version": data_file.stem[len("seed-"):],
            "seed_rows": len(rows),
            "seed_rows_by_language": counts_table(per_language, key="lang"),
            "trained_by_this_run": trained,
            "steps": lineage.get("global_step"),
            "final_loss": lineage.get("final_loss"),
            "loss_curve": loss_curve_markdown(lineage.get("loss_curve", []), "instruction generator loss"),
            "run_fingerprint": info["fingerprint"],
        })

    @asset(
        name="candidate_pairs",
        partitions_def=partitions_def,
        deps=["language_filtered_text", "instruction_generator"],
        group_name="generation",
        kinds={"python", "transformers", "duckdb"},
        owners=["team:ml"],
        pool="gpu",
        check_specs=[AssetCheckSpec(
            NOT_EMPTY, asset="candidate_pairs", blocking=True,
            description="A language with filtered texts gets at least one candidate pair; otherwise the check "
            "fails with the reasons every text was dropped.")],
        description=(
            "Candidate (English instruction, response in L) pairs: the instruction generator writes an instruction "
            "for each filtered text with X-Instruction's released decoding (T 0.7, top-p 0.9, top-k 50, no "
            "repeated 6-grams). Kept: non-empty English instructions within length bounds that do not copy the "
            "text; the others are in candidate_rejections with the reason. Generations are cached by (model, "
            "prompt, parameters): a rerun makes no model call for texts already done."
        ),
    )
    def candidate_pairs(
        context: AssetExecutionContext, config: CandidateConfig, store: Store, inference: InferenceSettings,
        lid_model: LidModel, storage: XinstStorage,
    ) -> MaterializeResult:
        languages = run_languages(context, registry)
        warehouse = store.open()
        with retry_transient(context):
            generator = current_checkpoint(warehouse, "instruction_generator")
        # One backend for all the run's languages: the generator is loaded at most once per run.
        backend = LazyBackend(inference, generator)
        identifier = functools.cache(lambda: lid_model.identifier(registry))  # loaded once, when first needed
        not_empty = LanguageCheck(NOT_EMPTY, "candidate_pairs", AssetCheckSeverity.ERROR)

        def generate_language(lang: Language) -> dict[str, Any]:
            """Generate, filter and store ``lang``'s candidates; return its materialization metadata."""
            with retry_transient(context):
                rows = filtered_texts(warehouse, lang.code)
            # Responses longer than this would not fit a model's context in the prompt (and are far longer than
            # X-Instruction's ~1,000-1,300-character responses): they are recorded as dropped, not sent.
            docs = [r for r in rows if len(r[1]) <= config.max_text_chars]
            too_long = [{"doc_id": d, "instruction": None, "reason": "candidate_text_too_long"}
                        for d, t, _ in rows if len(t) > config.max_text_chars]
            loads_before = backend.loads
            progress = Progress(f"candidate_pairs:{lang.code}", len(docs), context.log.info, unit="texts")
            with backend.closed_on_failure(f"instruction generation failed for {lang.code}"):
                generations, stats = generate_cached(
                    backend, GenerationCache.from_warehouse(warehouse), [generation_prompt(t) for _, t, _ in docs],
                    GENERATION_PARAMS, GENERATION_TASK, on_progress=progress.advance)
            progress.finish()
            instructions = [clean_instruction(g.text) for g in generations]
            reasons = candidate_rejections(instructions, [t for _, t, _ in docs],
                                           [g.finish_reason for g in generations], identifier(), CandidateRules())
            kept = [{"pair_id": stable_hash(lang.code, d, i), "doc_id": d, "instruction": i, "response": t,
                     "source_url": u} for (d, t, u), i, r in zip(docs, instructions, reasons) if r is None]
            rejected = too_long + [{"doc_id": d, "instruction": i, "reason": r}
                                   for (d, _, _), i, r in zip(docs, instructions, reasons) if r is not None]
            with retry_transient(context), storage.scratch_dir(f"candidates-{lang.code}") as scratch:
                kept_file, rejected_file = scratch / "kept.parquet", scratch / "rejected.parquet"
                pq.write_table(pa.Table.from_pylist(kept, schema=pa.schema(
                    [(n, pa.string()) for n in ("pair_id", "doc_id", "instruction", "response", "source_url")])),
                    kept_file)
                pq.write_table(pa.Table.from_pylist(rejected, schema=pa.schema(
                    [(n, pa.string()) for n in ("doc_id", "instruction", "reason")])), rejected_file)
                replace_candidates(warehouse, lang.code, generator, kept_file, rejected_file)
            by_reason: dict[str, int] = {}
            for row in rejected:
                key = row["reason"].split(":")[0] if row["reason"].startswith("candidate_not_english") else row["reason"]
                by_reason[key] = by_reason.get(key, 0) + 1
            outcome = OutputOutcome(len(rows), len(kept), all_dropped_reason(len(rows), "texts", "became candidates",
                                                                             by_reason))
            not_empty.add(lang.code, outcome.passed, outcome.metadata())
            return {
                "dagster/row_count": len(kept),
                "texts_in": len(rows),
                "candidates_kept": len(kept),
                "rejected": len(rejected),
                "rejected_by_reason": counts_table(by_reason),
                "cache_hits": stats.hits,
                "cache_misses": stats.misses,
                "model_loads": backend.loads - loads_before,
                "generator": generator,
                "decoding": MetadataValue.json(GENERATION_PARAMS.to_dict()),
                "examples": markdown_table([(r["instruction"], r["response"][:80]) for r in kept[:8]],
                                           ["instruction", "response"]),
            }

        try:
            results = for_each_language(context, languages, generate_language)
        finally:
            backend.close()
        for code, metadata in results.items():
            add_language_metadata(context, code, metadata)
        yield MaterializeResult()
        yield not_empty.result()

    return [instruction_generator, candidate_pairs]

