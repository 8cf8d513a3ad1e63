"""Stages 3-7 through Dagster with tiny locally built models: generator, candidates, curation, diversified
dataset, export, tuned checkpoint and evaluation — real training, real generation, real scoring."""

import duckdb
import pytest

from xinst_assets.config import XinstConfig
from xinst_assets.core.portable_checkpoint import portability_problems
from xinst_assets.languages import load_registry
from xinst_assets.resources.inference import InferenceSettings
from xinst_assets.resources.models import ModelSettings
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests.conftest import asset_metadata, materialize

pytestmark = pytest.mark.slow

FILTERING = ["raw_web_text", "document_signals", "screened_documents", "language_filtered_text", "filter_rejections",
             "language_filter_stats"]
TINY = {
    "models": ModelSettings(generator_max_steps=6, generator_batch_size=4, demo_hidden_size=32),
    "inference": InferenceSettings(batch_size=16, num_threads=1),
}
# The tiny model cannot judge: accept level 2 so that data reaches the later stages (as the demo does).
RELAXED = {"ops": {"scored_pairs": {"config": {"accept_label": 1}},
                   "diversified_dataset": {"config": {"accept_label": 1}}}}


def _query(config, sql, params=()):
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    home = tmp_path_factory.mktemp("models")
    config = XinstConfig(registry=load_registry(), home=home, raw_patterns=[str(SAMPLE_DIR / "raw")])
    for lang in ("vi", "sw"):
        assert materialize(config, ["seed_pairs", "parallel_pairs", "eval_questions"], lang).success
    first = materialize(config, FILTERING + ["instruction_generator", "candidate_pairs", "scored_pairs",
                                             "diversified_dataset"], "vi", TINY, run_config=RELAXED)
    return config, first


def test_the_generator_trains_in_its_own_process_and_every_filtered_text_gets_a_judged_outcome(pipeline):
    config, result = pipeline
    assert result.success
    assert asset_metadata(result, "instruction_generator")["steps"] == 6
    texts = _query(config, "SELECT count(*) FROM filtered_documents WHERE lang='vi'")[0][0]
    candidates = _query(config, "SELECT count(*) FROM candidate_pairs WHERE lang='vi'")[0][0]
    rejected = _query(config, "SELECT count(*) FROM candidate_rejections WHERE lang='vi'")[0][0]
    assert candidates + rejected == texts  # every text accounted for, with a reason when dropped
    scored = _query(config, "SELECT p1 + p2 + p3, expected_score, label FROM scored_pairs WHERE lang='vi'")
    assert all(abs(total - 1) < 1e-6 and 1 <= expected <= 3 and label in (1, 2, 3) for total, expected, label in scored)


def test_a_rerun_of_a_finished_partition_makes_no_model_call(pipeline):
    config, _ = pipeline
    again = materialize(config, ["candidate_pairs", "scored_pairs"], "vi", TINY,
                        run_config={"ops": {"scored_pairs": RELAXED["ops"]["scored_pairs"]}})
    assert again.success
    candidates, scored = asset_metadata(again, "candidate_pairs"), asset_metadata(again, "scored_pairs")
    assert candidates["cache_misses"] == 0 and candidates["model_loads"] == 0
    assert scored["cache_misses"] == 0 and scored["model_loads"] == 0


def test_diversified_set_passes_its_blocking_checks_and_tuning_and_evaluation_run(pipeline):
    config, result = pipeline
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert {"no_empty_fields", "unique_ids", "labels_at_threshold"} <= set(checks)
    assert checks["unique_ids"] and checks["no_empty_fields"] and checks["labels_at_threshold"]
    # (30 steps: after 4 the tiny model answered only blank lines, which evaluation rightly fails)
    tuned = materialize(config, ["tuned_checkpoint", "evaluation"], None, TINY, run_config={
        "ops": {"tuned_checkpoint": {"config": {"max_steps": 30, "batch_size": 4, "max_length": 128}},
                "evaluation": {"config": {"max_new_tokens": 8}}}})
    assert tuned.success
    rows = _query(config, "SELECT lang, model, questions FROM evaluation_results ORDER BY 1, 2")
    assert ("vi", "base", 6) in rows and ("vi", "tuned", 6) in rows
    from transformers import AutoModelForCausalLM

    path = _query(config, "SELECT path FROM checkpoints WHERE name = 'tuned_checkpoint'")[0][0]
    assert AutoModelForCausalLM.from_pretrained(path).config.model_type == "llama"
    # The base, the generator and the tuned checkpoint load with transformers 4.x too.
    for name in ("base_model", "instruction_generator", "tuned_checkpoint"):
        saved = _query(config, "SELECT path FROM checkpoints WHERE name = ?", [name])[0][0]
        assert portability_problems(saved) == [], name


