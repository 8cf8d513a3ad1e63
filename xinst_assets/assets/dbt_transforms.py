"""dbt models as Dagster assets: exact dedup and screening per language, and the statistics marts.

dbt tests become asset checks. dbt opens the DuckDB file itself, so a dbt build runs while this run holds the
warehouse lock exclusively: concurrent language partitions build one after another, never colliding.
"""

import json
import os
from typing import Any, Mapping

from dagster import AssetExecutionContext, PartitionsDefinition
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from xinst_assets.resources.warehouse import Warehouse


class XinstDbtTranslator(DagsterDbtTranslator):
    """Groups models by their folder and marks them as DuckDB/dbt assets owned by the data team."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return "filtering" if "filtering" in fqn or "marts" in fqn else super().get_group_name(dbt_resource_props)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]):
        return ["team:data"]


def run_dbt_build(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    """``dbt build`` of the selected models for this run's language partition, under the warehouse lock."""
    os.environ["XINST_DBT_WAREHOUSE"] = str(warehouse.db_path)
    with warehouse.lock(exclusive=True):
        # Make sure the file exists: dbt-duckdb would create it, but only ours may create it under the lock.
        warehouse.db_path.parent.mkdir(parents=True, exist_ok=True)
        args = ["build", "--vars", json.dumps({"lang": context.partition_key})]
        yield from dbt.cli(args, context=context).stream()


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
    def dbt_filtering_models(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
        yield from run_dbt_build(context, dbt, warehouse)

    @dbt_assets(
        manifest=project.manifest_path,
        select="tag:marts",
        name="dbt_mart_models",
        partitions_def=partitions_def,
        dagster_dbt_translator=translator,
        project=project,
    )
    def dbt_mart_models(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
        yield from run_dbt_build(context, dbt, warehouse)

    return [dbt_filtering_models, dbt_mart_models]
