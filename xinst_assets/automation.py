"""Nightly refresh schedule and the new-shard sensor.

The schedule refreshes every language partition in one run over the range of them (one process, one dbt
invocation per model, one batch of warehouse windows per stage); content caching makes it pay only for new
documents.
The sensor compares the shards on disk with what ``raw_web_text`` has ingested (table ``raw_shards``, read
through the store: the embedded file or the lakehouse) and requests a run for each language whose shards are new, changed or removed — and nothing otherwise. It finds
the shards exactly as the asset does (:mod:`xinst_assets.core.discovery`: no link out of the source roots, no
loop followed) and logs what it skipped.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import dagster as dg

from xinst_assets.core.discovery import Shard, SourceError
from xinst_assets.languages import LanguageRegistry
from xinst_assets.partitions import range_tags
from xinst_assets.resources.raw_sources import RawSources
from xinst_assets.store import Store
from xinst_assets.store.raw_text import known_shards


def build_nightly_schedule(
    job: dg.UnresolvedAssetJobDefinition, registry: LanguageRegistry, cron: str, timezone: str
) -> dg.ScheduleDefinition:
    """A schedule that requests one run over every language partition at ``cron`` in ``timezone``."""

    @dg.schedule(
        name="nightly_refresh",
        job=job,
        cron_schedule=cron,
        execution_timezone=timezone,
        description="Refresh every language partition, in one run over all of them; caches make it pay only "
        "for new documents.",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    def nightly_refresh(context: dg.ScheduleEvaluationContext):
        stamp = (context.scheduled_execution_time or datetime.now()).strftime("%Y-%m-%dT%H%M")
        return dg.RunRequest(run_key=f"nightly-{stamp}", tags=range_tags(registry.codes))

    return nightly_refresh


def shard_changes(discovered: list[Shard], ingested: dict[str, str]) -> tuple[list[str], list[str]]:
    """Shards on disk that are new or changed relative to ``ingested`` (shard key -> fingerprint), as
    ``key@fingerprint`` strings, and the keys of removed shards."""
    current = {s.key: s.fingerprint for s in discovered}
    changed = sorted(f"{p}@{fp}" for p, fp in current.items() if ingested.get(p) != fp)
    removed = sorted(set(ingested) - set(current))
    return changed, removed


def build_new_shard_sensor(job: dg.UnresolvedAssetJobDefinition, registry: LanguageRegistry) -> dg.SensorDefinition:
    """A sensor that requests a pipeline run for each language with new, changed or removed raw shards."""

    @dg.sensor(
        name="new_raw_shards",
        job=job,
        minimum_interval_seconds=300,
        description="Requests a run for a language when its raw shards are new, changed or removed.",
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def new_raw_shards(context: dg.SensorEvaluationContext, raw_sources: RawSources, store: Store):
        ingested = known_shards(store, list(registry.codes))
        requests = []
        for code in registry.codes:
            try:
                discovery = raw_sources.discover(code)
            except SourceError as exc:  # the configuration, not the data: say what to do, request nothing
                context.log.error(str(exc))
                return dg.SkipReason(str(exc))
            for skipped in discovery.warnings[:20]:
                context.log.warning(f"{code}: skipped {skipped.line()}")
            changed, removed = shard_changes(discovery.shards, ingested.get(code, {}))
            if not changed and not removed:
                continue
            # The run key names this exact change set: a later tick that sees the same change (the run is
            # still going) requests nothing new.
            digest = hashlib.sha256("\n".join(changed + ["--removed--"] + removed).encode()).hexdigest()[:16]
            context.log.info(f"{code}: {len(changed)} new or changed shards, {len(removed)} removed")
            requests.append(dg.RunRequest(run_key=f"shards-{code}-{digest}", partition_key=code))
        if not requests:
            return dg.SkipReason("no new, changed or removed raw shards")
        return requests

    return new_raw_shards
