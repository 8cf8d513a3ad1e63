"""The nightly schedule and the new-shard sensor."""

import dataclasses
from datetime import datetime, timezone

import dagster as dg
import pytest

from xinst_assets.definitions import build_definitions
from xinst_assets.resources.raw_sources import RawSources
from xinst_assets.partitions import RANGE_END_TAG, RANGE_START_TAG, contiguous_ranges, range_tags
from xinst_assets_tests.conftest import materialize, write_jsonl


def _sensor_requests(config, resources):
    defs = build_definitions(config)
    sensor = defs.get_sensor_def("new_raw_shards")
    with dg.build_sensor_context(resources=resources, definitions=defs) as context:
        result = sensor.evaluate_tick(context)
    return [(r.partition_key, r.run_key) for r in result.run_requests or []], result.skip_message


def test_the_sensor_requests_a_run_only_for_the_language_with_a_new_shard(xinst_config, resources, raw_root):
    write_jsonl(raw_root / "sw" / "a.jsonl", [{"text": "Habari njema kwa wote."}])
    write_jsonl(raw_root / "fi" / "a.jsonl", [{"text": "Hyvää päivää kaikille."}])
    materialize(xinst_config, "raw_web_text", "sw")
    materialize(xinst_config, "raw_web_text", "fi")
    requests, skip = _sensor_requests(xinst_config, resources)
    assert requests == [] and "no new" in skip

    write_jsonl(raw_root / "sw" / "b.jsonl", [{"text": "Mvua imenyesha leo asubuhi."}])
    requests, _ = _sensor_requests(xinst_config, resources)
    assert [p for p, _ in requests] == ["sw"]
    # The same change seen again gives the same run key, so Dagster does not launch it twice.
    assert _sensor_requests(xinst_config, resources)[0] == requests


def test_the_sensor_notices_a_removed_shard(xinst_config, resources, raw_root):
    shard = write_jsonl(raw_root / "sw" / "a.jsonl", [{"text": "Habari njema kwa wote."}])
    materialize(xinst_config, "raw_web_text", "sw")
    shard.unlink()
    assert [p for p, _ in _sensor_requests(xinst_config, resources)[0]] == ["sw"]


def test_the_sensor_requests_nothing_for_a_moved_source_folder(xinst_config, resources, raw_root, tmp_path):
    write_jsonl(raw_root / "sw" / "a.jsonl", [{"text": "Habari njema kwa wote."}])
    materialize(xinst_config, "raw_web_text", "sw")
    moved = tmp_path / "new-mount" / "raw"
    moved.parent.mkdir()
    raw_root.rename(moved)  # sizes and mtimes kept
    config = dataclasses.replace(xinst_config, raw_patterns=[str(moved)])
    requests, skip = _sensor_requests(config, {**resources, "raw_sources": RawSources(patterns=[str(moved)])})
    assert requests == [] and "no new" in skip


def test_the_nightly_schedule_requests_one_run_over_every_language_partition(xinst_config):
    defs = build_definitions(xinst_config)
    schedule = defs.get_schedule_def("nightly_refresh")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    codes = xinst_config.registry.codes

    def tick(hour: int):
        context = dg.build_schedule_context(
            scheduled_execution_time=datetime(2026, 11, 23, hour, tzinfo=timezone.utc),
            repository_def=defs.get_repository_def())
        return schedule.evaluate_tick(context).run_requests

    requests = tick(2)
    assert len(requests) == 1
    request = requests[0]
    assert request.partition_key is None
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (codes[0], codes[-1])
    # The range covers every language partition, in the partitions' own order.
    partitions = defs.resolve_job_def("xinst_pipeline").partitions_def
    keys = partitions.get_partition_keys()
    assert keys[keys.index(codes[0]):keys.index(codes[-1]) + 1] == codes
    assert tick(3)[0].run_key != request.run_key  # each night's run is its own


def test_contiguous_ranges_split_a_subset_with_gaps_into_runs_of_consecutive_partitions():
    codes = ["sw", "bn", "ur", "fi", "id"]
    assert contiguous_ranges(codes, codes) == [codes]
    assert contiguous_ranges(codes, ["fi", "sw", "bn"]) == [["sw", "bn"], ["fi"]]
    assert contiguous_ranges(codes, ["id"]) == [["id"]]
    assert range_tags(["bn", "ur"]) == {RANGE_START_TAG: "bn", RANGE_END_TAG: "ur"}
    with pytest.raises(ValueError, match="xx"):
        contiguous_ranges(codes, ["sw", "xx"])


def test_the_sensor_shares_discovery_skips_loops_and_outside_links_and_logs_them(
    xinst_config, resources, raw_root, tmp_path, capfd
):
    outside = tmp_path / "outside.jsonl"
    outside.write_text('{"text": "Nje ya chanzo."}\n')
    write_jsonl(raw_root / "sw" / "a.jsonl", [{"text": "Habari njema kwa wote."}])
    materialize(xinst_config, "raw_web_text", "sw")
    (raw_root / "sw" / "loop").symlink_to(".")
    (raw_root / "sw" / "leak.jsonl").symlink_to(outside)
    capfd.readouterr()
    requests, skip = _sensor_requests(xinst_config, resources)
    assert requests == [] and "no new" in skip  # neither the loop nor the link outside is a new shard
    logged = capfd.readouterr().err  # the sensor context's log (the daemon keeps it with the tick)
    assert "sw: skipped" in logged and "loop: link_loop" in logged and "leak.jsonl: link_outside_roots" in logged


def test_the_sensor_says_in_one_line_what_to_do_about_a_missing_source(xinst_config, resources, tmp_path):
    resources = {**resources, "raw_sources": RawSources(patterns=[str(tmp_path / "unmounted")])}
    requests, skip = _sensor_requests(xinst_config, resources)
    assert requests == [] and "does not exist: create it, mount it" in skip and "\n" not in skip


def test_a_sensor_tick_before_any_run_requests_every_language_with_shards_and_creates_no_warehouse(
    xinst_config, resources, raw_root
):
    write_jsonl(raw_root / "sw" / "a.jsonl", [{"text": "Habari njema kwa wote."}])
    requests, _ = _sensor_requests(xinst_config, resources)
    assert [p for p, _ in requests] == ["sw"]
    assert not xinst_config.warehouse.exists()  # asking what was ingested does not create the file