MODEL_STAGES = ["candidate_pairs", "scored_pairs", "diversified_dataset"]
# Each model-stage table with the order that makes its rows comparable between runs.
STAGE_TABLES = {"candidate_pairs": "pair_id", "candidate_rejections": "doc_id, reason", "scored_pairs": "pair_id",
                "scored_pairs_rounds": "round, pair_id", "diversified_dataset": "pair_id"}


def _rows(config, lang):
    return {table: _query(config, f"SELECT * FROM {table} WHERE lang = ? ORDER BY {order}", [lang])
            for table, order in STAGE_TABLES.items()}


def _partition_meta(result, key, partition):
    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key.path == [key] and e.partition == partition]
    assert len(events) == 1, f"{key}[{partition}]: {len(events)} materializations"
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def test_one_run_over_two_languages_gives_each_language_what_its_own_run_gives(pipeline):
    """A range run (tr..vi) writes each language's rows as its own run does, records each language's metadata
    on that language's materialization, loads a model once for the run and reports each check once."""
    config, _ = pipeline
    new, done = "tr", "vi"  # adjacent partitions; vi's model stages already ran on their own in the fixture
    codes = [lang.code for lang in config.registry]
    assert codes.index(done) == codes.index(new) + 1
    assert materialize(config, ["seed_pairs"], new).success
    assert materialize(config, FILTERING, new).success
    alone = {done: _rows(config, done)}

    ranged = materialize(config, MODEL_STAGES, None, TINY, run_config=RELAXED,
                         tags={"dagster/asset_partition_range_start": new, "dagster/asset_partition_range_end": done})
    assert ranged.success
    together = {code: _rows(config, code) for code in (new, done)}
    single = materialize(config, MODEL_STAGES, new, TINY, run_config=RELAXED)
    assert single.success
    alone[new] = _rows(config, new)

    for code in (new, done):
        assert together[code] == alone[code], code  # the range run wrote what a run of the language alone writes
        assert together[code]["candidate_pairs"] and together[code]["diversified_dataset"], code
        for table in ("candidate_pairs", "scored_pairs", "diversified_dataset"):
            keys = [row[1] for row in together[code][table]]  # (lang, pair_id, ...)
            assert len(keys) == len(set(keys)), (code, table)

    # Each language's materializations carry that language's own figures.
    for code in (new, done):
        texts = _query(config, "SELECT count(*) FROM filtered_documents WHERE lang = ?", [code])[0][0]
        candidates = _partition_meta(ranged, "candidate_pairs", code)
        assert candidates["texts_in"] == texts
        assert candidates["candidates_kept"] + candidates["rejected"] == texts
        for key in MODEL_STAGES:
            assert _partition_meta(ranged, key, code)["dagster/row_count"] == len(together[code][key]), (code, key)
    assert _partition_meta(ranged, "candidate_pairs", new)["examples"] != \
        _partition_meta(ranged, "candidate_pairs", done)["examples"]
    assert _partition_meta(ranged, "candidate_pairs", new)["cache_misses"] > 0  # tr was generated in the range run
    assert _partition_meta(ranged, "candidate_pairs", done)["cache_misses"] == 0  # vi came from the cache
    for key in ("candidate_pairs", "scored_pairs"):  # one backend for the run's languages
        assert sum(_partition_meta(ranged, key, code)["model_loads"] for code in (new, done)) <= 1, key
    for key in MODEL_STAGES:
        mine, theirs = _partition_meta(ranged, key, new), _partition_meta(single, key, new)
        assert mine["dagster/row_count"] == theirs["dagster/row_count"], key

    # One result per check for the run, passed, with both languages' figures.
    evaluations = ranged.get_asset_check_evaluations()
    assert sorted((e.asset_key.path[-1], e.check_name) for e in evaluations) == sorted(
        [("diversified_dataset", name) for name in ("no_empty_fields", "response_language_matches",
                                                    "labels_at_threshold", "unique_ids", "instruction_not_copied",
                                                    "output_not_empty")]
        + [("candidate_pairs", "output_not_empty"), ("scored_pairs", "output_not_empty")])
    assert all(e.passed for e in evaluations)
    assert all(e.metadata["languages"].value == 2 for e in evaluations)
