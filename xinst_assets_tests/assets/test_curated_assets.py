"""Curated inputs through Dagster: rows and rejections land in the warehouse; unchanged files write nothing."""

import dagster as dg
import duckdb

from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.resources.curated_sources import CuratedSources
from xinst_assets_tests.conftest import materialize, write_jsonl


def _tables(config: XinstConfig) -> tuple[list, list]:
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        return (con.execute("SELECT instruction, response FROM seed_pairs WHERE lang = 'sw' ORDER BY ALL").fetchall(),
                con.execute("SELECT line, reason FROM curated_rejections WHERE lang = 'sw' ORDER BY ALL").fetchall())


def _logged(instance, result, text: str) -> bool:
    return any(text in (entry.user_message or "") for entry in instance.all_logs(result.run_id))


def test_seed_pairs_land_once_and_a_rerun_with_the_same_files_writes_nothing(tmp_path):
    config = XinstConfig(registry=load_registry(), home=tmp_path / "home", raw_patterns=[])
    user_file = tmp_path / "user" / "sw-seeds.jsonl"
    sources = CuratedSources(include_embedded=False, seed_pairs=[str(tmp_path / "user" / "{lang}-seeds.jsonl")])
    write_jsonl(user_file, [{"instruction": "Write a note.", "response": "Habari yako."}, b"{broken"])

    instance = dg.DagsterInstance.ephemeral()
    first = materialize(config, ["seed_pairs"], "sw", resource_overrides={"curated_sources": sources},
                        instance=instance)
    assert first.success and not _logged(instance, first, "unchanged")
    assert _tables(config) == ([("Write a note.", "Habari yako.")], [(2, "malformed_json")])
    written = config.warehouse.stat().st_mtime_ns

    again = materialize(config, ["seed_pairs"], "sw", resource_overrides={"curated_sources": sources},
                        instance=instance)
    assert again.success and _logged(instance, again, "seed_pairs/sw: 1 rows, unchanged")
    assert config.warehouse.stat().st_mtime_ns == written  # no write window, no checkpoint
    assert _tables(config) == ([("Write a note.", "Habari yako.")], [(2, "malformed_json")])

    write_jsonl(user_file, [{"instruction": "Write a note.", "response": "Habari yako."},
                            {"instruction": "Name a river.", "response": "Mto Rufiji."}])
    changed = materialize(config, ["seed_pairs"], "sw", resource_overrides={"curated_sources": sources},
                        instance=instance)
    assert changed.success and not _logged(instance, changed, "unchanged")
    assert _tables(config) == ([("Name a river.", "Mto Rufiji."), ("Write a note.", "Habari yako.")], [])
