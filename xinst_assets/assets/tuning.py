"""Stages 6 and 7: the tuned checkpoint (SFT, optionally AFP and InstructAlign) and its evaluation."""

import json
from collections import Counter
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from xinst_assets.assets.benchmark_runs import run_benchmarks
from xinst_assets.store.checkpoints import checkpoint_history, record_checkpoint
from xinst_assets.assets.model_roles import (
    RoleError,
    resolve_answer_models,
    resolve_judge,
    self_judge_problem,
)
from xinst_assets.assets.generation import DEMO_LEARNING_RATE
from xinst_assets.assets.ranges import LanguageCheck
from xinst_assets.assets.reporting import loss_curve_markdown, markdown_table
from xinst_assets.assets.training_runs import file_sha256, launch_training, run_fingerprint
from xinst_assets.assets.transient import retry_transient
from xinst_assets.core.continual import START_KEYWORDS, resolve_start, select_replay
from xinst_assets.core.curated import REPLAY_LANG
from xinst_assets.core.emptiness import CHECK_NAME as NOT_EMPTY, OutputOutcome, all_dropped_reason
from xinst_assets.core.evaluation import heldout_loss, language_fidelity, pairwise_verdict
from xinst_assets.core.progress import Progress
from xinst_assets.core.prompts import greedy, pairwise_judge_prompt, response_prompt
from xinst_assets.inference.cache import GenerationCache, generate_cached
from xinst_assets.languages import LanguageRegistry
from xinst_assets.resources.inference import AnswerModelRole, InferenceSettings, ModelRole
from xinst_assets.resources.lid import LidModel
from xinst_assets.resources.models import ModelSettings
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.resources.training import TrainingLauncher
from xinst_assets.store import Store
from xinst_assets.store.tuning import evaluation_inputs, replace_evaluation, training_rows
from xinst_assets.training.config import TrainConfig
from xinst_assets.training.data import PIVOT_NAME

class TuningConfig(Config):
    """Settings of the tuned checkpoint (editable per run in the launchpad)."""

    languages: list[str] | None = Field(default=None, description="Languages to train on (None: all with data).")
    lora: bool = Field(default=False, description="LoRA adapters (merged at the end) instead of full fine-tuning.")
    packing: bool = Field(default=True, description="Pack several samples per sequence (no cross-sample leakage).")
    afp: bool = Field(default=False, description="Add AFP's multilingual contrastive loss on parallel pairs.")
    instructalign: bool = Field(
        default=False, description="Continual InstructAlign: alignment objectives on parallel_pairs, with the "
        "replay_instructions interleaved at replay_ratio, starting (start_from auto) from the previous tuned "
        "checkpoint.")
    replay_ratio: float = Field(
        default=1.0, ge=0.0, description="InstructAlign: replayed instruction rows per alignment example (1:1 in "
        "InstructAlign; 0 turns replay off).")
    start_from: str = Field(
        default="auto", description="Where training starts: auto (InstructAlign: the previous tuned checkpoint "
        "when there is one, else the base model; otherwise the base model) | base | previous | a folder or hub "
        "id of an instruction-tuned checkpoint.")
    max_steps: int | None = Field(default=None, description="Training steps (None: epochs).")
    epochs: float = Field(default=3.0, description="Epochs when max_steps is None.")
    learning_rate: float | None = Field(default=None, description="None: 1e-5 full FT / 2e-4 LoRA.")
    batch_size: int = Field(default=4, description="Per-device batch size.")
    max_length: int = Field(default=512, description="Tokens per sequence (AFP: 512).")


TRAINING_CHECK = "training_examples_not_empty"


