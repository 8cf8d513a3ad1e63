"""End-to-end training runs on a tiny model: save, reload, resume, generator task, LoRA, AFP, InstructAlign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xinst_assets.core.portable_checkpoint import portability_problems
from xinst_assets.training import TrainConfig, train
from xinst_assets.training.data import IGNORE_INDEX, file_fingerprint
from xinst_assets.training.trainer import LINEAGE_FILE, prepare_data
from xinst_assets_tests.training.conftest import INSTRUCTION_ROWS


def _config(model: Path, out: Path, data: Path | None, **kwargs) -> TrainConfig:
    settings: dict = {
        "base_model": str(model),
        "output_dir": str(out),
        "data_files": (str(data),) if data else (),
        "max_steps": 4,
        "save_steps": 2,
        "logging_steps": 1,
        "per_device_batch_size": 2,
        "learning_rate": 1e-3,
        "max_length": 256,
    }
    settings.update(kwargs)
    return TrainConfig(**settings)


class CrashAfterSave:
    """A callback that kills the run right after the checkpoint of ``step`` is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __getattr__(self, name):  # every other TrainerCallback event: do nothing
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated crash after step {self.step}")


def _generate(folder: Path, prompt: str) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :])


def test_a_finished_run_leaves_a_folder_that_reloads_generates_and_records_its_lineage(
    tiny_model_dir, instruction_file, tmp_path
):
    out = tmp_path / "out"
    lines: list[str] = []
    result = train(_config(tiny_model_dir, out, instruction_file), log=lines.append)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "training_args.bin", LINEAGE_FILE):
        assert (out / name).is_file(), name
    _generate(out, "Hello")
    lineage = json.loads((out / LINEAGE_FILE).read_text())
    [record] = lineage["data_files"]
    assert record["sha256"] == file_fingerprint(instruction_file)
    assert (record["rows"], record["examples"]) == (len(INSTRUCTION_ROWS), len(INSTRUCTION_ROWS))
    assert lineage["base_model"]["id"] == str(tiny_model_dir)
    assert lineage["config"]["max_steps"] == 4 and lineage["task"] == "sft"
    assert [step for step, _ in lineage["loss_curve"]] == [1, 2, 3, 4]
    assert lineage["final_loss"] == lineage["loss_curve"][-1][1] == result.final_loss
    assert result.global_step == 4 and result.tokens_per_s > 0
    assert json.loads((out / "config.json").read_text())["use_cache"] is True
    assert portability_problems(out) == []  # transformers 4.x loads it too
    assert any("step 4/4" in line and "tokens/s" in line and "left" in line for line in lines)


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tiny_model_dir, instruction_file, tmp_path):
    out = tmp_path / "out"
    config = _config(tiny_model_dir, out, instruction_file)
    with pytest.raises(KeyboardInterrupt, match="simulated crash after step 2"):
        train(config, callbacks=[CrashAfterSave(2)])
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-4").exists()
    assert not (out / LINEAGE_FILE).exists()

    result = train(config)
    assert result.resumed_from == str(out / "checkpoint-2")
    assert (result.global_step, result.steps_this_run) == (4, 2)
    # The curve holds the first process's steps too (restored from the checkpoint's trainer state).
    assert [step for step, _ in result.loss_curve] == [1, 2, 3, 4]

    uninterrupted = train(_config(tiny_model_dir, tmp_path / "straight", instruction_file))
    assert result.final_loss == pytest.approx(uninterrupted.final_loss, abs=1e-4)


def test_a_generator_run_trains_with_the_loss_on_the_instruction_only(
    tiny_model_dir, instruction_file, tmp_path
):
    from transformers import AutoTokenizer

    config = _config(tiny_model_dir, tmp_path / "gen", instruction_file, task="generator")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = prepare_data(config, tokenizer)
    instructions = set()
    for index in range(len(data.dataset)):
        item = data.dataset[index]
        target = [t for t in item["labels"].tolist() if t != IGNORE_INDEX]
        assert target[-1] == tokenizer.eos_token_id
        instructions.add(tokenizer.decode(target[:-1]))
        assert "### English Instruction:\n" in tokenizer.decode(
            item["input_ids"][item["labels"] == IGNORE_INDEX]
        )
    assert instructions == {r["instruction"] for r in INSTRUCTION_ROWS}
    result = train(config)
    assert result.global_step == 4
    _generate(tmp_path / "gen", "Below is a text")


