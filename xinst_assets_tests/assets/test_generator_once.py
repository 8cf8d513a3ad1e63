"""One instruction generator per seed version, whatever runs at once, and a data home that can move.

Partition runs of several languages started together (separate processes on one real Dagster instance, as a
backfill of the pipeline job runs them) train the generator once, on every language's seed pairs, also right
after the seed files changed; a home moved elsewhere retrains nothing: generator, demo base model and tuned
checkpoints (a continual one included) are found and reused. Real training of tiny models, real processes."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from xinst_assets.store.dataset import diversified_ddl
from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.local_instance import prepare_local_instance
from xinst_assets.resources.models import ModelSettings
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests import processes
from xinst_assets_tests.conftest import asset_metadata, materialize, write_jsonl

pytestmark = pytest.mark.slow

TINY_SETTINGS = dict(generator_max_steps=6, generator_batch_size=4, demo_hidden_size=32)
TINY = {"models": ModelSettings(**TINY_SETTINGS)}
LANGUAGES = ("fi", "sw", "ur")

# One partition run of the pipeline job (seed pairs and the generator), as a backfill's run worker makes it.
PARTITION_RUN = r"""
import json, sys
import dagster as dg
from xinst_assets.config import XinstConfig
from xinst_assets.definitions import build_definitions
from xinst_assets.resources.curated_sources import CuratedSources
from xinst_assets.resources.models import ModelSettings

lang, settings, seed_pattern = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
overrides = {"models": ModelSettings(**settings)}
if seed_pattern:
    overrides["curated_sources"] = CuratedSources(seed_pairs=[seed_pattern])
defs = build_definitions(XinstConfig.from_env(), overrides)
with dg.DagsterInstance.get() as instance:
    result = defs.resolve_job_def("xinst_pipeline").execute_in_process(
        partition_key=lang, instance=instance, raise_on_error=False,
        asset_selection=[dg.AssetKey("seed_pairs"), dg.AssetKey("instruction_generator")])
