"""Nothing empty shows green: a stage whose output for a language is empty while its input is not fails its
blocking ``output_not_empty`` check with the reason, the run fails, and the stages after it do not run."""

import json

import duckdb

from xinst_assets.store.scored_pairs import scored_ddl
from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.partitions import range_tags
from xinst_assets.resources.curated_sources import CuratedSources
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests.conftest import materialize, write_jsonl


def _config(tmp_path) -> XinstConfig:
    return XinstConfig(registry=load_registry(), home=tmp_path / "home", raw_patterns=[])


def _seeds(lang: str) -> list[dict]:
    lines = (SAMPLE_DIR / "seed_pairs" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _store_scored(config: XinstConfig, lang: str, labels: list[int]) -> None:
    """``lang``'s scored pairs as a curation run would leave them: the sample's seed pairs with these labels."""
    config.home.mkdir(parents=True, exist_ok=True)
    rows = [(lang, f"{lang}-{k}", f"doc-{lang}-{k}", seed["instruction"], seed["response"], None, False,
             0.0, 1.0, 0.0, float(label), label, 1, "accepted" if label >= 3 else "rejected")
            for k, (seed, label) in enumerate(zip(_seeds(lang), labels))]
    with duckdb.connect(str(config.warehouse)) as con:
        con.execute(scored_ddl())
        con.executemany(f"INSERT INTO scored_pairs VALUES ({', '.join(['?'] * 14)})", rows)


def _check(result, name="output_not_empty"):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_a_diversified_set_with_no_pair_at_the_acceptance_label_fails_its_check_with_the_label_counts(tmp_path):
    config = _config(tmp_path)
    _store_scored(config, "sw", [2] * 10 + [1] * 2)
    result = materialize(config, ["diversified_dataset"], "sw", raise_on_error=False)
    assert not result.success  # the blocking check fails the step, and with it the run
    check = _check(result)
    assert not check.passed
    assert check.metadata["reason"].value == "0 pairs reached label 3: labels 1/2/3 = 2/10/0"
    assert check.description == "sw: 0 pairs reached label 3: labels 1/2/3 = 2/10/0"
    assert check.metadata["rows_in"].value == 12 and check.metadata["rows_out"].value == 0


def test_a_run_over_two_languages_fails_the_check_once_naming_the_empty_language(tmp_path):
    config = _config(tmp_path)
    _store_scored(config, "sw", [3] * 12)
    _store_scored(config, "ta", [2] * 12)
    result = materialize(config, ["diversified_dataset"], raise_on_error=False, tags=range_tags(["sw", "ta"]))
    assert not result.success
    check = _check(result)
    assert not check.passed and check.metadata["failing_languages"].value == "ta"
    assert check.description == "ta: 0 pairs reached label 3: labels 1/2/3 = 0/12/0"
    table = check.metadata["by_language"].value
    assert "| sw | yes |" in table and "| ta | NO |" in table
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        kept = dict(con.execute("SELECT lang, count(*) FROM diversified_dataset GROUP BY lang").fetchall())
    assert kept.get("sw", 0) > 0 and "ta" not in kept  # the good language's set is kept


def test_parallel_data_whose_every_row_is_rejected_fails_its_check_with_the_reasons(tmp_path):
    config = _config(tmp_path)
    pattern = str(tmp_path / "user" / "{lang}-parallel.jsonl")
    write_jsonl(tmp_path / "user" / "sw-parallel.jsonl",
                [{"en": "A sentence.", "text": ""}, {"en": "Another one."}, b"{broken"])
    sources = CuratedSources(include_embedded=False, parallel_pairs=[pattern])
    result = materialize(config, ["parallel_pairs"], "sw", resource_overrides={"curated_sources": sources},
                         raise_on_error=False)
    assert not result.success
    check = _check(result)
    assert check.metadata["reason"].value == "0 of 3 rows were usable: missing_field 2, malformed_json 1"


def test_a_language_with_no_files_has_nothing_to_do_and_passes(tmp_path):
    config = _config(tmp_path)
    sources = CuratedSources(include_embedded=False)
    result = materialize(config, ["parallel_pairs"], "sw", resource_overrides={"curated_sources": sources})
    assert result.success
    assert _check(result).metadata["reason"].value == "no input: nothing to do"


def test_a_training_input_whose_every_row_was_dropped_fails_the_tuning_check_with_the_reasons():
    from xinst_assets.assets.tuning import _training_examples_check

    lineage = {"data_files": [
        {"role": "instructions", "path": "/data/sft-1.jsonl", "rows": 40, "examples": 40, "dropped": {}},
        {"role": "replay", "path": "/data/replay-2.jsonl", "rows": 3, "examples": 0,
         "dropped": {"empty_response": 2, "empty_instruction": 1}},
    ]}
    result = _training_examples_check(lineage)
    assert not result.passed
    assert result.description == \
        "replay replay-2.jsonl: 0 of 3 rows became examples: empty_response 2, empty_instruction 1"
    lineage["data_files"].pop()
    assert _training_examples_check(lineage).passed
