"""Training runs and recorded checkpoints that do not depend on where the data home is: fingerprints with
paths relative to the home, finished runs recognised after a move, registry paths read at the new place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from xinst_assets.store.checkpoints import (
    checkpoint_history,
    current_checkpoint,
    record_checkpoint,
    registered_checkpoint,
)
from xinst_assets.assets.training_runs import finished_run, portable, run_fingerprint
from xinst_assets.resources.warehouse import Warehouse
from xinst_assets.training.config import TrainConfig
from xinst_assets.training.trainer import LINEAGE_FILE


def _settings(home: Path, base: str | None = None) -> dict:
    return dict(base_model=base or str(home / "models" / "demo-base-h32"), task="generator", output_dir="",
                data_files=[str(home / "models" / "instruction_generator" / "data" / "seed-1.jsonl")], max_steps=6)


def _data(home: Path, text: str = '{"instruction": "a", "response": "b"}\n') -> Path:
    path = home / "models" / "instruction_generator" / "data" / "seed-1.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_fingerprint_counts_paths_inside_the_home_relative_to_it_and_data_by_content(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two" / "xinst"
    same = [run_fingerprint(_settings(home), [_data(home)], home=home) for home in (one, two)]
    assert same[0] == same[1]
    assert run_fingerprint(_settings(two), [_data(two, "{}\n")], home=two) != same[0]  # other data
    outside = "/models/llama-base"  # a configured base model outside the home is part of what the run is
    assert run_fingerprint(_settings(one, outside), [_data(one)], home=one) != same[0]
    assert portable({"a": [str(one / "x")], "b": str(tmp_path / "one-more")}, one) == \
        {"a": ["$XINST_HOME/x"], "b": str(tmp_path / "one-more")}


def _finished(run_dir: Path, config: TrainConfig) -> None:
    """What a finished training leaves that the reuse check reads: weights and the lineage with its config."""
    run_dir.mkdir(parents=True)
    (run_dir / "model.safetensors").write_bytes(b"weights")
    (run_dir / LINEAGE_FILE).write_text(json.dumps({"config": config.to_dict(), "global_step": 6,
                                                    "final_loss": 1.5}), encoding="utf-8")


def _config(home: Path, base: str | None = None) -> TrainConfig:
    run_dir = home / "models" / "instruction_generator" / "abc"
    return TrainConfig.from_dict({**_settings(home, base), "output_dir": str(run_dir)})


def test_a_run_finished_before_its_home_moved_is_reused_and_one_with_other_settings_is_not(tmp_path):
    old, new = tmp_path / "old" / "home", tmp_path / "new" / "place"
    _finished(old / "models" / "instruction_generator" / "abc", _config(old))
    new.parent.mkdir()
    shutil.move(old, new)
    run_dir = new / "models" / "instruction_generator" / "abc"
    reused = finished_run(run_dir, _config(new))
    assert (reused["global_step"], reused["final_loss"]) == (6, 1.5) and reused["moved_from"].startswith(str(old))
    assert finished_run(run_dir, _config(new, "/models/other-base")) is None


def test_a_moved_run_whose_base_model_sat_beside_the_home_outside_it_is_still_reused(tmp_path):
    base = str(tmp_path / "data" / "base-model")  # a sibling of the home: it does not move with it
    old, new = tmp_path / "data" / "xinst", tmp_path / "mnt" / "xinst"
    _finished(old / "models" / "instruction_generator" / "abc", _config(old, base))
    new.parent.mkdir()
    shutil.move(old, new)
    assert finished_run(new / "models" / "instruction_generator" / "abc", _config(new, base)) is not None


def test_recorded_checkpoints_are_read_at_the_homes_new_place_and_outside_paths_as_recorded(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    warehouse = Warehouse(path=str(old / "warehouse.duckdb"))
    tuned_1, tuned_2 = str(old / "models" / "tuned_checkpoint" / "a"), str(old / "models" / "tuned_checkpoint" / "b")
    base = str(old / "models" / "demo-base-h32")
    record_checkpoint(warehouse, "tuned_checkpoint", tuned_1, "a", started_from=base, root_model=base)
    record_checkpoint(warehouse, "tuned_checkpoint", tuned_2, "b", started_from=tuned_1, root_model=base)
    record_checkpoint(warehouse, "judge", "/models/judge", None)
    shutil.move(old, new)

    moved = Warehouse(path=str(new / "warehouse.duckdb"))
    assert current_checkpoint(moved, "tuned_checkpoint") == str(new / "models" / "tuned_checkpoint" / "b")
    assert registered_checkpoint(moved, "tuned_checkpoint", as_recorded=True) == (tuned_2, "b")
    assert current_checkpoint(moved, "judge") == "/models/judge"
    latest = checkpoint_history(moved, "tuned_checkpoint")[0]
    assert (latest.path, latest.started_from, latest.root_model) == (
        str(new / "models" / "tuned_checkpoint" / "b"), str(new / "models" / "tuned_checkpoint" / "a"),
        str(new / "models" / "demo-base-h32"))