def test_a_lora_run_saves_the_merged_model_and_keeps_the_adapter(tiny_model_dir, instruction_file, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    config = _config(
        tiny_model_dir, out, instruction_file, lora={"enabled": True, "r": 4, "alpha": 8}, learning_rate=1e-2
    )
    result = train(TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))))
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    merged = load_file(out / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert not any("lora" in key for key in merged)
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert any("q_proj" in k for k in changed)  # the adapters were merged into the linear layers
    assert result.adapter_dir == str((out / "adapter").resolve())
    assert portability_problems(out) == []
    _generate(out, "Hello")


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_an_afp_run_adds_the_contrastive_loss_and_cross_lingual_samples(
    tiny_model_dir, instruction_file, parallel_file, tmp_path, packing
):
    out = tmp_path / "afp"
    config = _config(
        tiny_model_dir,
        out,
        instruction_file,
        packing=packing,
        afp={"enabled": True, "parallel_files": [{"path": str(parallel_file), "lang": "id"}]},
    )
    result = train(config)
    lineage = json.loads((out / LINEAGE_FILE).read_text())
    # Each instruction row also appears in AFP's "{instruction} Answer in {lang}: {output}" format.
    assert lineage["data_stats"]["kept"] == 2 * len(INSTRUCTION_ROWS)
    assert lineage["data_stats"]["afp_pairs"] == 8
    assert [f["role"] for f in lineage["data_files"]] == ["instructions", "afp_pairs"]
    from transformers.trainer_utils import get_last_checkpoint

    state = json.loads((Path(get_last_checkpoint(str(out))) / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "loss" in e]
    assert all("contrastive_loss" in e and "lm_loss" in e for e in logged)
    for entry in logged:  # loss = 1.0 * contrastive + 1.5 * lm
        assert entry["loss"] == pytest.approx(entry["contrastive_loss"] + 1.5 * entry["lm_loss"], rel=1e-3)
    assert result.global_step == 4


def test_an_instructalign_run_mixes_alignment_and_replay_one_to_one(
    tiny_model_dir, instruction_file, parallel_file, tmp_path
):
    out = tmp_path / "ia"
    config = _config(
        tiny_model_dir,
        out,
        None,
        instructalign={
            "enabled": True,
            "parallel_files": [{"path": str(parallel_file), "lang": "id"}],
            "replay_files": [str(instruction_file)],
        },
    )
    result = train(config)
    stats = json.loads((out / LINEAGE_FILE).read_text())["data_stats"]
    aligned = sum(
        v for k, v in stats.items() if k.startswith("instructalign_") and k != "instructalign_replay"
    )
    assert aligned == 8 and stats["instructalign_replay"] == 8
    assert result.global_step == 4


def test_packing_and_padding_give_the_same_first_step_loss(tiny_model_dir, instruction_file, tmp_path):
    rows = len(INSTRUCTION_ROWS)
    common = {"max_steps": 1, "max_length": 512, "learning_rate": 1e-5}
    padded = train(
        _config(tiny_model_dir, tmp_path / "pad", instruction_file, per_device_batch_size=rows, **common)
    )
    packed = train(
        _config(
            tiny_model_dir,
            tmp_path / "pack",
            instruction_file,
            per_device_batch_size=rows,
            packing=True,
            **common,
        )
    )
    # One step over all rows either way: the mean token loss must not depend on packing.
    assert packed.loss_curve[0][1] == pytest.approx(padded.loss_curve[0][1], abs=1e-4)


def test_a_crash_after_the_final_checkpoint_is_saved_without_an_extra_step(
    tiny_model_dir, instruction_file, tmp_path
):
    out = tmp_path / "out"
    config = _config(tiny_model_dir, out, instruction_file)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[CrashAfterSave(4)])
    assert not (out / "model.safetensors").exists()
    result = train(config)
    # transformers' Trainer would run a fifth step when resumed from the last one; train() saves instead.
    assert (result.global_step, result.steps_this_run) == (4, 0)
    assert (out / "model.safetensors").is_file() and not (out / "checkpoint-5").exists()


def test_rerunning_a_finished_run_does_nothing_and_returns_its_record(
    tiny_model_dir, instruction_file, tmp_path
):
    config = _config(tiny_model_dir, tmp_path / "out", instruction_file)
    first = train(config)
    lines: list[str] = []
    again = train(config, log=lines.append)
    assert again.steps_this_run == 0 and again.global_step == first.global_step
    assert again.loss_curve == first.loss_curve
    assert any("nothing to do" in line for line in lines)


def test_the_launch_configs_load_with_accelerate_and_deepspeed_shapes():
    from accelerate.commands.config.config_args import load_config_from_file

    launch = Path(__file__).resolve().parents[2] / "xinst_assets" / "training" / "launch"
    fsdp = load_config_from_file(str(launch / "fsdp.yaml"))
    assert fsdp.distributed_type == "FSDP" and fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    ddp = load_config_from_file(str(launch / "accelerate_multi_gpu.yaml"))
    assert ddp.distributed_type == "MULTI_GPU"
    zero3 = json.loads((launch / "deepspeed_zero3.json").read_text())
    assert zero3["zero_optimization"]["stage"] == 3
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
