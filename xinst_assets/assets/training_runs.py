"""Running a training job from an asset: content-addressed output folders, launched through Dagster Pipes."""

import hashlib
import json
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, PipesSubprocessClient

from xinst_assets.resources.training import TrainingLauncher
from xinst_assets.training.config import TrainConfig
from xinst_assets.training.trainer import finished_result


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_fingerprint(config: dict[str, Any], data_files: list[Path]) -> str:
    """Identifies a run by its settings and the content of its data: same fingerprint, same checkpoint."""
    described = {k: v for k, v in config.items() if k != "output_dir"}
    described["data_sha256"] = [file_sha256(p) for p in data_files]
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]


def launch_training(
    context: AssetExecutionContext,
    launcher: TrainingLauncher,
    config: TrainConfig,
    run_dir: Path,
) -> dict[str, Any]:
    """Train in a separate process through Pipes; return the metadata the training process reported.

    A folder that already holds a finished run of the same config is reused by the trainer (no retraining);
    an interrupted run resumes from its last checkpoint.
    """
    finished = finished_result(run_dir, config)
    if finished is not None:  # no process to start, no model to load
        context.log.info(f"training: {run_dir} already holds this finished run (step {finished.global_step}); reused")
        return {"reused": True, "global_step": finished.global_step, "final_loss": finished.final_loss}
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = config.to_json(run_dir / "run.json")
    command = launcher.command(config_path)
    context.log.info(f"training: {' '.join(command)}")
    invocation = PipesSubprocessClient().run(command=command, context=context, env={"TOKENIZERS_PARALLELISM": "false"})
    reported: dict[str, Any] = {}
    for result in invocation.get_results():
        reported.update({k: getattr(v, "value", v) for k, v in (result.metadata or {}).items()})
    return reported
