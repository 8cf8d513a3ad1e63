"""The stages whose SQL lives in the store layer, materialized with Dagster on the embedded DuckDB file and on
a DuckLake lakehouse (catalog in a real Postgres, data in a local folder) from the same inputs: both backends
end with the same tables, after a first run and after a refresh that changes and removes shards."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets.store import Store
from xinst_assets_tests.conftest import materialize, write_jsonl

# Columns that record when a run wrote a row: they differ between any two runs.
RUN_TIMES = {"ingested_at", "shard_ingested_at", "first_seen_at", "written_at"}


def table_rows(store: Store, table: str) -> list[tuple]:
    """Every row of ``table`` without its run times, sorted (the backends keep no common row order)."""
    with store.read() as con:
        columns = [c for (c, *_) in con.execute(f"DESCRIBE {table}").fetchall() if c not in RUN_TIMES]
        return sorted(con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall(), key=repr)


def _raw_sources(root: Path) -> tuple[Path, Path]:
    sw = [{"text": f"Habari za asubuhi kutoka kijiji namba {i}, wakulima wanapanda mahindi.",
           "url": f"https://habari.example/{i}"} for i in range(40)]
    a = write_jsonl(root / "sw" / "a.jsonl", sw[:25] + [b"{not json", {"text": ""}])
    b = write_jsonl(root / "sw" / "b.jsonl.gz", sw[25:] + [sw[0]], compress=True)  # one exact copy across shards
    write_jsonl(root / "fi" / "a.jsonl", [{"text": f"Kirjasto on auki arkisin kello {i}."} for i in range(8, 18)])
    return a, b


def _run_both(configs: dict[str, XinstConfig], stores: dict[str, Store], selection, lang: str) -> None:
    for name, config in configs.items():
        result = materialize(config, selection, lang, resource_overrides={"store": stores[name]})
        assert result.success, name


def test_raw_web_text_writes_the_same_tables_on_the_lakehouse_as_on_the_embedded_file_before_and_after_a_refresh(
    lake_store: Store, tmp_path: Path,
):
    raw = tmp_path / "raw"
    a, b = _raw_sources(raw)
    configs = {name: XinstConfig(registry=load_registry(), home=tmp_path / name, raw_patterns=[str(raw)])
               for name in ("embedded", "lakehouse")}
    stores = {"embedded": Store(path=str(configs["embedded"].warehouse)), "lakehouse": lake_store}
    tables = ("raw_documents", "raw_quarantine", "raw_shards")

    for lang in ("sw", "fi"):
        _run_both(configs, stores, "raw_web_text", lang)
    first = {t: table_rows(stores["embedded"], t) for t in tables}
    assert len(first["raw_documents"]) == 51 and len(first["raw_quarantine"]) == 2
    assert {t: table_rows(lake_store, t) for t in tables} == first
    assert not Path(configs["lakehouse"].warehouse).exists()  # the lakehouse run never touched a DuckDB file

    # A refresh: one shard changed, one removed; the same again changes nothing.
    before = a.stat().st_mtime_ns
    write_jsonl(a, [{"text": f"Mvua imenyesha leo katika mkoa wa {i}."} for i in range(6)])
    os.utime(a, ns=(before + 10**9, before + 10**9))
    b.unlink()
    for _ in range(2):
        _run_both(configs, stores, "raw_web_text", "sw")
    refreshed = {t: table_rows(stores["embedded"], t) for t in tables}
    assert len([r for r in refreshed["raw_documents"] if r[0] == "sw"]) == 6
    assert {t: table_rows(lake_store, t) for t in tables} == refreshed


def test_the_definitions_bind_the_store_that_the_environment_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from xinst_assets.definitions import build_definitions

    config = XinstConfig(registry=load_registry(), home=tmp_path / "home", warehouse_path=tmp_path / "w.duckdb")
    monkeypatch.delenv("XINST_STORE", raising=False)
    embedded = build_definitions(config).resources["store"]
    assert embedded.backend == "embedded" and Path(embedded.path) == tmp_path / "w.duckdb"
    monkeypatch.setenv("XINST_STORE", "lakehouse")
    monkeypatch.setenv("XINST_LAKEHOUSE_DATA", str(tmp_path / "lake"))
    lake = build_definitions(config).resources["store"]
    assert lake.backend == "lakehouse" and lake.data_path == str(tmp_path / "lake")
    assert not (tmp_path / "lake").exists()  # building the definitions attaches nothing


def test_the_curated_inputs_write_the_same_tables_on_the_lakehouse_as_on_the_embedded_file(
    lake_store: Store, tmp_path: Path,
):
    configs = {name: XinstConfig(registry=load_registry(), home=tmp_path / name, raw_patterns=[str(tmp_path / "raw")])
               for name in ("embedded", "lakehouse")}
    stores = {"embedded": Store(path=str(configs["embedded"].warehouse)), "lakehouse": lake_store}
    per_language = ["seed_pairs", "parallel_pairs", "eval_questions"]
    for lang in ("sw", "fi"):
        _run_both(configs, stores, per_language, lang)
    _run_both(configs, stores, ["replay_instructions"], None)
    tables = [*per_language, "replay_instructions", "curated_rejections"]
    embedded = {t: table_rows(stores["embedded"], t) for t in tables}
    assert all(embedded[t] for t in tables[:-1])
    assert {t: table_rows(lake_store, t) for t in tables} == embedded


def test_the_checkpoint_registry_keeps_one_current_row_per_name_and_the_whole_history_on_both_backends(
    lake_store: Store, tmp_path: Path,
):
    from xinst_assets.store.checkpoints import checkpoint_history, record_checkpoint, registered_checkpoint

    outside = tmp_path / "models"  # a folder outside the data home: read as recorded on both backends
    for store in (Store(path=str(tmp_path / "home" / "warehouse.duckdb")), lake_store):
        assert registered_checkpoint(store, "tuned_checkpoint") is None
        record_checkpoint(store, "tuned_checkpoint", str(outside / "one"), "f1", data_fingerprint="d1")
        record_checkpoint(store, "tuned_checkpoint", str(outside / "two"), "f2", data_fingerprint="d2",
                          started_from=str(outside / "one"))
        record_checkpoint(store, "base_model", "org/base", None)
        assert registered_checkpoint(store, "tuned_checkpoint") == (str(outside / "two"), "f2")
        history = checkpoint_history(store, "tuned_checkpoint")
        assert [(h.path, h.fingerprint, h.data_fingerprint) for h in history] == [
            (str(outside / "two"), "f2", "d2"), (str(outside / "one"), "f1", "d1")]
        assert history[0].started_from == str(outside / "one")
        with store.read() as con:
            assert con.execute("SELECT name, count(*) FROM checkpoints GROUP BY name ORDER BY name").fetchall() == [
                ("base_model", 1), ("tuned_checkpoint", 1)]


def test_document_signals_stores_the_same_verdicts_on_the_lakehouse_as_on_the_embedded_file_and_a_refresh_screens_only_new_documents(
    lake_store: Store, tmp_path: Path,
):
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLE_DIR / "raw" / "sw", raw / "sw")
    configs = {name: XinstConfig(registry=load_registry(), home=tmp_path / name, raw_patterns=[str(raw)])
               for name in ("embedded", "lakehouse")}
    stores = {"embedded": Store(path=str(configs["embedded"].warehouse)), "lakehouse": lake_store}
    chain = ["raw_web_text", "document_signals"]
    _run_both(configs, stores, chain, "sw")
    tables = ("document_signals", "document_signal_writes")
    first = {t: table_rows(stores["embedded"], t) for t in tables}
    assert len(first["document_signals"]) > 10
    assert {t: table_rows(lake_store, t) for t in tables} == first

    # A refresh: one new shard; only its documents are screened, on both backends alike.
    write_jsonl(raw / "sw" / "z-new.jsonl", [{"text": "Wakulima wa kijiji hiki walipanda miti mia tano mwaka huu "
                                                      "ili kulinda chemchemi ya maji inayotumiwa na shule.",
                                              "url": "https://habari.example/miti"}])
    screened = {}
    for name, config in configs.items():
        result = materialize(config, chain, "sw", resource_overrides={"store": stores[name]})
        assert result.success, name
        event = [e for e in result.get_asset_materialization_events()
                 if e.asset_key.path == ["document_signals"]][0]
        screened[name] = event.materialization.metadata["documents_screened_this_run"].value
    assert screened == {"embedded": 1, "lakehouse": 1}
    refreshed = {t: table_rows(stores["embedded"], t) for t in tables}
    assert len(refreshed["document_signals"]) == len(first["document_signals"]) + 1
    assert {t: table_rows(lake_store, t) for t in tables} == refreshed


FILTER_CHAIN = ["raw_web_text", "document_signals", "screened_documents", "language_filtered_text",
                "filter_rejections", "language_filter_stats"]
# Written by a run, not derived from the data: the change log's build numbers and times (near-dedup empties it).
FILTER_TABLES = ("raw_documents", "raw_shards", "document_signals", "screened_documents", "near_dedup_state",
                 "filtered_documents", "filter_rejections", "language_filter_stats")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two backends x (two languages + a refresh) of the filter chain: minutes when loaded
def test_the_filter_chain_with_its_dbt_models_writes_the_same_tables_on_the_lakehouse_as_on_the_embedded_file(
    lake_store: Store, tmp_path: Path,
):
    """raw text -> verdicts -> dbt's screening -> near-dedup -> kept set, rejections -> dbt's statistics, for
    two languages, then a refresh with a new shard: the same tables on both backends, and the lakehouse run
    never creates the DuckDB file (dbt builds on the lake)."""
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLE_DIR / "raw" / "sw", raw / "sw")
    shutil.copytree(SAMPLE_DIR / "raw" / "fi", raw / "fi")
    configs = {name: XinstConfig(registry=load_registry(), home=tmp_path / name, raw_patterns=[str(raw)])
               for name in ("embedded", "lakehouse")}
    stores = {"embedded": Store(path=str(configs["embedded"].warehouse)), "lakehouse": lake_store}
    for lang in ("sw", "fi"):
        _run_both(configs, stores, FILTER_CHAIN, lang)
    first = {t: table_rows(stores["embedded"], t) for t in FILTER_TABLES}
    assert all(first[t] for t in FILTER_TABLES), [t for t in FILTER_TABLES if not first[t]]
    assert {row[0] for row in first["language_filter_stats"]} == {"sw", "fi"}
    assert {t: table_rows(lake_store, t) for t in FILTER_TABLES} == first
    assert not Path(configs["lakehouse"].warehouse).exists()

    # A refresh: a new shard with a new document and an exact copy of a kept one.
    kept_text = next(iter(_kept_texts(stores["embedded"], "sw")))
    write_jsonl(raw / "sw" / "z-new.jsonl", [
        {"text": "Wakulima wa kijiji hiki walipanda miti mia tano mwaka huu ili kulinda chemchemi ya maji "
                 "inayotumiwa na shule ya msingi.", "url": "https://habari.example/miti"},
        {"text": kept_text, "url": "https://habari.example/nakala"}])
    _run_both(configs, stores, FILTER_CHAIN, "sw")
    refreshed = {t: table_rows(stores["embedded"], t) for t in FILTER_TABLES}
    assert len(refreshed["raw_documents"]) == len(first["raw_documents"]) + 2
    assert refreshed["filter_rejections"] != first["filter_rejections"]  # the copy is rejected
    assert {t: table_rows(lake_store, t) for t in FILTER_TABLES} == refreshed


def _kept_texts(store: Store, lang: str) -> list[str]:
    with store.read() as con:
        return [t for (t,) in con.execute("SELECT text FROM filtered_documents WHERE lang = ? ORDER BY doc_id",
                                          [lang]).fetchall()]


def test_the_new_shard_sensor_reads_what_was_ingested_from_the_lakehouse(lake_store: Store, tmp_path: Path):
    import dagster as dg

    from xinst_assets.definitions import build_definitions
    from xinst_assets.resources.raw_sources import RawSources

    raw = tmp_path / "raw"
    write_jsonl(raw / "sw" / "a.jsonl", [{"text": "Habari njema kwa wote."}])
    config = XinstConfig(registry=load_registry(), home=tmp_path / "home", raw_patterns=[str(raw)])
    assert materialize(config, "raw_web_text", "sw", resource_overrides={"store": lake_store}).success

    def tick():
        defs = build_definitions(config, {"store": lake_store})
        resources = {"store": lake_store, "raw_sources": RawSources(patterns=[str(raw)])}
        with dg.build_sensor_context(resources=resources, definitions=defs) as context:
            result = defs.get_sensor_def("new_raw_shards").evaluate_tick(context)
        return [r.partition_key for r in result.run_requests or []]

    assert tick() == []
    write_jsonl(raw / "sw" / "b.jsonl", [{"text": "Mvua imenyesha leo asubuhi."}])
    assert tick() == ["sw"]
    assert not config.warehouse.exists()


# The generator checkpoint that made a row: a path under each backend run's own data home.
RUN_PATHS = {"generator"}
MODEL_TABLES = ("candidate_pairs", "candidate_rejections", "scored_pairs", "diversified_dataset")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a tiny generator trained and run on each backend: minutes on a loaded machine
def test_the_model_stages_tuning_and_evaluation_write_the_same_tables_on_the_lakehouse_as_on_the_embedded_file(
    lake_store: Store, tmp_path: Path,
):
    """Curated inputs, the filter chain, a tiny generator (trained in its own process), candidates, curation
    and the diversified set, through the generation and embedding caches, then the export, tuning and
    evaluation over every language: the same tables on both backends."""
    from xinst_assets.resources.inference import InferenceSettings
    from xinst_assets.resources.models import ModelSettings

    tiny = {"models": ModelSettings(generator_max_steps=6, generator_batch_size=4, demo_hidden_size=32),
            "inference": InferenceSettings(batch_size=16, num_threads=1)}
    relaxed = {"ops": {"scored_pairs": {"config": {"accept_label": 1}},
                       "diversified_dataset": {"config": {"accept_label": 1}}}}
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLE_DIR / "raw" / "vi", raw / "vi")
    configs = {name: XinstConfig(registry=load_registry(), home=tmp_path / name, raw_patterns=[str(raw)])
               for name in ("embedded", "lakehouse")}
    stores = {"embedded": Store(path=str(configs["embedded"].warehouse)), "lakehouse": lake_store}
    for name, config in configs.items():
        for lang in ("vi", "sw"):
            assert materialize(config, ["seed_pairs", "parallel_pairs", "eval_questions"], lang,
                               resource_overrides={"store": stores[name]}).success, name
        result = materialize(config, FILTER_CHAIN + ["instruction_generator", "candidate_pairs", "scored_pairs",
                                                     "diversified_dataset"], "vi",
                             {**tiny, "store": stores[name]}, run_config=relaxed)
        assert result.success, name

    def rows(store: Store, table: str) -> list[tuple]:
        with store.read() as con:
            columns = [c for (c, *_) in con.execute(f"DESCRIBE {table}").fetchall()
                       if c not in RUN_TIMES | RUN_PATHS and not c.endswith("_at")]
            return sorted(con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall(), key=repr)

    embedded = {t: rows(stores["embedded"], t) for t in MODEL_TABLES}
    assert all(embedded[t] for t in MODEL_TABLES if t != "candidate_rejections"), {t: len(r) for t, r in embedded.items()}
    assert {t: rows(lake_store, t) for t in MODEL_TABLES} == embedded
    with lake_store.read() as con:  # both caches were written in the lake
        assert con.execute("SELECT count(*) FROM generation_cache").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM embedding_cache").fetchone()[0] > 0

    # Stages 6-7 over every language: export, replay instructions, tuning, evaluation.
    tuning = {"ops": {"tuned_checkpoint": {"config": {"max_steps": 30, "batch_size": 4, "max_length": 128}},
                      "evaluation": {"config": {"max_new_tokens": 8}}}}
    for name, config in configs.items():
        result = materialize(config, ["replay_instructions", "dataset_export", "tuned_checkpoint", "evaluation"],
                             None, {**tiny, "store": stores[name]}, run_config=tuning)
        assert result.success, name
    evaluated = ("evaluation_results", "evaluation_answers")
    embedded = {t: rows(stores["embedded"], t) for t in evaluated}
    assert {(lang, model) for lang, model, *_ in embedded["evaluation_results"]} >= {("vi", "base"), ("vi", "tuned")}
    assert {t: rows(lake_store, t) for t in evaluated} == embedded
    assert not configs["lakehouse"].warehouse.exists()
