"""Stage 4: scored pairs — 3-level labels by constrained choice, refinement of level-2 pairs, and optional
rounds of self-training (re-train the generator on level-3 pairs, regenerate the rest, re-label)."""

import json
from pathlib import Path
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    asset,
)
from pydantic import Field

from xinst_assets.store.checkpoints import current_checkpoint
from xinst_assets.assets.model_roles import RoleError, resolve_curator, resolve_following
from xinst_assets.assets.generation import GENERATION_PARAMS, GENERATION_TASK, export_seed_rows, train_generator
from xinst_assets.assets.ranges import LanguageCheck, add_language_metadata, for_each_language, run_languages
from xinst_assets.assets.reporting import counts_table, markdown_table
from xinst_assets.core.plots import figure_markdown, score_histogram_figure
from xinst_assets.assets.training_runs import file_sha256
from xinst_assets.assets.transient import retry_transient
from xinst_assets.core.candidates import CandidateRules, candidate_rejections, clean_instruction
from xinst_assets.core.curation import CurationRules, refined_rejection, round_summaries
from xinst_assets.core.emptiness import CHECK_NAME as NOT_EMPTY, OutputOutcome, label_counts, none_accepted_reason
from xinst_assets.core.progress import Progress
from xinst_assets.core.prompts import JUDGE_CHOICES, generation_prompt, greedy, judge_prompt, refine_prompt
from xinst_assets.core.text import stable_hash
from xinst_assets.inference.cache import GenerationCache, choice_logprobs_cached, generate_cached
from xinst_assets.inference.scoring import SCORE_TASK, PairScore
from xinst_assets.languages import Language, LanguageRegistry
from xinst_assets.resources.inference import InferenceSettings, LazyBackend, ModelRole
from xinst_assets.resources.lid import LidModel
from xinst_assets.resources.models import ModelSettings
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.resources.training import TrainingLauncher
from xinst_assets.store import Store
from xinst_assets.store.scored_pairs import candidates_to_curate, replace_scored

REFINE_TASK = "refinement"
REFINE_PARAMS = greedy(max_new_tokens=384, stop=("\n###",))
SCORED_COLUMNS = ["pair_id", "doc_id", "instruction", "response", "source_url", "refined", "p1", "p2", "p3",
                  "expected_score", "label", "round", "status"]


class CurationConfig(Config):
    """Per-run settings of self-curation (editable in the launchpad)."""

    rounds: int = Field(
        default=1, ge=1, description="Label/refine rounds (X-Instruction: 2-3 at scale). From round 2 on, a "
        "generator trained from the shared instruction_generator on this language's accepted pairs (plus the "
        "seeds) writes new instructions for the texts not accepted yet, which are graded again.")
    accept_label: int = Field(default=3, ge=1, le=3, description="Label at or above which a pair is accepted.")
    self_training_steps: int | None = Field(
        default=None, description="Training steps of each round's generator (None: the generator settings).")


def _score(backend, cache, pairs, lang_name, context, stage):
    progress = Progress(stage, len(pairs), context.log.info, unit="pairs")
    dists, stats = choice_logprobs_cached(backend, cache, [judge_prompt(i, r, lang_name) for i, r in pairs],
                                          list(JUDGE_CHOICES), SCORE_TASK, on_progress=progress.advance)
    progress.finish()
    return [PairScore.from_distribution(d) for d in dists], stats


def _histogram(scores: list[float]) -> MetadataValue:
    return MetadataValue.md(figure_markdown(score_histogram_figure(scores, title="Expected score"), "scores"))


