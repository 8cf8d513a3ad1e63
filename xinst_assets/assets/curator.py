"""The curator checkpoint: the base model tuned on labelled judgements made from the seed pairs (METHOD.md stage
4), for runs that configure no instruction-following model to grade candidates.

Trained once per version of its judgement data (content-addressed, like the generator): matched seed pairs are
level 3, partial ones level 2, shuffled ones level 1 (:mod:`xinst_assets.core.judgements`), in the exact prompt
``scored_pairs`` asks (laid out by the chat template when the base model has one, as the curator role sends it).
A held-out share of the seed pairs never trains it: the asset grades their matched, partial and shuffled
versions with the curator as ``scored_pairs`` will use it and reports the separation (acceptance rate and mean
expected score per kind); a WARN check says when the curator does not keep most matched pairs and reject most
shuffled ones at the acceptance label. The curator is never the backward generator (it starts from the base
model, and the curator role refuses the generator's checkpoint).
"""


import json
import tempfile
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, Failure, MaterializeResult,
    MetadataValue,
    asset,
)

from xinst_assets.store.checkpoints import record_checkpoint, registered_checkpoint
from xinst_assets.assets.generation import complete_seed_rows
from xinst_assets.assets.model_roles import RoleError, resolve_curator
from xinst_assets.assets.reporting import counts_table, loss_curve_markdown, markdown_table
from xinst_assets.assets.training_runs import file_sha256, launch_training, run_fingerprint
from xinst_assets.assets.transient import retry_transient
from xinst_assets.core.curation import CurationRules
from xinst_assets.core.locks import file_lock
from xinst_assets.core.judgements import (
    KINDS, SHUFFLED, Judgement, JudgementRules, SeedPair, Separation, judgement_sets, separation,
)
from xinst_assets.core.progress import Progress
from xinst_assets.core.prompts import JUDGE_CHOICES, judge_prompt
from xinst_assets.inference.cache import GenerationCache, choice_logprobs_cached
from xinst_assets.inference.scoring import SCORE_TASK, PairScore
from xinst_assets.languages import LanguageRegistry
from xinst_assets.resources.curated_sources import CuratedSources
from xinst_assets.resources.inference import InferenceSettings, ModelRole
from xinst_assets.resources.models import ModelSettings
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.resources.training import TrainingLauncher
from xinst_assets.store import Store
from xinst_assets.training.config import TrainConfig

SEPARATION_CHECK = "curator_separates_heldout_pairs"
# The demo's base is a tiny randomly initialised model: it learns at a from-scratch rate, on prompts long enough
# to hold the judging prompt (about 300 tokens with the demo tokenizer) and most of a seed response.
DEMO_CURATOR_STEPS = 150
DEMO_CURATOR_LEARNING_RATE = 3e-3
DEMO_CURATOR_MAX_LENGTH = 512


def seed_pairs_for_judging(curated_sources: CuratedSources, registry: LanguageRegistry) -> list[SeedPair]:
    """Every registry language's seed pairs, read from the seed files as the instruction generator reads them
    (whichever partitions of seed_pairs have run), in a stable order."""
    rows, _ = complete_seed_rows(curated_sources, registry)
    return [SeedPair(row["instruction"], row["response"], row["lang_name"]) for row in rows]


