"""The multiple-choice benchmarks of the evaluation asset: which files, which models, where the scores go."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dagster import Failure

from xinst_assets.assets.model_roles import ResolvedRole
from xinst_assets.assets.reporting import markdown_table
from xinst_assets.core.benchmarks import (
    BenchmarkDataError,
    BenchmarkScore,
    find_task_files,
    lm_eval_model,
    predictions_constant_by_construction,
    read_docs,
    run_lm_eval,
)
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.settings import SAMPLE_DIR

SAMPLE_BENCHMARKS = SAMPLE_DIR / "benchmarks"


def run_benchmarks(
    log: Any, storage: XinstStorage, models: Sequence[tuple[str, ResolvedRole]], languages: Sequence[str],
    benchmarks: Sequence[str], data_dir: str | None, limit: int | None,
) -> tuple[list[tuple], dict[str, Any]]:
    """Score each (name, role) model on the benchmark files of ``languages``; return the table rows
    (benchmark, lang, model, examples, accuracy, predicted) and the metadata entries."""
    root = Path(data_dir).expanduser() if data_dir else SAMPLE_BENCHMARKS
    if data_dir and not root.is_dir():
        raise Failure(f"benchmarks_dir {root} is not a folder (expected <benchmark>/<lang>.jsonl files in it)")
    try:
        tasks = find_task_files(root, languages, benchmarks)
        for task in tasks:
            broken = predictions_constant_by_construction(task.benchmark, task.lang, read_docs(task, limit))
            if broken:
                raise Failure(f"{task.path}: the {task.benchmark} prompts cannot tell the examples apart "
                              f"({'; '.join(broken[:3])}): every prediction would be the same")
    except (BenchmarkDataError, ValueError) as exc:
        raise Failure(f"benchmarks: {exc}") from exc
    metadata: dict[str, Any] = {"benchmark_data": str(root)}
    if not tasks:
        metadata["benchmarks"] = f"no benchmark files for {', '.join(languages) or 'these languages'} in {root}"
        return [], metadata
    rows: list[tuple] = []
    skipped: list[tuple[str, str]] = []
    by_model: dict[str, dict[tuple[str, str], BenchmarkScore]] = {}
    for name, role in models:
        settings = role.settings
        try:
            model_type, args = lm_eval_model(
                settings.backend, role.model, dtype=settings.dtype, device=settings.device,
                batch_size=settings.batch_size, trust_remote_code=settings.trust_remote_code,
                tensor_parallel_size=settings.tensor_parallel_size,
                gpu_memory_utilization=settings.gpu_memory_utilization, max_model_len=settings.max_model_len)
        except ValueError as exc:
            skipped.append((name, str(exc)))
            continue
        log.info(f"benchmarks: scoring the {name} model on {len(tasks)} files with lm-eval ({model_type})")
        with storage.scratch_dir("benchmarks") as scratch:
            scores = run_lm_eval(model_type, args, tasks, scratch, limit, chat=role.chat)
        for score in scores:
            if score.constant:
                log.warning(f"benchmarks: the {name} model predicted choice {next(iter(score.predicted))} for all "
                            f"{score.examples} examples of {score.benchmark} {score.lang}")
            rows.append((score.benchmark, score.lang, name, score.examples, score.accuracy,
                         json.dumps({str(k): v for k, v in sorted(score.predicted.items())})))
        by_model[name] = {(s.benchmark, s.lang): s for s in scores}
    table = []
    for task in tasks:
        cells: list[Any] = [task.benchmark, task.lang]
        found = [by_model[name].get((task.benchmark, task.lang)) for name, _ in models if name in by_model]
        cells.append(next((s.examples for s in found if s is not None), "-"))
        for name, _ in models:
            score = by_model.get(name, {}).get((task.benchmark, task.lang))
            cells += ["-", "-"] if score is None else [
                f"{score.accuracy:.3f}", " ".join(f"{k}:{v}" for k, v in sorted(score.predicted.items()))]
        table.append(tuple(cells))
    headers = ["benchmark", "lang", "examples"]
    for name, _ in models:
        headers += [f"{name} accuracy", f"{name} predictions"]
    metadata["benchmarks"] = markdown_table(table, headers)
    if skipped:
        metadata["benchmarks_not_run"] = markdown_table(skipped, ["model", "why"])
    return rows, metadata