def build_curation_assets(partitions_def: PartitionsDefinition, registry: LanguageRegistry) -> list:
    """``scored_pairs`` (per language)."""

    @asset(
        name="scored_pairs",
        partitions_def=partitions_def,
        deps=["candidate_pairs", "curator"],
        group_name="curation",
        kinds={"python", "transformers", "duckdb"},
        owners=["team:ml"],
        pool="gpu",
        check_specs=[AssetCheckSpec(
            NOT_EMPTY, asset="scored_pairs", blocking=True,
            description="A language with candidate pairs gets at least one accepted pair; otherwise the check "
            "fails with the label counts (for example '0 pairs reached label 3: labels 1/2/3 = 0/32/0').")],
        description=(
            "Self-curation: each candidate is labelled 3 (good complete answer), 2 (related but partial or noisy, "
            "fixable) or 1 (unusable) by reading the curator's probabilities of '1'/'2'/'3' at the answer "
            "position (never unparseable); stored as a distribution and an expected score. Level-2 pairs are "
            "rewritten by the refiner in the language without web boilerplate, re-labelled and marked refined. The "
            "curator and refiner are instruction-following models (resources curator, refiner; default: "
            "models.instruct_model), never the instruction generator. With rounds > 1 "
            "the generator is re-trained on level-3 pairs and the rest regenerated and re-labelled; every round "
            "is kept in scored_pairs_rounds."
        ),
    )
    def scored_pairs(
        context: AssetExecutionContext, config: CurationConfig, store: Store, inference: InferenceSettings,
        models: ModelSettings, lid_model: LidModel, training_launcher: TrainingLauncher, storage: XinstStorage,
        curator: ModelRole, refiner: ModelRole,
    ) -> MaterializeResult:
        languages = run_languages(context, registry)
        warehouse = store.open()
        rules = CurationRules(accept_label=config.accept_label)
        identifier = lid_model.identifier(registry)
        cache = GenerationCache.from_warehouse(warehouse)
        with retry_transient(context):
            first_generator = current_checkpoint(warehouse, "instruction_generator")
            try:
                grading = resolve_curator(curator, models, inference, warehouse, storage.paths.models,
                                          context.log.warning)
                rewriting = resolve_following("refiner", refiner, grading, warehouse)
            except RoleError as exc:
                raise Failure(f"self-curation: {exc}") from exc
        context.log.info(f"curator: {grading.describe()}; refiner: {rewriting.describe()}")
        # One backend per role for all the run's languages: each model is loaded at most once per run (one in
        # all when the refiner is the curator).
        curator_backend = grading.open()
        refiner_backend = curator_backend if rewriting.serves_like(grading) else rewriting.open()

        def model_loads() -> int:
            return curator_backend.loads + (refiner_backend.loads if refiner_backend is not curator_backend else 0)
        not_empty = LanguageCheck(NOT_EMPTY, "scored_pairs", AssetCheckSeverity.ERROR)

        def curate_language(lang: Language) -> dict[str, Any]:
            """Label, refine (and self-train on) ``lang``'s candidates, store them; return its metadata."""
            with retry_transient(context):
                candidates = candidates_to_curate(warehouse, lang.code)
            generator = first_generator  # self-training replaces it for this language only
            loads_before = model_loads()
            final: dict[str, dict] = {}  # doc_id -> best row so far
            history: list[dict] = []
            counters: Counter = Counter()
            pending = [dict(zip(("pair_id", "doc_id", "instruction", "response", "source_url"), c)) for c in candidates]
            with curator_backend.closed_on_failure(f"self-curation failed for {lang.code}"), \
                    refiner_backend.closed_on_failure(f"refinement failed for {lang.code}"):
                for round_no in range(1, max(config.rounds, 1) + 1):
                    if not pending:
                        break
                    scores, stats = _score(curator_backend, cache, [(p["instruction"], p["response"]) for p in pending],
                                           lang.name, context, f"scored_pairs:{lang.code}:round{round_no}")
                    counters["cache_hits"] += stats.hits
                    counters["cache_misses"] += stats.misses
                    rows = []
                    for p, s in zip(pending, scores):
                        rows.append({**p, "refined": False, "p1": s.probs[1], "p2": s.probs[2], "p3": s.probs[3],
                                     "expected_score": s.expected, "label": s.label, "round": round_no})
                    # Refine level-2 pairs, then label the rewrites.
                    to_refine = [r for r in rows if r["label"] == rules.refine_label]
                    if to_refine:
                        gens, gstats = generate_cached(
                            refiner_backend, cache,
                            [refine_prompt(r["instruction"], r["response"], lang.name) for r in to_refine],
                            REFINE_PARAMS, REFINE_TASK)
                        counters["cache_hits"] += gstats.hits
                        counters["cache_misses"] += gstats.misses
                        usable = []
                        for r, g in zip(to_refine, gens):
                            why = refined_rejection(g.text, r["response"], lang.code, identifier, rules)
                            if why:
                                counters[why.split(":")[0]] += 1
                            else:
                                usable.append({**r, "response": g.text.strip(), "refined": True,
                                               "pair_id": stable_hash(r["pair_id"], "refined", g.text.strip())})
                        if usable:
                            rescored, _ = _score(curator_backend, cache, [(u["instruction"], u["response"]) for u in usable],
                                                 lang.name, context, f"scored_pairs:{lang.code}:refined{round_no}")
                            for u, s in zip(usable, rescored):
                                u.update(p1=s.probs[1], p2=s.probs[2], p3=s.probs[3], expected_score=s.expected,
                                         label=s.label)
                            rows += usable
                    for r in rows:
                        best = final.get(r["doc_id"])
                        if best is None or (r["label"], r["expected_score"]) > (best["label"], best["expected_score"]):
                            final[r["doc_id"]] = r
                        history.append({**r, "generator": generator})
                    if round_no == config.rounds:
                        break
                    # Self-training: the generator learns from this language's accepted pairs (plus the seeds), then
                    # writes new instructions for the texts whose pairs were not accepted.
                    accepted = [r for r in final.values() if r["label"] >= rules.accept_label]
                    retry_docs = [r for r in final.values() if r["label"] < rules.accept_label]
                    if not accepted or not retry_docs:
                        break
                    generator = _self_train(context, warehouse, registry, models, training_launcher, storage, lang,
                                            accepted, round_no, first_generator, config.self_training_steps)
                    pending = _regenerate(context, inference, cache, generator, retry_docs, identifier, lang.code)
                    counters["regeneration_dropped"] += len(retry_docs) - len(pending)
            out_rows = []
            for r in final.values():
                status = "accepted" if r["label"] >= rules.accept_label else "rejected"
                out_rows.append({**{k: r[k] for k in SCORED_COLUMNS if k != "status"}, "status": status})
            with retry_transient(context), storage.scratch_dir(f"scored-{lang.code}") as scratch:
                staged, rounds_file = scratch / "scored.parquet", scratch / "rounds.parquet"
                pq.write_table(pa.Table.from_pylist(out_rows) if out_rows else _empty_scored(), staged)
                pq.write_table(pa.Table.from_pylist([{k: h.get(k) for k in (
                    "round", "pair_id", "doc_id", "instruction", "label", "expected_score", "refined", "generator")}
                    for h in history]) if history else pa.table({"round": pa.array([], pa.int64())}), rounds_file)
                replace_scored(warehouse, lang.code, staged if out_rows else None, rounds_file if history else None)
            labels = Counter(r["label"] for r in out_rows)
            accepted_count = sum(r["status"] == "accepted" for r in out_rows)
            per_round = round_summaries(history, rules.accept_label)
            outcome = OutputOutcome(len(candidates), accepted_count,
                                    none_accepted_reason(label_counts(labels.elements()), rules.accept_label))
            not_empty.add(lang.code, outcome.passed, outcome.metadata())
            return {
                "dagster/row_count": len(out_rows),
                "candidates_in": len(candidates),
                "accepted": accepted_count,
                "refined_accepted": sum(r["status"] == "accepted" and r["refined"] for r in out_rows),
                "labels": counts_table({f"label {k}": v for k, v in sorted(labels.items())}, key="label"),
                "score_histogram": _histogram([r["expected_score"] for r in out_rows]) if out_rows else "no pairs",
                "refinement_drops": counts_table({k: v for k, v in counters.items() if k.startswith("refine")}),
                "cache_hits": counters["cache_hits"],
                "cache_misses": counters["cache_misses"],
                "model_loads": model_loads() - loads_before,
                "curator": grading.describe(),
                "refiner": rewriting.describe(),
                "rounds": config.rounds,
                "rounds_run": len(per_round),
                "per_round": markdown_table(
                    [(r.round, r.graded, r.accepted, r.refined, r.rejected,
                      _under(r.generator, storage.paths.models)) for r in per_round],
                    ["round", "graded", "accepted", "refined", "rejected", "generator"]),
                "regeneration_dropped": counters["regeneration_dropped"],
                "examples": markdown_table([(r["label"], round(r["expected_score"], 2), r["refined"], r["instruction"])
                                            for r in out_rows[:8]], ["label", "score", "refined", "instruction"]),
            }

        try:
            results = for_each_language(context, languages, curate_language)
        finally:
            curator_backend.close()
            refiner_backend.close()
        for code, metadata in results.items():
            add_language_metadata(context, code, metadata)
        yield MaterializeResult()
        yield not_empty.result()

    return [scored_pairs]