def _content_file(rows: list[dict[str, Any]], folder: Path, stem: str) -> Path:
    """``rows`` as JSONL named by its content hash (the run fingerprint follows the data)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    # A private staging name: runs of several partitions may write the same data at the same time.
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, prefix=f".{stem}-", delete=False) as out:
        out.write(text)
    staged = Path(out.name)
    final = folder / f"{stem}-{file_sha256(staged)[:16]}.jsonl"
    staged.replace(final)  # atomic; identical content whoever wins
    return final


def curator_training_settings(models: ModelSettings, base: str, data_file: Path) -> dict[str, Any]:
    """The training settings of the curator (without ``output_dir``): the demo's from-scratch schedule when no
    base model is configured, the ``models.curator_*`` settings otherwise."""
    demo = models.base_model is None
    max_steps = models.curator_max_steps or (DEMO_CURATOR_STEPS if demo else None)
    return dict(
        base_model=base, task="curator", data_files=[str(data_file)], output_dir="", max_steps=max_steps,
        num_epochs=models.curator_epochs,
        learning_rate=models.curator_learning_rate or (DEMO_CURATOR_LEARNING_RATE if demo else None),
        max_length=DEMO_CURATOR_MAX_LENGTH if demo else 2048, per_device_batch_size=models.curator_batch_size,
        save_steps=max(50, (max_steps or 500) // 2), logging_steps=10, seed=models.curator_seed,
    )


def train_curator(context, models: ModelSettings, launcher: TrainingLauncher, storage: XinstStorage,
                  data_file: Path) -> tuple[str, dict[str, Any]]:
    """Tune the base model on the judgements in ``data_file``; reuse an identical finished run."""
    base = models.resolve_base_model(storage.paths.models, context.log.warning)
    settings = curator_training_settings(models, base, data_file)
    fingerprint = run_fingerprint(settings, [data_file], home=storage.paths.home)
    run_dir = storage.paths.models / "curator" / fingerprint
    config = TrainConfig.from_dict({**settings, "output_dir": str(run_dir)})
    reported = launch_training(context, launcher, config, run_dir)
    lineage_file = run_dir / "xinst_training.json"
    lineage = json.loads(lineage_file.read_text(encoding="utf-8")) if lineage_file.exists() else {}
    return str(run_dir), {"fingerprint": fingerprint, "base_model": base, "reported": reported, "lineage": lineage}


def grade(backend, cache: GenerationCache, examples: list[Judgement], log) -> list[PairScore]:
    """The curator's scores of ``examples`` by constrained choice, as ``scored_pairs`` computes them."""
    progress = Progress("curator:held-out", len(examples), log, unit="pairs")
    dists, _ = choice_logprobs_cached(
        backend, cache, [judge_prompt(e.instruction, e.response, e.lang_name) for e in examples],
        list(JUDGE_CHOICES), SCORE_TASK, on_progress=progress.advance)
    progress.finish()
    return [PairScore.from_distribution(d) for d in dists]


def separation_table(result: Separation):
    rows = [(kind, result.counts[kind], f"{result.accepted[kind]:.0%}", f"{result.mean_expected[kind]:.2f}")
            for kind in (*KINDS, SHUFFLED) if kind in result.counts]
    return markdown_table(rows, ["held-out kind", "pairs", f"accepted at label {result.accept_label}",
                                 "mean expected score"])