sys.exit(0 if result.success else 1)
"""


def _sample_seed_rows() -> int:
    return sum(1 for path in (SAMPLE_DIR / "seed_pairs").glob("*.jsonl")
               for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _run_partitions_at_once(home: Path, seed_pattern: str = "") -> list[str]:
    env = {**os.environ, "XINST_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"), "DO_NOT_TRACK": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("XINST_LANGUAGES_FILE", None)
    done = processes.finish(*[
        processes.start([sys.executable, "-c", PARTITION_RUN, lang, json.dumps(TINY_SETTINGS), seed_pattern],
                        env=env, stderr_to_stdout=True)
        for lang in LANGUAGES])
    logs = [proc.stdout for proc in done]
    assert [proc.returncode for proc in done] == [0] * len(done), "\n=====\n".join(log[-3000:] for log in logs)
    return logs


def _generator_materializations(home: Path) -> list[dict]:
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        records = instance.fetch_materializations(dg.AssetKey("instruction_generator"), limit=100).records
        return [{k: v.value for k, v in r.event_log_entry.dagster_event.materialization.metadata.items()}
                for r in records]


def _registered(home: Path, name: str) -> tuple[str, str]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("SELECT path, fingerprint FROM checkpoints WHERE name = ?", [name]).fetchone()


def _run_folders(home: Path, name: str) -> list[str]:
    return sorted(p.name for p in (home / "models" / name).iterdir() if p.is_dir() and p.name != "data")


@pytest.mark.timeout(2400)  # two rounds of three partition runs that train at once: many minutes when loaded
def test_partition_runs_started_together_train_the_generator_once_on_every_languages_seeds(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    prepare_local_instance(home / "dagster_home")  # as the xinst command does before any run

    _run_partitions_at_once(home)
    first = _generator_materializations(home)
    assert len(first) == 3
    assert sorted(m["trained_by_this_run"] for m in first) == [False, False, True]  # one trained, two reused
    assert {m["seed_rows"] for m in first} == {_sample_seed_rows()}  # every language's seeds, in every run
    assert len({m["run_fingerprint"] for m in first}) == 1
    assert _run_folders(home, "instruction_generator") == [first[0]["run_fingerprint"]]

    # The seed files change (new pairs for three languages) and the three partitions run again at once: one run
    # trains the new version on the complete new seed set, the others reuse it; none trains on part of it.
    new_seeds = tmp_path / "seeds"
    for lang in LANGUAGES:
        write_jsonl(new_seeds / f"{lang}.jsonl", [
            {"instruction": f"Write a short note number {k} about the weather.", "response": f"{lang} note {k}."}
            for k in range(4)])
    _run_partitions_at_once(home, str(new_seeds / "{lang}.jsonl"))
    second = _generator_materializations(home)[:3]  # newest first
    assert sorted(m["trained_by_this_run"] for m in second) == [False, False, True]
    assert {m["seed_rows"] for m in second} == {_sample_seed_rows() + 4 * len(LANGUAGES)}
    path, fingerprint = _registered(home, "instruction_generator")
    assert {m["run_fingerprint"] for m in second} == {fingerprint} != {first[0]["run_fingerprint"]}
    lineage = json.loads((Path(path) / "xinst_training.json").read_text(encoding="utf-8"))
    assert [f["rows"] for f in lineage["data_files"]] == [_sample_seed_rows() + 4 * len(LANGUAGES)]
    assert len(_run_folders(home, "instruction_generator")) == 2


def _weights(home: Path) -> dict[str, int]:
    """Every weight file under the models folder, relative, with its modification time (rewritten: changed)."""
    models = home / "models"
    return {str(p.relative_to(models)): p.stat().st_mtime_ns for p in models.rglob("*.safetensors")}


def _tune(config: XinstConfig, **settings) -> dict:
    short = {"max_steps": 2, "batch_size": 4, "max_length": 128, "languages": ["sw"]}
    result = materialize(config, ["tuned_checkpoint"], None, TINY,
                         run_config={"ops": {"tuned_checkpoint": {"config": {**short, **settings}}}})
    assert result.success
    return asset_metadata(result, "tuned_checkpoint")


def _build_everything(config: XinstConfig) -> None:
    """Generator, demo base model, a tuned checkpoint, and a continual one that starts from it."""
    for asset in ("seed_pairs", "parallel_pairs"):
        assert materialize(config, [asset], "sw").success
    assert materialize(config, ["replay_instructions"]).success
    generator = materialize(config, ["instruction_generator"], None, TINY)
    assert generator.success and asset_metadata(generator, "instruction_generator")["trained_by_this_run"]
    seeds = [json.loads(line) for line in (SAMPLE_DIR / "seed_pairs" / "sw.jsonl").read_text().splitlines()]
    with duckdb.connect(str(config.warehouse)) as con:
        con.execute(diversified_ddl())
        con.executemany("INSERT INTO diversified_dataset VALUES ('sw', ?, ?, ?, ?, NULL, false, 3.0, 3, 0, ?)",
                        [[f"p{k}", f"d{k}", s["instruction"], s["response"], k] for k, s in enumerate(seeds)])
    first = _tune(config)
    continual = _tune(config, instructalign=True)
    assert continual["start"] == "previous" and continual["started_from"] == first["path"]


def test_a_moved_data_home_retrains_nothing(tmp_path):
    before = XinstConfig(registry=load_registry(), home=tmp_path / "here" / "home", raw_patterns=[])
    _build_everything(before)
    weights = _weights(before.home)
    folders = {name: _run_folders(before.home, name) for name in ("instruction_generator", "tuned_checkpoint")}
    assert any(k.startswith("demo-base-") for k in weights) and len(folders["tuned_checkpoint"]) == 2

    after = XinstConfig(registry=load_registry(), home=tmp_path / "elsewhere" / "xinst", raw_patterns=[])
    after.home.parent.mkdir()
    shutil.move(before.home, after.home)
    generator = materialize(after, ["instruction_generator"], None, TINY)
    assert generator.success and not asset_metadata(generator, "instruction_generator")["trained_by_this_run"]
    first = _tune(after)
    continual = _tune(after, instructalign=True)
    assert continual["start"] == "previous" and continual["started_from"] == first["path"]

    assert _weights(after.home) == weights  # no weight file written again, none added
    assert {name: _run_folders(after.home, name) for name in folders} == folders
    for name in ("instruction_generator", "tuned_checkpoint"):
        path, _ = _registered(after.home, name)
        assert Path(path).is_relative_to(after.home), (name, path)  # recorded at the new place
