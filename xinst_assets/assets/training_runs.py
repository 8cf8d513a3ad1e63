"""Running a training job from an asset: content-addressed output folders, launched through Dagster Pipes.

A run's folder is named by its fingerprint: its settings and the SHA-256 of its data files, with every path
inside the data home written relative to it (``$XINST_HOME/models/...``), so the same run gets the same folder
wherever the home is, and a home moved elsewhere reuses every finished run. One process at a time trains into
a folder (a lock beside it); another process that wants the same run waits, then finds it finished.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, PipesSubprocessClient

from xinst_assets.core.locks import file_lock
from xinst_assets.resources.training import TrainingLauncher
from xinst_assets.training.config import TrainConfig
from xinst_assets.training.trainer import LINEAGE_FILE, finished_result

HOME_MARK = "$XINST_HOME"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _rebased(value: Any, old_root: str, new_root: str) -> Any:
    """``value`` with every string path under ``old_root`` moved under ``new_root`` (dicts and lists walked)."""
    if isinstance(value, str):
        if value == old_root or value.startswith(old_root.rstrip(os.sep) + os.sep):
            return new_root + value[len(old_root.rstrip(os.sep)):]
        return value
    if isinstance(value, dict):
        return {k: _rebased(v, old_root, new_root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rebased(v, old_root, new_root) for v in value]
    return value


def portable(value: Any, home: Path) -> Any:
    """``value`` with every path inside the data ``home`` written as ``$XINST_HOME/<relative path>``."""
    return _rebased(value, os.path.abspath(home), HOME_MARK)


def run_fingerprint(config: dict[str, Any], data_files: list[Path], home: Path | None = None) -> str:
    """Identifies a run by its settings and the content of its data: same fingerprint, same checkpoint. With
    ``home``, paths inside it count relative to it (a moved home keeps its fingerprints)."""
    described = {k: v for k, v in config.items() if k != "output_dir"}
    if home is not None:
        described = portable(described, home)
    described["data_sha256"] = [file_sha256(p) for p in data_files]
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _moved_roots(old_dir: str, new_dir: Path) -> list[tuple[str, str]]:
    """Each (old root, new root) such that ``new_dir`` is ``old_dir`` moved with that root: the two paths end
    the same way below it; the deepest root first (empty when they are the same place or end differently)."""
    old, new = Path(old_dir).parts, Path(os.path.abspath(new_dir)).parts
    common = 0
    while common < min(len(old), len(new)) and old[-1 - common] == new[-1 - common]:
        common += 1
    if common == len(old) and common == len(new):
        return []
    return [(str(Path(*old[: len(old) - k])), str(Path(*new[: len(new) - k]))) for k in range(1, common + 1)
            if len(old) > k and len(new) > k]


def finished_run(run_dir: Path, config: TrainConfig) -> dict[str, Any] | None:
    """``{global_step, final_loss}`` of a finished run of ``config`` in ``run_dir``, or None. A run finished
    before its folder moved (with the data home) counts when its recorded settings equal these once the paths
    that moved with it are moved too."""
    finished = finished_result(run_dir, config)
    if finished is not None:
        return {"global_step": finished.global_step, "final_loss": finished.final_loss}
    lineage_file = run_dir / LINEAGE_FILE
    if not lineage_file.is_file() or not any(run_dir.glob("*.safetensors")):
        return None
    try:
        lineage = json.loads(lineage_file.read_text(encoding="utf-8"))
        recorded, step = lineage["config"], int(lineage["global_step"])
        roots = _moved_roots(recorded["output_dir"], run_dir)
    except (ValueError, KeyError, TypeError):
        return None
    wanted = json.loads(json.dumps(config.to_dict()))  # as the lineage file holds it (lists, not tuples)
    for old_root, new_root in roots:
        if _rebased(recorded, old_root, new_root) == wanted:
            return {"global_step": step, "final_loss": lineage.get("final_loss"), "moved_from": old_root}
    return None


def launch_training(
    context: AssetExecutionContext,
    launcher: TrainingLauncher,
    config: TrainConfig,
    run_dir: Path,
) -> dict[str, Any]:
    """Train in a separate process through Pipes; return the metadata the training process reported.

    A folder that already holds a finished run of the same config (also one moved here with the data home) is
    reused: no process, no model loaded, ``reused`` in the result. An interrupted run resumes from its last
    checkpoint. A process that finds another one training into the folder waits for it (logging every 30 s),
    then reuses its run, or resumes it if that process died.
    """
    def waiting(waited: float) -> None:
        context.log.info(f"training: another process is training into {run_dir}; waiting ({waited:.0f}s so far)")

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(run_dir.parent / f".{run_dir.name}.lock", exclusive=True, timeout_s=None,
                   what=f"training lock of {run_dir}", on_wait=waiting):
        finished = finished_run(run_dir, config)
        if finished is not None:  # no process to start, no model to load
            moved = f" (trained under {finished['moved_from']}, moved here)" if "moved_from" in finished else ""
            context.log.info(f"training: {run_dir} already holds this finished run (step {finished['global_step']})"
                             f"{moved}; reused")
            return {"reused": True, **finished}
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path = config.to_json(run_dir / "run.json")
        command = launcher.command(config_path)
        context.log.info(f"training: {' '.join(command)}")
        invocation = PipesSubprocessClient().run(command=command, context=context,
                                                 env={"TOKENIZERS_PARALLELISM": "false"})
        reported: dict[str, Any] = {"reused": False}
        for result in invocation.get_results():
            reported.update({k: getattr(v, "value", v) for k, v in (result.metadata or {}).items()})
        return reported
