"""The dbt project on the lakehouse: the same models, built by dbt-duckdb on a DuckLake attach (catalog in a
real Postgres, data in a local folder), give the tables that the embedded build gives from the same inputs.

The inputs are the real pipeline's: the filtering stage is materialized on the embedded warehouse for the
sample's Swahili, its source tables are copied into the lake, and dbt's own CLI (the profile's ``lakehouse``
target, as a user would call it) builds its models there. The pipeline's dbt assets on the lakehouse are
tested with the whole filter chain in test_stages_on_both_backends.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import duckdb
import pytest

from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.settings import DBT_PROJECT_DIR, SAMPLE_DIR
from xinst_assets.store import Store
from xinst_assets.store.copy import copy_warehouse
from xinst_assets_tests import processes
from xinst_assets_tests.conftest import materialize

FILTER_CHAIN = ["raw_web_text", "document_signals", "screened_documents", "language_filtered_text",
                "filter_rejections", "language_filter_stats"]
SOURCES = ["raw_documents", "raw_shards", "document_signals", "filtered_documents", "filter_rejections"]
MODELS = {"screened_documents": "lang, doc_id, shard, position", "language_filter_stats": "lang"}


def _rows(con: duckdb.DuckDBPyConnection, table: str, order: str) -> list[tuple]:
    return con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the filter chain, then dbt on the lakehouse: minutes on a loaded machine
def test_dbt_builds_the_same_models_on_a_ducklake_attach_as_on_the_embedded_file(lake_store: Store, tmp_path: Path):
    config = XinstConfig(registry=load_registry(), home=tmp_path / "home", raw_patterns=[str(SAMPLE_DIR / "raw")])
    assert materialize(config, FILTER_CHAIN, "sw").success

    copied = copy_warehouse(config.warehouse, lake_store.open(), SOURCES)
    assert all(copied[t] > 0 for t in ("raw_documents", "raw_shards", "document_signals", "filtered_documents"))

    env = {**os.environ, **lake_store.dbt_env(), "DO_NOT_TRACK": "1"}
    build = processes.run(
        [str(Path(sys.executable).with_name("dbt")), "build", "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(tmp_path / "dbt-target"),
         "--log-path", str(tmp_path / "dbt-target"), "--vars", json.dumps({"langs": ["sw"]})], env=env)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-2000:]

    with duckdb.connect(str(config.warehouse), read_only=True) as embedded, lake_store.read() as lake:
        for model, order in MODELS.items():
            expected = _rows(embedded, model, order)
            assert expected, f"the embedded build of {model} is empty"
            assert _rows(lake, model, order) == expected, model
    # the models live in the lake (Parquet files under its data path), not in a DuckDB file
    assert lake_store.table_exists("screened_documents") and lake_store.table_exists("language_filter_stats")
