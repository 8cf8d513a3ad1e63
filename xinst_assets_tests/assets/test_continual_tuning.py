"""Continual InstructAlign through Dagster with a tiny model: a run starts from the previous tuned checkpoint
recorded in the warehouse and replays the separate English instruction data, never the new cross-lingual data."""

import json
from pathlib import Path

import duckdb
import pytest

from xinst_assets.store.dataset import diversified_ddl
from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.resources.curated_sources import CuratedSources
from xinst_assets.resources.models import ModelSettings
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests.conftest import asset_metadata, materialize, write_jsonl

pytestmark = pytest.mark.slow

TINY = {"models": ModelSettings(demo_hidden_size=32)}
SHORT = {"max_steps": 2, "batch_size": 4, "max_length": 128, "languages": ["sw"]}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _meta(result, key="tuned_checkpoint"):
    return asset_metadata(result, key)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Curated inputs of sw, a diversified set made of its seed pairs, and a user replay file that wrongly
    contains one of those new pairs."""
    tmp = tmp_path_factory.mktemp("continual")
    config = XinstConfig(registry=load_registry(), home=tmp / "home", raw_patterns=[])
    seeds = _jsonl(SAMPLE_DIR / "seed_pairs" / "sw.jsonl")
    user_replay = write_jsonl(tmp / "replay" / "mine.jsonl", [
        {"instruction": seeds[0]["instruction"], "response": seeds[0]["response"]},
        {"instruction": "Name the largest planet.", "response": "Jupiter is the largest planet in the solar system."},
    ])
    sources = CuratedSources(replay_instructions=[str(user_replay)])
    assert materialize(config, ["parallel_pairs"], "sw").success
    assert materialize(config, ["replay_instructions"], resource_overrides={"curated_sources": sources}).success
    config.home.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(config.warehouse)) as con:
        con.execute(diversified_ddl())
        con.executemany("INSERT INTO diversified_dataset VALUES ('sw', ?, ?, ?, ?, NULL, false, 3.0, 3, 0, ?)",
                        [[f"p{k}", f"d{k}", s["instruction"], s["response"], k] for k, s in enumerate(seeds)])
    return config, seeds


def _tune(config, **settings):
    result = materialize(config, ["tuned_checkpoint"], None, TINY,
                         run_config={"ops": {"tuned_checkpoint": {"config": {**SHORT, **settings}}}})
    assert result.success
    return _meta(result)


def test_continual_instructalign_starts_from_the_previous_checkpoint_and_replays_the_separate_data(home):
    config, seeds = home
    first = _tune(config)  # plain SFT on the new data, from the base model
    assert first["start"] == "base"

    continual = _tune(config, instructalign=True)
    assert continual["start"] == "previous" and continual["started_from"] == first["path"]
    lineage = json.loads((Path(continual["path"]) / "xinst_training.json").read_text(encoding="utf-8"))
    assert lineage["base_model"]["id"] == first["path"]  # the weights it trained from

    files = {record["role"]: Path(record["path"]) for record in lineage["data_files"]}
    replayed = _jsonl(files["replay"])
    stored = _jsonl(SAMPLE_DIR / "replay" / "en.jsonl")
    new_pairs = {(s["instruction"], s["response"]) for s in seeds}
    assert {(r["instruction"], r["response"]) for r in replayed} == \
        {(r["instruction"], r["response"]) for r in stored} | {("Name the largest planet.",
                                                                "Jupiter is the largest planet in the solar system.")}
    assert not {(r["instruction"], r["response"]) for r in replayed} & new_pairs  # never the new data
    assert files["replay"] != files["instructions"]
    assert continual["replay_rows_dropped_as_new_data"] == 1  # the user file's copy of a new pair
    stats = lineage["data_stats"]
    assert stats["instructalign_replay"] == sum(v for k, v in stats.items() if k.startswith("instructalign_")
                                                and k != "instructalign_replay")  # 1:1 with the alignment data

    again = _tune(config, instructalign=True)  # the same run again: same start, same checkpoint, no training
    assert again["started_from"] == first["path"] and again["path"] == continual["path"]

    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        history = con.execute("SELECT path, started_from FROM checkpoint_history WHERE name = 'tuned_checkpoint' "
                              "ORDER BY created_at").fetchall()
    assert [h[0] for h in history] == [first["path"], continual["path"], continual["path"]]
    assert history[1][1] == first["path"]


def test_a_half_replay_ratio_interleaves_one_replay_row_per_two_alignment_examples(home):
    config, _ = home
    half = _tune(config, instructalign=True, replay_ratio=0.5, start_from="base")
    assert half["start"] == "base"
    lineage = json.loads((Path(half["path"]) / "xinst_training.json").read_text(encoding="utf-8"))
    stats = lineage["data_stats"]
    aligned = sum(v for k, v in stats.items() if k.startswith("instructalign_") and k != "instructalign_replay")
    assert stats["instructalign_replay"] == aligned // 2