def _training_examples_check(lineage: dict) -> AssetCheckResult:
    """Fails when a training input with rows gave no example (every row dropped), naming the reasons."""
    files = lineage.get("data_files", [])
    empty = [f for f in files if f.get("rows", 0) > 0 and f.get("examples", 0) == 0]
    reasons = [f"{f['role']} {Path(f['path']).name}: "
               + all_dropped_reason(f["rows"], "rows", "became examples", f.get("dropped", {})) for f in empty]
    table = markdown_table([(f["role"], Path(f["path"]).name, f.get("rows"), f.get("examples")) for f in files],
                           ["input", "file", "rows", "examples"])
    return AssetCheckResult(check_name=TRAINING_CHECK, asset_key="tuned_checkpoint", passed=not empty,
                            severity=AssetCheckSeverity.ERROR, description="; ".join(reasons) or None,
                            metadata={"inputs": table, **({"reason": "; ".join(reasons)} if reasons else {})})


class EvaluationConfig(Config):
    """Settings of the evaluation run."""

    max_new_tokens: int = Field(default=256, description="Longest answer generated per question.")
    allow_self_judge: bool = Field(
        default=False, description="Let the judge be the model under evaluation (off: such a run is refused). "
        "Recorded in the metadata: a model judging its own answers favours them."
    )
    benchmarks: list[str] = Field(
        default=["xnli", "xcopa", "xstorycloze"], description="Multiple-choice benchmarks scored with lm-eval "
        "for the tuned and the base model (empty: none)."
    )
    benchmarks_dir: str | None = Field(
        default=None, description="Folder of <benchmark>/<lang>.jsonl task files with the public releases' "
        "fields (None: the tiny sample files shipped with xinst, for the demo and tests)."
    )
    benchmark_limit: int | None = Field(default=None, description="First N examples per file (None: all).")


