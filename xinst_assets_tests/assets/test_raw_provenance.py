"""The source's own record id and language field travel from the raw shards to the filtered tables, and a
warehouse written before these columns existed migrates: the columns appear, the shards are read again once,
and the filter chain keeps the same documents."""

import json

import duckdb
import pytest

from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests.conftest import materialize, write_jsonl

FILTER_CHAIN = ("raw_web_text document_signals screened_documents language_filtered_text filter_rejections "
                "language_filter_stats").split()


def _sample_with_ids(raw_root) -> int:
    """The sample's Swahili shard with an id and a lang field on every record; returns the record count."""
    source = SAMPLE_DIR / "raw" / "sw" / "part-00000.jsonl"
    records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    write_jsonl(raw_root / "sw" / "part-00000.jsonl",
                [{**r, "id": f"cx-sw-{i:05d}", "lang": "swa"} for i, r in enumerate(records)])
    return len(records)


def _provenance(config, table: str) -> list[tuple]:
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        return con.execute(f"SELECT source_id, source_lang, position FROM {table} WHERE lang = 'sw' "
                           "ORDER BY position").fetchall()


def _assert_provenance_everywhere(config) -> None:
    for table in ("raw_documents", "screened_documents", "filtered_documents", "filter_rejections"):
        rows = _provenance(config, table)
        assert rows, table
        # each row names the record it came from: its own id (written from its line number) and lang
        assert all(sid == f"cx-sw-{position - 1:05d}" and slang == "swa" for sid, slang, position in rows), table


@pytest.fixture
def config(tmp_path):
    raw = tmp_path / "raw"
    _sample_with_ids(raw)
    return XinstConfig(registry=load_registry(), home=tmp_path / "home", raw_patterns=[str(raw)])


def test_the_records_id_and_lang_reach_the_screened_filtered_and_rejected_tables(config):
    assert materialize(config, FILTER_CHAIN, "sw").success
    _assert_provenance_everywhere(config)


@pytest.mark.slow
def test_a_warehouse_from_before_the_provenance_columns_migrates_and_keeps_the_same_documents(config):
    assert materialize(config, FILTER_CHAIN, "sw").success
    with duckdb.connect(str(config.warehouse)) as con:
        kept_before = con.execute("SELECT doc_id FROM filtered_documents ORDER BY 1").fetchall()
        # the tables as the previous version wrote them: no provenance columns, fingerprints of the older reader
        con.execute("ALTER TABLE raw_documents DROP COLUMN source_id; ALTER TABLE raw_documents DROP COLUMN source_lang;"
                    "ALTER TABLE raw_documents DROP COLUMN control_chars")
        for table in ("screened_documents", "filtered_documents", "filter_rejections"):
            con.execute(f"ALTER TABLE {table} DROP COLUMN source_id; ALTER TABLE {table} DROP COLUMN source_lang")
        con.execute("UPDATE raw_shards SET fingerprint = split_part(fingerprint, ':', 1) || ':' || "
                    "split_part(fingerprint, ':', 2)")
    result = materialize(config, FILTER_CHAIN, "sw")
    assert result.success
    raw_meta = next(e for e in result.get_asset_materialization_events()
                    if e.asset_key.path == ["raw_web_text"]).materialization.metadata
    assert raw_meta["shards_read"].value == 1  # read again by the newer reader, once
    _assert_provenance_everywhere(config)
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        assert con.execute("SELECT doc_id FROM filtered_documents ORDER BY 1").fetchall() == kept_before
    again = materialize(config, ["raw_web_text"], "sw")
    assert again.get_asset_materialization_events()[0].materialization.metadata["shards_read"].value == 0