def build_curator_asset(registry: LanguageRegistry):
    """The unpartitioned ``curator`` checkpoint asset."""

    @asset(
        name="curator",
        deps=["seed_pairs"],
        group_name="curation",
        kinds={"python", "pytorch", "transformers"},
        owners=["team:ml"],
        pool="gpu",
        check_specs=[AssetCheckSpec(
            SEPARATION_CHECK, asset="curator",
            description="On held-out seed pairs, the curator keeps (labels at or above the acceptance label) most "
            "matched pairs, rejects most shuffled ones, and scores matched pairs at least half a level higher on "
            "average.")],
        description=(
            "The model that grades candidate pairs when no instruction-following model is configured (curator.model "
            "or models.instruct_model): the base model tuned on judgements made from the seed pairs (matched = "
            "3, partial = 2, shuffled = 1) in the self-curation prompt, trained once per version of that data "
            "(content-addressed, reused while the seeds are unchanged). Reports its separation on held-out seed "
            "pairs: acceptance rate and mean expected score of matched, partial and shuffled pairs. Never the "
            "instruction generator."
        ),
    )
    def curator_checkpoint(
        context: AssetExecutionContext, store: Store, models: ModelSettings, curator: ModelRole,
        inference: InferenceSettings, training_launcher: TrainingLauncher, storage: XinstStorage,
        curated_sources: CuratedSources,
    ):
        warehouse = store.open()
        if curator.model or models.instruct_model:
            chosen = f"curator.model={curator.model}" if curator.model else f"models.instruct_model={models.instruct_model}"
            context.log.info(f"an instruction-following curator is configured ({chosen}): nothing to train")
            yield MaterializeResult(metadata={"mode": "configured", "curator": chosen})
            yield AssetCheckResult(check_name=SEPARATION_CHECK, passed=True, severity=AssetCheckSeverity.WARN,
                                   metadata={"reason": "configured curator: not trained here"})
            return
        rules = JudgementRules(seed=models.curator_seed)
        folder = storage.paths.models / "curator"

        def waiting(waited: float) -> None:
            context.log.info(f"curator: another run is making the curator; waiting ({waited:.0f}s so far), then "
                             "its checkpoint is reused")

        # Every partition run of a backfill materializes this asset, as it does the instruction generator: one at
        # a time, so the first trains and the others find its finished run (content-addressed by the judgements).
        with file_lock(folder / ".asset.lock", exclusive=True, timeout_s=None, what="curator lock", on_wait=waiting):
            pairs = seed_pairs_for_judging(curated_sources, registry)
            train, heldout = judgement_sets(pairs, rules)
            if not train:
                raise Failure("no seed pairs to make judgements from: keep the embedded sample "
                              "(CuratedSources.include_embedded) or add seed files (CuratedSources.seed_pairs)")
            data_file = _content_file([j.row() for j in train], folder / "data", "judgements")
            path, info = train_curator(context, models, training_launcher, storage, data_file)
            with retry_transient(context):
                if registered_checkpoint(warehouse, "curator", as_recorded=True) != (path, info["fingerprint"]):
                    record_checkpoint(warehouse, "curator", path, info["fingerprint"], root_model=info["base_model"],
                                      run_id=context.run_id)
        with retry_transient(context):
            try:  # the curator exactly as scored_pairs resolves it (backend settings, chat template)
                role = resolve_curator(curator, models, inference, warehouse, storage.paths.models, context.log.warning)
            except RoleError as exc:
                raise Failure(f"curator: {exc}") from exc
        accept_label = CurationRules().accept_label
        result = None
        if heldout:
            backend = role.open()
            try:
                scores = grade(backend, GenerationCache.from_warehouse(warehouse), heldout, context.log.info)
            finally:
                backend.close()
            result = separation(heldout, [s.label for s in scores], [s.expected for s in scores], accept_label)
            context.log.info(f"curator on {len(heldout)} held-out judgements {result.summary()}")
        lineage = info["lineage"]
        kinds: dict[str, int] = {}
        for j in train:
            kinds[j.kind] = kinds.get(j.kind, 0) + 1
        yield MaterializeResult(metadata={
            "mode": "trained",
            "path": MetadataValue.path(path),
            "base_model": info["base_model"],
            "curator": role.describe(),
            "seed_pairs": len(pairs),
            "training_judgements": counts_table(kinds, key="kind"),
            "heldout_judgements": len(heldout),
            "heldout_separation": separation_table(result) if result else "no held-out pairs",
            "separation": result.summary() if result else "not measured",
            "steps": lineage.get("global_step"),
            "final_loss": lineage.get("final_loss"),
            "loss_curve": loss_curve_markdown(lineage.get("loss_curve", []), "curator loss"),
            "run_fingerprint": info["fingerprint"],
        })
        if result is None:
            yield AssetCheckResult(check_name=SEPARATION_CHECK, passed=True, severity=AssetCheckSeverity.WARN,
                                   metadata={"reason": "too few seed pairs per language to hold any out"})
            return
        yield AssetCheckResult(
            check_name=SEPARATION_CHECK, passed=result.separates, severity=AssetCheckSeverity.WARN,
            description=result.summary(),
            metadata={"matched_accepted": round(result.accepted.get("matched", 0.0), 4),
                      "shuffled_accepted": round(result.accepted.get("shuffled", 0.0), 4),
                      "partial_accepted": round(result.accepted.get("partial", 0.0), 4),
                      "shuffled_same_language_accepted": round(result.accepted.get("shuffled_same_language", 0.0), 4),
                      "margin": round(result.margin, 4), "mean_score_gap": round(result.score_gap, 4),
                      "table": separation_table(result)})

    return curator_checkpoint