def _write_jsonl(rows, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _content_file(rows, folder: Path, stem: str, scratch: Path) -> Path:
    """Write rows to a file named by its content hash (so a run's fingerprint follows its data)."""
    tmp = _write_jsonl(rows, scratch / f"{stem}.jsonl")
    final = folder / f"{stem}-{file_sha256(tmp)[:16]}.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    if not final.exists():
        tmp.replace(final)
    return final


def build_tuning_assets(registry: LanguageRegistry) -> list:
    """``tuned_checkpoint`` and ``evaluation`` (both over all languages)."""
    names = {lang.code: lang.name for lang in registry}

    @asset(
        name="tuned_checkpoint",
        deps=["diversified_dataset", "parallel_pairs", "replay_instructions"],
        group_name="tuning",
        kinds={"python", "pytorch", "transformers"},
        owners=["team:ml"],
        pool="gpu",
        check_specs=[AssetCheckSpec(
            TRAINING_CHECK, asset="tuned_checkpoint", blocking=True,
            description="Every training input with rows (instructions, parallel pairs, replay) gives training "
            "examples; otherwise the check fails with the reasons every row was dropped.")],
        description=(
            "The base model fine-tuned on the diversified data with X-Instruction's response prompt ('Answer in "
            "{Language}.', the assistant-style variant for refined samples), loss on response tokens only, "
            "packing, full FT or LoRA; optionally AFP's contrastive alignment, and continual InstructAlign: "
            "alignment objectives on the parallel pairs with the replay_instructions (the original English "
            "instruction data, never the new data) interleaved 1:1, starting from the previous tuned checkpoint. "
            "Trained in its own process via Dagster Pipes (accelerate/torchrun for multi-GPU); resumes after a "
            "crash. Output: a Hugging Face folder; every checkpoint is recorded with what it was trained on and "
            "from (checkpoint_history)."
        ),
    )
    def tuned_checkpoint(
        context: AssetExecutionContext, config: TuningConfig, store: Store, models: ModelSettings,
        training_launcher: TrainingLauncher, storage: XinstStorage,
    ):
        wanted = config.languages or list(names)
        for code in wanted:
            registry.get(code)
        warehouse = store.open()
        with retry_transient(context):
            rows = training_rows(warehouse, wanted, parallel=config.afp or config.instructalign,
                                 replay_lang=REPLAY_LANG if config.instructalign else None)
        pairs, parallel, replay_stored = rows.pairs, rows.parallel, rows.replay
        if not pairs and not (config.instructalign and parallel):
            raise Failure("no training rows: materialize diversified_dataset for the chosen languages first")
        replay = select_replay([{"instruction": i, "response": r} for i, r in replay_stored],
                               [(i, r) for _, i, r, _ in pairs], [t for _, _, t in parallel] + [e for _, e, _ in parallel])
        replay_ratio = config.replay_ratio if config.instructalign else 0.0
        if replay_ratio > 0 and not replay.rows:
            raise Failure(
                "continual InstructAlign replays the instruction data the model learned before, and there is none: "
                "materialize replay_instructions (the embedded sample, or your files via "
                "CuratedSources.replay_instructions), or set replay_ratio to 0"
                + (f" ({replay.dropped_as_new_data} replay rows were part of the new data)" if replay_stored else ""))
        base = models.resolve_base_model(storage.paths.models, context.log.warning)
        demo = models.base_model is None
        data_dir = storage.paths.models / "tuned_checkpoint" / "data"
        with storage.scratch_dir("tuning-data") as scratch:
            sft_file = _content_file(
                [{"instruction": i, "response": r, "lang_name": names[lang], "refined": bool(ref)}
                 for lang, i, r, ref in pairs], data_dir, "sft", scratch)
            parallel_file = _content_file(
                [{"en": en, "text": text, "lang_name": names[lang]} for lang, en, text in parallel],
                data_dir, "parallel", scratch) if parallel else None
            replay_file = _content_file(
                [{**row, "lang_name": PIVOT_NAME} for row in replay.rows], data_dir, "replay", scratch
            ) if replay_ratio > 0 else None
        settings = dict(
            task="sft", data_files=[str(sft_file)] if pairs else [], output_dir="",
            packing=config.packing, max_length=config.max_length, lora={"enabled": config.lora},
            max_steps=config.max_steps, num_epochs=config.epochs,
            learning_rate=config.learning_rate or (DEMO_LEARNING_RATE if demo else None),
            per_device_batch_size=config.batch_size, logging_steps=5,
            save_steps=max(25, (config.max_steps or 500) // 4),
            afp={"enabled": config.afp, "parallel_files": [str(parallel_file)] if config.afp and parallel_file else []},
            instructalign={"enabled": config.instructalign,
                           "parallel_files": [str(parallel_file)] if config.instructalign and parallel_file else [],
                           "replay_files": [str(replay_file)] if replay_file else [],
                           "replay_ratio": replay_ratio},
        )
        data_files = [sft_file] + [f for f in (parallel_file, replay_file) if f]
        # What the run trains on, without where it starts: a rerun of the same run finds the same start point.
        data_fingerprint = run_fingerprint(settings, data_files, home=storage.paths.home)
        with retry_transient(context):
            history = checkpoint_history(warehouse, "tuned_checkpoint")
        try:
            start = resolve_start(config.start_from, config.instructalign, base, history, data_fingerprint,
                                  lambda path: (Path(path) / "config.json").is_file())
        except ValueError as exc:
            raise Failure(f"{exc} (known: {', '.join(START_KEYWORDS)})") from exc
        for line in start.skipped:
            context.log.info(f"start_from {config.start_from}: passed over {line}")
        context.log.info(f"tuning starts from {start.describe()}")
        settings["base_model"] = start.model
        fingerprint = run_fingerprint(settings, data_files, home=storage.paths.home)
        run_dir = storage.paths.models / "tuned_checkpoint" / fingerprint
        try:
            train_config = TrainConfig.from_dict({**settings, "output_dir": str(run_dir)})
        except ValueError as exc:
            raise Failure(str(exc)) from exc
        launch_training(context, training_launcher, train_config, run_dir)
        record_checkpoint(warehouse, "tuned_checkpoint", str(run_dir), fingerprint, data_fingerprint=data_fingerprint,
                          started_from=start.model, root_model=base, run_id=context.run_id)
        record_checkpoint(warehouse, "base_model", base, None)
        lineage = json.loads((run_dir / "xinst_training.json").read_text(encoding="utf-8"))
        per_lang = Counter(lang for lang, *_ in pairs)
        stats = lineage.get("data_stats", {})
        yield MaterializeResult(metadata={
            "path": MetadataValue.path(str(run_dir)),
            "base_model": base,
            "started_from": start.model,
            "start": start.how,
            "rows_by_language": markdown_table(sorted(per_lang.items()), ["lang", "pairs"]),
            "parallel_pairs": len(parallel),
            "replay_rows": len(replay.rows),
            "replay_rows_dropped_as_new_data": replay.dropped_as_new_data,
            "replay_ratio": replay_ratio,
            "examples_by_objective": markdown_table(
                sorted((k.removeprefix("instructalign_"), v) for k, v in stats.items() if k.startswith("instructalign_")),
                ["objective", "examples"]),
            "objectives": ", ".join(["sft"] + (["afp"] if config.afp else []) + (["instructalign"] if config.instructalign else [])),
            "steps": lineage.get("global_step"),
            "final_loss": lineage.get("final_loss"),
            "loss_curve": loss_curve_markdown(lineage.get("loss_curve", []), "tuned model loss"),
            "run_fingerprint": fingerprint,
            "data_fingerprint": data_fingerprint,
        })
        yield _training_examples_check(lineage)

    @asset(
        name="evaluation",
        deps=["tuned_checkpoint", "eval_questions", "seed_pairs"],
        group_name="tuning",
        kinds={"python", "transformers", "duckdb"},
        owners=["team:ml"],
        pool="gpu",
        check_specs=[AssetCheckSpec("tuned_not_worse_than_base", asset="evaluation",
                                    description="Warns when the tuned model loses to the base model in a language."),
                     AssetCheckSpec(NOT_EMPTY, asset="evaluation", blocking=True,
                                    description="Every language with evaluation questions gets at least one "
                                    "non-empty answer from the model under evaluation; otherwise the check fails "
                                    "with the reason.")],
        description=(
            "Per language, for the model under evaluation (answer_model; default: the tuned checkpoint) and its "
            "baseline (default: the base model): language fidelity (share of answers in the requested language), "
            "X-Instruction's pairwise judging (0-10 scores, both orders, win/tie/loss) by the judge resource "
            "(default: the curator; never the model under evaluation unless allow_self_judge), held-out loss "
            "on the seed pairs, and accuracy on multiple-choice benchmarks in the XNLI / XCOPA / XStoryCloze "
            "formats scored with lm-eval from local files. Tables: evaluation_results, evaluation_answers, "
            "evaluation_benchmarks."
        ),
    )
    def evaluation(
        context: AssetExecutionContext, config: EvaluationConfig, store: Store,
        inference: InferenceSettings, models: ModelSettings, lid_model: LidModel, storage: XinstStorage,
        answer_model: AnswerModelRole, judge: ModelRole, curator: ModelRole,
    ):
        warehouse = store.open()
        with retry_transient(context):
            try:
                tuned_role, base_role = resolve_answer_models(answer_model, inference, warehouse)
                judge_role = resolve_judge(judge, curator, models, inference, warehouse, storage.paths.models,
                                           context.log.warning)
            except RoleError as exc:
                raise Failure(f"evaluation: {exc}") from exc
            questions, heldout = evaluation_inputs(warehouse)
        self_judged = self_judge_problem(judge_role, tuned_role)
        if self_judged and not config.allow_self_judge:
            raise Failure(f"evaluation refused: {self_judged}")
        if self_judged:
            context.log.warning(f"allow_self_judge is on: {self_judged}")
        identifier = lid_model.identifier(registry)
        cache = GenerationCache.from_warehouse(warehouse)
        params = greedy(max_new_tokens=config.max_new_tokens, stop=("\n###",))
        answers: dict[str, list[str]] = {}
        for name, role in (("tuned", tuned_role), ("base", base_role)):
            backend = role.open()
            prompts = [response_prompt(q, names[lang]) for lang, _, q in questions]
            progress = Progress(f"evaluation:{name}", len(prompts), context.log.info, unit="answers")
            try:
                gens, _ = generate_cached(backend, cache, prompts, params, "evaluation_answer", progress.advance)
            finally:
                backend.close()
            answers[name] = [g.text.strip() for g in gens]
        judge_backend = judge_role.open()
        judge_params = greedy(max_new_tokens=48)
        first = [pairwise_judge_prompt(q, t, b, names[lang]) for (lang, _, q), t, b in
                 zip(questions, answers["tuned"], answers["base"])]
        second = [pairwise_judge_prompt(q, b, t, names[lang]) for (lang, _, q), t, b in
                  zip(questions, answers["tuned"], answers["base"])]
        try:
            judged, _ = generate_cached(judge_backend, cache, first + second, judge_params, "pairwise_judge")
        finally:
            judge_backend.close()
        verdicts = [pairwise_verdict(a.text, b.text) for a, b in zip(judged[: len(first)], judged[len(first):])]
        results, answer_rows = [], []
        for code in sorted({lang for lang, _, _ in questions}):
            idx = [i for i, (lang, _, _) in enumerate(questions) if lang == code]
            rows = [{"instruction": i, "response": r, "lang_name": names[code]} for lang, i, r in heldout if lang == code]
            tally = Counter(verdicts[i].verdict for i in idx)
            for name, role in (("tuned", tuned_role), ("base", base_role)):
                # Held-out loss needs the weights in process: not for a model behind an HTTP server.
                loss = heldout_loss(role.model, rows) if role.settings.backend != "openai" else None
                wins, losses = (tally["win"], tally["loss"]) if name == "tuned" else (tally["loss"], tally["win"])
                results.append((code, name, len(idx), language_fidelity([answers[name][i] for i in idx], code, identifier),
                                wins, tally["tie"], losses, tally["unjudged"], loss))
                answer_rows += [(code, questions[i][1], name, answers[name][i], verdicts[i].verdict) for i in idx]
        bench_rows, bench_metadata = run_benchmarks(
            context.log, storage, [("tuned", tuned_role), ("base", base_role)],
            sorted({lang for lang, _, _ in questions}), config.benchmarks, config.benchmarks_dir,
            config.benchmark_limit)
        with retry_transient(context):
            replace_evaluation(warehouse, results, answer_rows, bench_rows)
        table = [(r[0], r[1], f"{r[3]:.2f}", f"{r[4]}/{r[5]}/{r[6]}", r[7],
                  "-" if r[8] is None else f"{r[8]:.3f}") for r in results]
        yield MaterializeResult(metadata={
            "dagster/row_count": len(results),
            "results": markdown_table(table, ["lang", "model", "fidelity", "win/tie/loss", "unjudged", "held-out loss"]),
            "answer_model": tuned_role.describe(),
            "baseline": base_role.describe(),
            "judge": judge_role.describe(),
            "self_judge_override": bool(self_judged),
            "questions": len(questions),
            **bench_metadata,
        })
        worse = []
        by_key = {(r[0], r[1]): r for r in results}
        for code in {r[0] for r in results}:
            tuned, base = by_key[(code, "tuned")], by_key[(code, "base")]
            if tuned[4] < tuned[6] or tuned[3] < base[3]:
                worse.append(code)
        yield AssetCheckResult(check_name="tuned_not_worse_than_base", asset_key="evaluation", passed=not worse,
                               severity=AssetCheckSeverity.WARN,
                               metadata={"languages_worse": ", ".join(sorted(worse)) or "none"})
        answered = LanguageCheck(NOT_EMPTY, "evaluation", AssetCheckSeverity.ERROR)
        for code in sorted({lang for lang, _, _ in questions}):
            got = [answers["tuned"][i] for i, (lang, _, _) in enumerate(questions) if lang == code]
            outcome = OutputOutcome(len(got), sum(bool(a) for a in got),
                                    f"0 of {len(got)} questions got a non-empty answer from {tuned_role.model}")
            answered.add(code, outcome.passed, outcome.metadata())
        if answered.outcomes:
            yield answered.result()
        else:
            yield AssetCheckResult(check_name=NOT_EMPTY, asset_key="evaluation", passed=True,
                                   metadata={"reason": "no input: nothing to do"})

    return [tuned_checkpoint, evaluation]
