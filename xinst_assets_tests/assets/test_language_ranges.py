"""The data stages over a range of language partitions in one run (the nightly refresh) give exactly what a run
per language gives, with each language's own metadata."""

import json
import shutil

import duckdb
import pytest

from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.partitions import range_tags
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests.conftest import materialize

STAGES = ["raw_web_text", "document_signals", "screened_documents", "language_filtered_text", "filter_rejections",
          "language_filter_stats", "seed_pairs", "parallel_pairs", "eval_questions"]
LANGS = ["hi", "sw"]  # consecutive partitions
# Columns that record when a row was written, not what it holds.
TABLES = {
    "raw_documents": "", "document_signals": "first_seen_at", "near_dedup_state": "",
    "screened_documents": "first_seen_at, shard_ingested_at", "filtered_documents": "shard_ingested_at",
    "filter_rejections": "shard_ingested_at", "language_filter_stats": "", "seed_pairs": "", "parallel_pairs": "",
}
SHARED_TEXT = ("The same page crawled for two languages: a short English notice about opening hours, repeated "
               "here so that it is long enough to pass the length filter of both languages.")


def _raw(tmp_path):
    """Both languages' samples (hi cut short, so their counts differ), and one text in both languages."""
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLE_DIR / "raw" / "sw", raw / "sw")
    (raw / "hi").mkdir(parents=True)
    lines = (SAMPLE_DIR / "raw" / "hi" / "part-00000.jsonl").read_text(encoding="utf-8").splitlines()
    (raw / "hi" / "part-00000.jsonl").write_text("\n".join(lines[:30]) + "\n", encoding="utf-8")
    for lang in LANGS:
        row = {"url": f"https://shared.example/{lang}", "text": SHARED_TEXT}
        (raw / lang / "part-00009.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    return raw


def _tables(config: XinstConfig) -> dict[str, list[tuple]]:
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        return {table: con.execute(f"SELECT * {f'EXCLUDE ({drop})' if drop else ''} FROM {table} "
                                   "ORDER BY ALL").fetchall() for table, drop in TABLES.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ranges")
    raw = _raw(tmp)
    per_language = XinstConfig(registry=load_registry(), home=tmp / "one-by-one", raw_patterns=[str(raw)])
    for lang in LANGS:
        assert materialize(per_language, STAGES, lang).success, lang
    ranged = XinstConfig(registry=load_registry(), home=tmp / "ranged", raw_patterns=[str(raw)])
    result = materialize(ranged, STAGES, tags=range_tags(LANGS))
    assert result.success
    return per_language, ranged, result


def test_one_run_over_two_languages_writes_the_tables_of_one_run_per_language(runs):
    per_language, ranged, _ = runs
    expected, got = _tables(per_language), _tables(ranged)
    for table in TABLES:
        assert got[table] == expected[table], table
        assert {row[0] for row in got[table]} == set(LANGS), table


def test_a_text_found_in_two_languages_is_no_exact_duplicate_of_itself(runs):
    _, ranged, _ = runs
    with duckdb.connect(str(ranged.warehouse), read_only=True) as con:
        rows = con.execute("SELECT lang, exact_copies, reject_reason FROM screened_documents "
                           "WHERE url LIKE 'https://shared.example/%' ORDER BY lang").fetchall()
    assert [(lang, copies) for lang, copies, _ in rows] == [("hi", 1), ("sw", 1)]
    assert all(reason is None or not reason.startswith("dedup_exact") for _, _, reason in rows)


def test_each_language_of_the_run_carries_its_own_metadata(runs):
    _, ranged, result = runs
    with duckdb.connect(str(ranged.warehouse), read_only=True) as con:
        kept = dict(con.execute("SELECT lang, count(*) FROM filtered_documents GROUP BY lang").fetchall())
        raw = dict(con.execute("SELECT lang, count(*) FROM raw_documents GROUP BY lang").fetchall())
        distinct = dict(con.execute("SELECT lang, count(DISTINCT doc_id) FROM raw_documents GROUP BY lang").fetchall())
        mean_chars = con.execute("SELECT lang, avg(length(text)) FROM filtered_documents GROUP BY 1 ORDER BY 1").fetchall()
        assert con.execute("SELECT lang, kept_mean_chars FROM language_filter_stats ORDER BY 1").fetchall() == mean_chars
    assert kept["hi"] != kept["sw"]
    events = {(e.asset_key.to_user_string(), e.partition): e.materialization.metadata
              for e in result.get_asset_materialization_events()}
    for lang in LANGS:
        assert events[("language_filtered_text", lang)]["dagster/row_count"].value == kept[lang]
        assert "| lid_" in events[("filter_rejections", lang)]["rejection_examples"].value
        assert events[("raw_web_text", lang)]["documents_total"].value == raw[lang]
        assert events[("document_signals", lang)]["dagster/row_count"].value == distinct[lang]
        assert ("language_filter_stats", lang) in events and ("seed_pairs", lang) in events


def test_the_run_reports_each_check_once_for_all_its_languages(runs):
    _, _, result = runs
    evaluations = [e for e in result.get_asset_check_evaluations() if e.asset_key.path == ["language_filtered_text"]]
    assert sorted(e.check_name for e in evaluations) == ["kept_fraction_in_bounds", "language_purity",
                                                         "no_duplicates_kept"]
    for evaluation in evaluations:
        assert evaluation.passed, evaluation.check_name
        assert evaluation.metadata["failing_languages"].value == "none"
        table = evaluation.metadata["by_language"].value
        assert all(f"| {lang} | yes |" in table for lang in LANGS), table


def test_a_refresh_over_the_range_after_new_shards_equals_a_refresh_per_language(runs, tmp_path):
    """(Last in this module: it adds shards to the raw folder both homes read.)"""
    per_language, ranged, _ = runs
    raw = per_language.raw_patterns[0]
    for lang in LANGS:
        source = (SAMPLE_DIR / "raw" / lang / "part-00000.jsonl").read_text(encoding="utf-8").splitlines()
        new = [{**json.loads(line), "url": f"https://new.example/{lang}/{i}"} for i, line in enumerate(source[30:])]
        new = [{**row, "text": row["text"] + f" ({i})"} for i, row in enumerate(new)]
        (tmp_path / "new.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new), encoding="utf-8")
        shutil.copy(tmp_path / "new.jsonl", f"{raw}/{lang}/part-00010.jsonl")
    for lang in LANGS:
        assert materialize(per_language, STAGES, lang).success, lang
    result = materialize(ranged, STAGES, tags=range_tags(LANGS))
    assert result.success
    assert _tables(ranged) == _tables(per_language)
    screened = {e.partition: e.materialization.metadata["documents_screened_this_run"].value
                for e in result.get_asset_materialization_events() if e.asset_key.path == ["document_signals"]}
    assert set(screened) == set(LANGS) and all(0 < n < 40 for n in screened.values()), screened
