"""The one `dg.Definitions` of CodeLupe, loaded by `dagster dev -w workspace.yaml`."""

import dagster as dg

from codelupe_pipeline.assets.curation import build_curation
from codelupe_pipeline.assets.evaluation import benchmarks_complete, model_evaluation, sandbox_isolated
from codelupe_pipeline.assets.ingestion import github_repositories, raw_code_files
from codelupe_pipeline.assets.registry import registered_model_version
from codelupe_pipeline.assets.training import base_model, lora_adapter
from codelupe_pipeline.automation.growth import GrowthPolicy
from codelupe_pipeline.automation.jobs import GPU_TAGS, build_gpu_jobs, discover_github_job, ingest_and_curate_job
from codelupe_pipeline.automation.schedules import build_discovery_schedule, build_rescan_schedule
from codelupe_pipeline.automation.sensors import build_evaluation_sensor, build_growth_sensor
from codelupe_pipeline.automation.sources_sensor import build_sources_sensor
from codelupe_pipeline.resources import build_resources
from codelupe_pipeline.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    curation_assets, curation_checks = build_curation(settings.sql_dir)
    assets = [
        github_repositories,
        raw_code_files,
        *curation_assets,
        base_model,
        lora_adapter,
        model_evaluation,
        registered_model_version,
    ]
    gpu_tags = {**settings.extra_gpu_tags, **GPU_TAGS}  # the user's tags cannot drop the one-GPU-run limit
    full_pipeline_job, train_adapter_job = build_gpu_jobs(gpu_tags)
    owners = list(settings.asset_owners)
    return dg.Definitions(
        # Owners are the user's (a setting), so they are stamped on here rather than in each decorator.
        assets=dg.map_asset_specs(lambda spec: spec.replace_attributes(owners=owners), assets),
        asset_checks=[*curation_checks, sandbox_isolated, benchmarks_complete],
        jobs=[full_pipeline_job, ingest_and_curate_job, train_adapter_job, discover_github_job],
        sensors=[
            build_sources_sensor(ingest_and_curate_job.name, settings.sources_sensor_interval_seconds),
            build_growth_sensor(
                train_adapter_job.name,
                GrowthPolicy(settings.retrain_min_new_rows, settings.retrain_min_growth_fraction),
                settings.sensor_interval_seconds,
            ),
            build_evaluation_sensor(settings.sensor_interval_seconds, gpu_tags),
        ],
        schedules=[
            build_rescan_schedule(settings.rescan_cron, settings.rescan_enabled),
            build_discovery_schedule(settings.discovery_cron),
        ],
        resources=build_resources(settings),
        # Steps run in the run's own process: curation is a chain of DuckDB steps that the `duckdb` pool
        # serialises anyway, and training spawns its own workers. A process per step would add seconds of
        # imports to each of some thirty steps.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
