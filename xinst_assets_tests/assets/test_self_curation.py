"""Self-curation with the right model, measured: the curator checkpoint tuned on seed judgements grades by default
at level 3 and reports its separation on held-out seed pairs; self-training rounds re-train the generator on
accepted pairs and grade its new instructions; a run where nothing reaches the label fails loudly."""

import json
from pathlib import Path

import duckdb
import pytest

from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.resources.inference import InferenceSettings
from xinst_assets.resources.models import ModelSettings
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests.conftest import asset_metadata, materialize

# The fixture trains the generator and the curator as the demo does (about 2-3 minutes on an idle 2-core machine,
# several times that on a busy one).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

FILTERING = ["raw_web_text", "document_signals", "screened_documents", "language_filtered_text", "filter_rejections",
             "language_filter_stats"]
# The demo's models (the default tiny base and the curator's default training); a short generator training.
MODELS = {
    "models": ModelSettings(generator_max_steps=20),
    "inference": InferenceSettings(batch_size=8, num_threads=1),
}
LANG = "vi"


def _query(config, sql, params=()):
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def _check(result, name):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def _labels(config):
    return dict(_query(config, "SELECT label, count(*) FROM scored_pairs WHERE lang = ? GROUP BY label", [LANG]))


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """Seed pairs of every language and vi's candidates; then scored_pairs before any curator is trained (the
    untrained base model grades), the curator checkpoint, and scored_pairs with the default configuration."""
    home = tmp_path_factory.mktemp("self-curation")
    config = XinstConfig(registry=load_registry(), home=home, raw_patterns=[str(SAMPLE_DIR / "raw")])
    for lang in config.registry.codes:
        assert materialize(config, ["seed_pairs"], lang).success
    assert materialize(config, FILTERING + ["instruction_generator", "candidate_pairs"], LANG, MODELS).success
    untrained = materialize(config, ["scored_pairs"], LANG, MODELS, raise_on_error=False)
    untrained_labels = _labels(config)
    curator = materialize(config, ["curator"], None, MODELS)
    assert curator.success
    trained = materialize(config, ["scored_pairs"], LANG, MODELS, raise_on_error=False)
    return config, {"untrained": (untrained, untrained_labels), "curator": curator, "trained": trained}


def test_grading_with_the_untrained_base_model_accepts_nothing_and_fails_with_the_label_counts(stages):
    """The sample under the configuration every run has before a curator is trained: the untrained base model
    grades, it gives every pair the same label below 3, nothing reaches the acceptance label, and the run fails
    its check saying so."""
    config, runs = stages
    result, labels = runs["untrained"]
    assert "the demo base model" in asset_metadata(result, "scored_pairs")["curator"]
    candidates = _query(config, "SELECT count(*) FROM candidate_pairs WHERE lang = ?", [LANG])[0][0]
    assert candidates > 0 and sum(labels.values()) == candidates and len(labels) == 1 and 3 not in labels, labels
    assert not result.success
    check = _check(result, "output_not_empty")
    assert not check.passed
    counts = "/".join(str(labels.get(k, 0)) for k in (1, 2, 3))
    assert check.metadata["reason"].value == f"0 pairs reached label 3: labels 1/2/3 = {counts}"


def test_the_trained_curator_reports_its_separation_on_held_out_seed_pairs(stages):
    config, runs = stages
    meta = asset_metadata(runs["curator"], "curator")
    check = _check(runs["curator"], "curator_separates_heldout_pairs")
    figures = {k: check.metadata[k].value for k in ("matched_accepted", "partial_accepted", "shuffled_accepted")}
    separation = f"held-out separation {meta['separation']}"
    print(separation)
    assert meta["mode"] == "trained" and meta["heldout_judgements"] == 60, separation
    # What a tiny model trained from scratch for a minute learns: a complete answer from a cut-off one (the partial
    # pairs are rejected at level 3, the complete ones are not). Whether a complete answer matches its instruction
    # it cannot tell (that needs knowledge of the languages): the share of shuffled pairs it accepts is measured,
    # stated in bench/RESULTS.md and judged by the WARN check, not asserted here.
    assert figures["partial_accepted"] <= 0.2, separation
    assert figures["matched_accepted"] > figures["partial_accepted"], separation
    gap = check.metadata["mean_score_gap"].value
    assert check.passed == (figures["matched_accepted"] > 0.5 and figures["shuffled_accepted"] < 0.5
                            and gap >= 0.5), separation

    recorded = _query(config, "SELECT path FROM checkpoints WHERE name = 'curator'")[0][0]
    generator = _query(config, "SELECT path FROM checkpoints WHERE name = 'instruction_generator'")[0][0]
    assert recorded != generator  # the curator is never the backward generator
    lineage = json.loads((Path(recorded) / "xinst_training.json").read_text(encoding="utf-8"))
    assert lineage["task"] == "curator" and lineage["base_model"]["id"].endswith("demo-base-h128")
    assert lineage["data_stats"]["chat_template"] == lineage["data_stats"]["kept"]  # as the curator role asks