def _under(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` when it lies inside it (a checkpoint under the models folder), else as is."""
    try:
        return str(Path(path).resolve().relative_to(folder.resolve()))
    except ValueError:
        return path


def _empty_scored() -> pa.Table:
    types = {"refined": pa.bool_(), "label": pa.int64(), "round": pa.int64()}
    for name in ("p1", "p2", "p3", "expected_score"):
        types[name] = pa.float64()
    return pa.table({c: pa.array([], types.get(c, pa.string())) for c in SCORED_COLUMNS})


SELF_TRAINING_DIR = "instruction_generator_selftrain"


def _self_train(context, warehouse, registry, models, launcher, storage, lang, accepted, round_no, shared_generator,
                steps) -> str:
    """The generator of round ``round_no + 1`` for ``lang``: the shared generator trained further, with the
    generator's own training function, on the seeds plus this language's accepted pairs. Content-addressed (the
    data file is named by its hash, the run folder by the settings and the starting checkpoint): the same pairs
    give the same checkpoint, reused. The shared ``instruction_generator`` is never modified."""
    with storage.scratch_dir(f"selftrain-{lang.code}") as scratch:
        data = scratch / "rows.jsonl"
        export_seed_rows(warehouse, registry, data)
        with open(data, "a", encoding="utf-8") as out:
            for r in sorted(accepted, key=lambda r: r["pair_id"]):
                out.write(json.dumps({"instruction": r["instruction"], "response": r["response"],
                                      "lang_name": lang.name}, ensure_ascii=False) + "\n")
        data_dir = storage.paths.models / SELF_TRAINING_DIR / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        data_file = data_dir / f"selftrain-{lang.code}-{file_sha256(data)[:16]}.jsonl"
        if not data_file.exists():
            data.replace(data_file)
    context.log.info(f"{lang.code}: self-training after round {round_no}: the shared generator trained on "
                     f"{len(accepted)} accepted pairs + seeds")
    path, _ = train_generator(context, models, launcher, storage, data_file, f"{SELF_TRAINING_DIR}/{lang.code}",
                              start=shared_generator, max_steps=steps)
    return path


def _regenerate(context, inference, cache, generator, rows, identifier, lang_code) -> list[dict]:
    """New instructions for the texts of ``rows`` from ``generator``; candidate filters applied."""
    backend = LazyBackend(inference, generator)
    try:
        gens, _ = generate_cached(backend, cache, [generation_prompt(r["response"]) for r in rows],
                                  GENERATION_PARAMS, GENERATION_TASK)
    finally:
        backend.close()
    instructions = [clean_instruction(g.text) for g in gens]
    reasons = candidate_rejections(instructions, [r["response"] for r in rows], [g.finish_reason for g in gens],
                                   identifier, CandidateRules())
    return [{"pair_id": stable_hash(lang_code, r["doc_id"], i), "doc_id": r["doc_id"], "instruction": i,
             "response": r["response"], "source_url": r["source_url"]}
            for r, i, why in zip(rows, instructions, reasons) if why is None]
