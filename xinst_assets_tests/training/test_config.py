"""TrainConfig: JSON round trip, defaults with their sources, clear errors."""

from __future__ import annotations

import json

import pytest

from xinst_assets.training.config import DataFile, TrainConfig


def _config(**kwargs):
    base = {"base_model": "some/model", "output_dir": "out", "data_files": ["train.jsonl"]}
    return TrainConfig.from_dict({**base, **kwargs})


def test_a_config_survives_a_json_round_trip(tmp_path):
    config = _config(
        data_files=["a.jsonl", {"path": "b.parquet", "lang": "vi"}],
        lora={"enabled": True, "target_modules": ["q_proj", "v_proj"]},
        afp={"enabled": True, "parallel_files": [{"path": "p.jsonl", "lang": "id"}], "symmetric": True},
        instructalign={
            "enabled": True,
            "parallel_files": ["p.jsonl"],
            "replay_files": ["r.jsonl"],
            "objective_weights": {"translation": 2, "semantic_similarity": 1},
        },
    )
    path = config.to_json(tmp_path / "run.json")
    again = TrainConfig.from_json(path)
    assert again == config
    assert again.data_files == (DataFile("a.jsonl"), DataFile("b.parquet", "vi"))
    assert again.lora.target_modules == ("q_proj", "v_proj")
    assert json.loads(path.read_text())["afp"]["temperature"] == 0.05


def test_defaults_follow_afp_and_instructalign():
    config = _config()
    assert (config.max_length, config.lr_scheduler, config.warmup_ratio) == (512, "cosine", 0.03)
    assert config.effective_learning_rate == 1e-5
    assert _config(lora={"enabled": True}).effective_learning_rate == 2e-4
    assert _config(learning_rate=3e-5, lora={"enabled": True}).effective_learning_rate == 3e-5
    afp = config.afp
    assert (afp.layer, afp.temperature, afp.weight_contrastive, afp.weight_lm) == (1, 0.05, 1.0, 1.5)
    ia = config.instructalign
    assert (ia.infill_prob, ia.deletion_prob, ia.replay_ratio) == (0.2, 0.2, 1.0)


def test_unknown_keys_are_rejected_with_the_known_ones_listed():
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rat'\]"):
        _config(learning_rat=1e-5)
    with pytest.raises(ValueError, match=r"afp: unknown keys \['temp'\]"):
        _config(afp={"temp": 0.1})


def test_inconsistent_settings_are_all_reported_at_once():
    with pytest.raises(ValueError) as info:
        _config(task="chat", afp={"enabled": True}, max_steps=0)
    message = str(info.value)
    assert "task must be one of ('sft', 'generator', 'curator')" in message
    assert "afp.enabled needs afp.parallel_files" in message
    assert "max_steps must be >= 1" in message


def test_instructalign_without_replay_files_must_turn_replay_off():
    with pytest.raises(ValueError, match="replay_ratio > 0 needs instructalign.replay_files"):
        _config(instructalign={"enabled": True, "parallel_files": ["p.jsonl"]})
    config = _config(
        data_files=[], instructalign={"enabled": True, "parallel_files": ["p.jsonl"], "replay_ratio": 0}
    )
    assert config.data_files == ()
