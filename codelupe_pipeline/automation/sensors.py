"""The growth sensor: request training when the curated snapshot has grown enough since the last training.

It reads Dagster's own materialization metadata (snapshot version and row count), never the DuckDB file.
The run key is the snapshot version, so one snapshot is never trained twice, also across daemon restarts.
"""

import json
from collections.abc import Mapping
from dataclasses import asdict

import dagster as dg

from codelupe_pipeline.assets.curation import CURATED_SNAPSHOT
from codelupe_pipeline.assets.training import LORA_ADAPTER
from codelupe_pipeline.automation.growth import GrowthPolicy, SnapshotState, growth_decision
from codelupe_pipeline.automation.jobs import GPU_TAGS


def latest_state(instance: dg.DagsterInstance, key: dg.AssetKey, rows_key: str) -> SnapshotState | None:
    """Snapshot version and rows recorded by the latest materialization of `key`."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata
    if "snapshot_version" not in metadata or rows_key not in metadata:
        return None
    return SnapshotState(
        version=str(metadata["snapshot_version"].value),
        rows=int(metadata[rows_key].value),  # type: ignore[arg-type]
        timestamp=event.timestamp,
    )


def build_growth_sensor(job_name: str, policy: GrowthPolicy, interval_seconds: int = 30) -> dg.SensorDefinition:
    @dg.sensor(
        name="retrain_on_growth",
        job_name=job_name,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests `{job_name}` when the curated snapshot grew by {policy.describe()} since the "
        "last training; the run key is the snapshot version.",
    )
    def retrain_on_growth(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        current = latest_state(context.instance, CURATED_SNAPSHOT, "dagster/row_count")
        trained = latest_state(context.instance, LORA_ADAPTER, "snapshot_rows")
        requested = SnapshotState(**json.loads(context.cursor)) if context.cursor else None
        # Compare with the latest of: what we last asked to train, what was last trained (also by hand).
        candidates = [s for s in (requested, trained) if s is not None]
        baseline = max(candidates, key=lambda s: s.timestamp) if candidates else None
        train, reason = growth_decision(current, baseline, policy)
        if not train or current is None:
            return dg.SkipReason(reason)
        context.log.info(reason)
        context.update_cursor(json.dumps(asdict(current)))
        return dg.RunRequest(
            run_key=current.version,
            run_config={"ops": {"lora_adapter": {"config": {"snapshot_version": current.version}}}},
            tags={"codelupe/snapshot_version": current.version, "codelupe/trigger": "growth"},
        )

    return retrain_on_growth


def build_evaluation_sensor(
    interval_seconds: int = 30, gpu_tags: Mapping[str, str] = GPU_TAGS
) -> dg.AutomationConditionSensorDefinition:
    """Declarative automation for the evaluation and registry assets: each new adapter is benchmarked and judged
    in one run that follows its training (their `eager` conditions); a failed training updates nothing."""
    return dg.AutomationConditionSensorDefinition(
        "evaluate_new_adapters",
        target=dg.AssetSelection.groups("evaluation", "registry"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
        run_tags=dict(gpu_tags),
        description="Benchmarks every new LoRA adapter and runs the promotion gate on it, in one GPU-tagged run "
        "after the training that made it.",
    )