def test_the_default_level_three_run_grades_with_the_trained_curator(stages):
    config, runs = stages
    result = runs["trained"]
    meta = asset_metadata(result, "scored_pairs")
    assert "checkpoint:curator" in meta["curator"]
    labels = _labels(config)
    assert meta["accepted"] == labels.get(3, 0), labels
    check = _check(result, "output_not_empty")
    assert (result.success, check.passed) == ((True, True) if labels.get(3) else (False, False)), labels


def test_the_curator_is_trained_once_per_version_of_its_judgement_data(stages):
    config, runs = stages
    again = materialize(config, ["curator"], None, MODELS)
    first = asset_metadata(runs["curator"], "curator")
    assert asset_metadata(again, "curator")["path"] == first["path"]
    assert asset_metadata(again, "curator")["separation"] == first["separation"]


def _seed_candidates(config) -> None:
    """vi's candidates replaced by its seed pairs, every other one with its text cut to its first third: the
    tiny curator tells complete answers from cut-off ones (see bench/RESULTS.md), so round 1 accepts some pairs
    and leaves the others to retry."""
    from xinst_assets.core.judgements import partial_response

    seeds = [json.loads(line) for line in (SAMPLE_DIR / "seed_pairs" / f"{LANG}.jsonl").read_text("utf-8").splitlines()]
    rows = [[LANG, f"seed-pair-{k}", f"seed-doc-{k}", s["instruction"],
             s["response"] if k % 2 else partial_response(s["response"], 0.35)] for k, s in enumerate(seeds)]
    with duckdb.connect(str(config.warehouse)) as con:
        con.execute("DELETE FROM candidate_pairs WHERE lang = ?", [LANG])
        con.executemany("INSERT INTO candidate_pairs VALUES (?, ?, ?, ?, ?, NULL, 'seed')", rows)


def test_two_self_training_rounds_grade_new_instructions_from_the_round_one_generator(stages):
    config, _ = stages
    _seed_candidates(config)
    materialize(config, ["scored_pairs"], LANG, MODELS, raise_on_error=False)  # round 1 alone, default settings
    labels = sorted(_labels(config))
    assert len(labels) >= 2, f"the curator gave every {LANG} pair the same label {labels}: no pair to retry"
    accept = labels[-1]  # the best label given: some pairs are accepted, the others are retried
    run_config = {"ops": {"scored_pairs": {"config": {"rounds": 2, "accept_label": accept,
                                                      "self_training_steps": 4}}}}
    result = materialize(config, ["scored_pairs"], LANG, MODELS, run_config=run_config, raise_on_error=False)
    meta = asset_metadata(result, "scored_pairs")
    shared = _query(config, "SELECT path FROM checkpoints WHERE name = 'instruction_generator'")[0][0]
    rounds = _query(config, "SELECT round, generator, count(DISTINCT doc_id) FROM scored_pairs_rounds WHERE lang = ? "
                    "GROUP BY ALL ORDER BY 1", [LANG])
    assert [r[0] for r in rounds] == [1, 2] and meta["rounds_run"] == 2
    (_, first_generator, graded_first), (_, round_one_generator, graded_second) = rounds
    assert first_generator == shared and round_one_generator != shared

    # The round-1 generator is the shared generator trained further on round 1's accepted pairs (and the seeds).
    lineage = json.loads((Path(round_one_generator) / "xinst_training.json").read_text(encoding="utf-8"))
    assert lineage["task"] == "generator" and lineage["base_model"]["id"] == shared
    trained_on = {json.loads(line)["instruction"] for record in lineage["data_files"]
                  for line in Path(record["path"]).read_text(encoding="utf-8").splitlines()}
    accepted_first = _query(config, "SELECT doc_id, instruction FROM scored_pairs_rounds WHERE lang = ? AND round = 1 "
                            "AND label >= ?", [LANG, accept])
    assert accepted_first and {i for _, i in accepted_first} <= trained_on

    # Round 2 grades only texts round 1 did not accept, with the round-1 generator's instructions.
    retried = {d for (d,) in _query(config, "SELECT DISTINCT doc_id FROM scored_pairs_rounds WHERE lang = ? AND round = 2",
                                    [LANG])}
    assert retried and not retried & {d for d, _ in accepted_first}
    accepted_docs = len({d for d, _ in accepted_first})
    table = meta["per_round"]
    assert f"| 1 | {graded_first} | {accepted_docs} |" in table and f"| 2 | {graded_second} |" in table
    assert str(Path(round_one_generator).relative_to(config.home / "models")) in table
