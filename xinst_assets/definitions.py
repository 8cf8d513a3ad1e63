"""The one Definitions object of xinst: assets, checks, resources, schedules and sensors."""

from __future__ import annotations

import dagster as dg

from xinst_assets.assets.curated import build_curated_assets
from xinst_assets.assets.curation import build_curation_assets
from xinst_assets.assets.curator import build_curator_asset
from xinst_assets.assets.generation import build_generation_assets
from xinst_assets.assets.diversification import build_diversification_assets
from xinst_assets.assets.tuning import build_tuning_assets
from xinst_assets.assets.dbt_transforms import build_dbt_assets
from xinst_assets.assets.filtering import build_filtering_assets
from xinst_assets.assets.raw import build_raw_web_text
from xinst_assets.automation import build_new_shard_sensor, build_nightly_schedule
from xinst_assets.config import XinstConfig
from xinst_assets.partitions import language_partitions
from xinst_assets.resources.curated_sources import CuratedSources
from xinst_assets.resources.dbt import dbt_project, dbt_resource
from xinst_assets.resources.embedding import EmbeddingModel
from xinst_assets.resources.inference import AnswerModelRole, InferenceSettings, ModelRole
from xinst_assets.resources.models import ModelSettings
from xinst_assets.resources.training import TrainingLauncher
from xinst_assets.resources.lid import LidModel
from xinst_assets.resources.raw_sources import RawSources
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.store import Store


TUNING_ASSETS = ("replay_instructions", "dataset_export", "tuned_checkpoint", "evaluation")


def build_definitions(config: XinstConfig, resource_overrides: dict | None = None) -> dg.Definitions:
    """Assemble the asset graph for a deployment's configuration (``resource_overrides`` replace resources by
    key, e.g. smaller models in tests)."""
    partitions = language_partitions(config.registry)
    project = dbt_project()
    assets = [
        build_raw_web_text(partitions),
        *build_filtering_assets(partitions, config.registry),
        *build_dbt_assets(project, partitions),
        *build_curated_assets(partitions),
        *build_generation_assets(partitions, config.registry),
        build_curator_asset(config.registry),
        *build_curation_assets(partitions, config.registry),
        *build_diversification_assets(partitions, config.registry),
        *build_tuning_assets(config.registry),
    ]
    resources = {
        "dbt": dbt_resource(project),
        "lid_model": LidModel(),
        "curated_sources": CuratedSources(),
        # The generator's backend, and every role's unless the role sets its own.
        "inference": InferenceSettings(),
        "curator": ModelRole(),
        "refiner": ModelRole(),
        "answer_model": AnswerModelRole(),
        "judge": ModelRole(),
        "embedding_model": EmbeddingModel(),
        "models": ModelSettings(),
        "training_launcher": TrainingLauncher(),
        # Every stage, dbt and the sensor reach the warehouse through the store: the embedded DuckDB file (the
        # default) or a DuckLake lakehouse (XINST_STORE=lakehouse; see xinst_assets/store/).
        "store": Store.from_env(config.home, warehouse=config.warehouse),
        "storage": XinstStorage(home=str(config.home)),
        "raw_sources": RawSources(patterns=config.raw_patterns),
        **(resource_overrides or {}),
    }
    tuning = dg.AssetSelection.assets(*TUNING_ASSETS)
    pipeline_job = dg.define_asset_job(
        "xinst_pipeline",
        selection=dg.AssetSelection.all() - tuning,
        description="Stages 1-5 for one language partition: raw text to the diversified dataset (the instruction "
        "generator is trained once and reused while its seed data is unchanged).",
    )
    tuning_job = dg.define_asset_job(
        "xinst_tuning",
        selection=tuning,
        description="Stages 6-7 over every language: export the dataset, sync the replay instructions, tune the "
        "model, evaluate it.",
    )
    return dg.Definitions(
        assets=assets,
        resources=resources,
        jobs=[pipeline_job, tuning_job],
        schedules=[build_nightly_schedule(pipeline_job, config.registry, config.nightly_cron, config.timezone)],
        sensors=[build_new_shard_sensor(pipeline_job, config.registry)],
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Entry point for `dagster dev` / `dg dev`, Dagster's CLI and run workers: the configuration comes from the
    environment. The local Dagster instance is made ready first, as the ``xinst`` command does (created and
    migrated once under its lock, runs of dead processes marked failed: xinst_assets/local_instance.py)."""
    from xinst_assets.local_instance import prepare_for_definitions

    prepare_for_definitions()
    return build_definitions(XinstConfig.from_env())
