"""The nightly schedule and the new-shard sensor."""

from datetime import datetime, timezone

import dagster as dg

from xinst_assets.definitions import build_definitions
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


def test_the_nightly_schedule_requests_every_language_partition_once(xinst_config):
    defs = build_definitions(xinst_config)
    schedule = defs.get_schedule_def("nightly_refresh")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 23, 2, tzinfo=timezone.utc), repository_def=defs.get_repository_def()
    )
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == xinst_config.registry.codes
    assert len({r.run_key for r in requests}) == len(requests)
