"""The command-line entry point: a plain subprocess, two processes under torchrun, and Dagster Pipes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import dagster as dg
import pytest

from xinst_assets.training import TrainConfig
from xinst_assets.training.trainer import LINEAGE_FILE
from xinst_assets_tests import processes

REPO = Path(__file__).resolve().parents[2]


def _run_json(tmp_path: Path, model: Path, data: Path, out: Path) -> Path:
    config = TrainConfig(
        base_model=str(model),
        output_dir=str(out),
        data_files=(str(data),),
        max_steps=4,
        save_steps=2,
        logging_steps=1,
        per_device_batch_size=2,
        learning_rate=1e-3,
        max_length=256,
    )
    return config.to_json(tmp_path / "run.json")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PIPES")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_the_cli_trains_as_a_plain_subprocess(tiny_model_dir, instruction_file, tmp_path):
    out = tmp_path / "out"
    run = _run_json(tmp_path, tiny_model_dir, instruction_file, out)
    proc = processes.run([sys.executable, "-m", "xinst_assets.training", "--config", str(run)], env=_env(),
                         cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[train] step 4/4 (100.0%)" in proc.stderr
    assert json.loads((out / LINEAGE_FILE).read_text())["global_step"] == 4


def test_the_cli_without_a_config_exits_with_a_usage_error(capsys):
    from xinst_assets.training.__main__ import main

    assert main([]) == 2
    assert "--config run.json is required" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_under_torchrun_share_the_work_and_rank_0_writes_the_lineage(
    tiny_model_dir, instruction_file, tmp_path
):
    out = tmp_path / "ddp"
    run = _run_json(tmp_path, tiny_model_dir, instruction_file, out)
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = processes.run([str(torchrun), "--nproc_per_node", "2", "-m", "xinst_assets.training", "--config",
                          str(run)], env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lineage = json.loads((out / LINEAGE_FILE).read_text())
    assert lineage["world_size"] == 2 and lineage["global_step"] == 4
    # Progress lines come from rank 0 only.
    assert proc.stderr.count("[train] step 4/4") == 1
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)


@pytest.mark.slow
def test_under_dagster_pipes_the_run_reports_its_materialization(tiny_model_dir, instruction_file, tmp_path):
    out = tmp_path / "pipes"
    run = _run_json(tmp_path, tiny_model_dir, instruction_file, out)

    @dg.asset(required_resource_keys={"pipes_subprocess_client"})
    def tuned_checkpoint(
        context,
    ):  # no annotations: this module's are strings, which Dagster cannot resolve here
        return context.resources.pipes_subprocess_client.run(
            command=[sys.executable, "-m", "xinst_assets.training", "--config", str(run)],
            context=context,
            env={"PYTHONPATH": str(REPO)},
        ).get_materialize_result()

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [tuned_checkpoint],
        resources={"pipes_subprocess_client": dg.PipesSubprocessClient(cwd=str(tmp_path))},
        instance=instance,
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("tuned_checkpoint")
    meta = materialization.metadata
    assert meta["global_step"].value == 4
    assert meta["output_path"].value == str(out.resolve())
    assert meta["tokens_per_s"].value > 0
    assert isinstance(meta["final_loss"].value, float)
    # Progress lines reach the Dagster run log through pipes.log.
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("[train] step 4/4" in m and "tokens/s" in m for m in messages)
