"""dbt models as Dagster assets: exact dedup and screening per language, and the statistics marts.

dbt tests become asset checks. dbt builds on the store's warehouse (``Store.dbt_env``: its dbt target). On the
embedded file dbt opens the DuckDB file itself, so a dbt build executes while this run holds the warehouse lock
exclusively: concurrent language partitions build one after another, never colliding. On the lakehouse nothing
is locked: each build commits its own transactions, and one that loses a commit race to a concurrent build is
run again. A run over several languages builds them all in one invocation. dbt runs in the run's process,
parsed once per process outside the lock (``resources/dbt_runner.py``).
"""

import json
import re
from pathlib import Path
from typing import Any, Mapping

from dagster import AssetExecutionContext, Failure, MetadataValue, PartitionsDefinition
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

from xinst_assets.resources.dbt_runner import dbt_build
from xinst_assets.store import Store


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class XinstDbtTranslator(DagsterDbtTranslator):
    """Groups models by their folder and marks them as DuckDB/dbt assets owned by the data team."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return "filtering" if "filtering" in fqn or "marts" in fqn else super().get_group_name(dbt_resource_props)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]):
        return ["team:data"]


def run_dbt_build(context: AssetExecutionContext, dbt: DbtCliResource, store: Store):
    """``dbt build`` of the selected models for this run's language partitions (one invocation for all of
    them; the models and tests are scoped to them by the ``langs`` var), in this process (see
    ``resources/dbt_runner.py``), on the store's warehouse: the embedded file's lock held only while dbt
    executes, or on the lakehouse no lock and a build run again when it loses a commit race; dbt's results
    become Dagster outputs and asset check results as dagster-dbt's CLI streaming would make them."""
    params = get_updated_cli_invocation_params_for_context(
        context=context, manifest={}, dagster_dbt_translator=DagsterDbtTranslator()
    )
    if "--selector" in params.selection_args:  # dagster-dbt only does this for selections of 200+ nodes
        raise Failure(f"unsupported dbt selection {params.selection_args}")
    args = ["--vars", json.dumps({"langs": list(context.partition_keys)}), *params.selection_args]
    if params.indirect_selection:
        args += ["--indirect-selection", params.indirect_selection]
    backend = store.open()
    if store.backend == "embedded":
        # Make sure the file's folder exists: dbt-duckdb would create the file, but only under our lock.
        Path(store.path).parent.mkdir(parents=True, exist_ok=True)
    outcome = dbt_build(
        Path(dbt.project_dir), Path(dbt.profiles_dir or dbt.project_dir), store.dbt_env(), args,
        hold_warehouse=lambda: backend.lock(exclusive=True),
        retry=store.lakehouse_settings().retry if store.backend == "lakehouse" else None,
    )
    if outcome.attempts > 1:
        context.log.info(f"dbt build ran {outcome.attempts} times: the earlier builds lost commit races to "
                         "concurrent writers of the lakehouse")
    for raw_event in outcome.events:
        event = DbtCoreCliEventMessage(raw_event=raw_event, event_history_metadata={})
        yield from event.to_default_asset_events(
            manifest=params.manifest, dagster_dbt_translator=params.dagster_dbt_translator, context=context,
            project=params.dbt_project,
        )
    if not outcome.success:
        errors = [_ANSI.sub("", e) for e in outcome.errors] or ["(dbt logged no error message)"]
        raise Failure(
            f"dbt build failed for {', '.join(context.partition_keys)}: " + " | ".join(errors[:5]),
            metadata={"errors": MetadataValue.md("\n".join(f"- {e}" for e in errors))},
        )


def build_dbt_assets(project: DbtProject, partitions_def: PartitionsDefinition) -> list:
    """Two dbt asset definitions: screening (before near-dedup) and marts (after it)."""

    translator = XinstDbtTranslator()

    @dbt_assets(
        manifest=project.manifest_path,
        select="tag:filtering",
        name="dbt_filtering_models",
        partitions_def=partitions_def,
        dagster_dbt_translator=translator,
        project=project,
    )
    def dbt_filtering_models(context: AssetExecutionContext, dbt: DbtCliResource, store: Store):
        yield from run_dbt_build(context, dbt, store)

    @dbt_assets(
        manifest=project.manifest_path,
        select="tag:marts",
        name="dbt_mart_models",
        partitions_def=partitions_def,
        dagster_dbt_translator=translator,
        project=project,
    )
    def dbt_mart_models(context: AssetExecutionContext, dbt: DbtCliResource, store: Store):
        yield from run_dbt_build(context, dbt, store)

    return [dbt_filtering_models, dbt_mart_models]
