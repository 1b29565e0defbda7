"""The sources sensor: source partitions follow the sources file (and the discovered repositories).

It reads only the YAML files and Dagster's own event log, never DuckDB. New sources get a partition and one
ingestion run (a single-run backfill over the new partitions), changed ones an ingestion run of their
partition, removed ones a run that retires their rows, then the deletion of their partition.
"""

import hashlib
import json
from collections.abc import Sequence

import dagster as dg

from codelupe_pipeline.assets.ingestion import RAW_CODE_FILES, SOURCE_PARTITIONS, SOURCE_STATUS, SOURCES
from codelupe_pipeline.automation.source_sync import plan_source_sync
from codelupe_pipeline.ingest.sources import SourcesFileError
from codelupe_pipeline.resources import SourcesResource

# The tags of a run over a range of partitions (Dagster's single-run backfill of `raw_code_files`).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
REMOVED = "removed"


def partition_range_tags(keys: Sequence[str]) -> dict[str, str]:
    """Tags for one run over `keys`, which must be contiguous in the partitions' order."""
    return {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]}


def source_run_request(keys: Sequence[str], run_key: str, trigger: str) -> dg.RunRequest:
    tags = {"codelupe/trigger": trigger}
    if len(keys) == 1:
        return dg.RunRequest(run_key=run_key, partition_key=keys[0], tags=tags)
    return dg.RunRequest(run_key=run_key, tags={**tags, **partition_range_tags(keys)})


def latest_source_status(instance: dg.DagsterInstance, key: str) -> tuple[str | None, int]:
    """The status the latest materialization of a source partition recorded, and its storage id (0: none)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_CODE_FILES, asset_partitions=[key]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None, 0
    status = records[0].asset_materialization.metadata.get(SOURCE_STATUS)
    return (str(status.value) if status is not None else None), records[0].storage_id


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def build_sources_sensor(job_name: str, interval_seconds: int = 60) -> dg.SensorDefinition:
    @dg.sensor(
        name="sources_file_sensor",
        job_name=job_name,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Keeps the `sources` partitions of raw_code_files in step with the sources file and the discovered "
            f"repositories: adds a partition per new source and requests `{job_name}` for it, re-ingests a "
            "source whose entry changed, retires the rows of a removed source, then deletes its partition."
        ),
    )
    def sources_file_sensor(
        context: dg.SensorEvaluationContext, sources: SourcesResource
    ) -> dg.SensorResult | dg.SkipReason:
        try:
            catalog = sources.load()
        except SourcesFileError as exc:
            return dg.SkipReason(f"the sources file cannot be used, nothing changed: {exc}")
        declared = {s.name: s.fingerprint() for s in catalog.sources}
        instance = context.instance
        partitions = list(instance.get_dynamic_partitions(SOURCES))
        seen = json.loads(context.cursor) if context.cursor else None
        # Only partitions that may have been retired need a look at the event log.
        latest = {
            p: latest_source_status(instance, p)
            for p in partitions
            if p not in declared or seen is None or p not in seen
        }
        retired = {p for p, (status, _) in latest.items() if status == REMOVED}
        plan = plan_source_sync(declared, partitions, seen, retired)
        context.update_cursor(json.dumps(declared))
        if plan.empty:
            return dg.SkipReason(f"{len(declared)} sources, each with its partition: nothing added, changed or removed")

        requests = []
        if plan.add:
            marks = [latest_source_status(instance, p)[1] for p in plan.add]  # earlier lives of a re-added name
            requests.append(source_run_request(plan.add, f"add:{_key(plan.add, marks)}", "sources_file_added"))
        for name in plan.ingest:
            mark = (latest.get(name) or latest_source_status(instance, name))[1]
            run_key = f"ingest:{name}:{_key(declared[name], mark)}"
            requests.append(source_run_request([name], run_key, "sources_file_changed"))
        for name in plan.retire:
            requests.append(source_run_request([name], f"retire:{name}:{latest[name][1]}", "sources_file_removed"))
        context.log.info(
            f"sources: add {plan.add}, ingest again {plan.ingest}, retire {plan.retire}, delete {plan.delete}"
        )
        partition_requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
        if plan.add:
            partition_requests.append(SOURCE_PARTITIONS.build_add_request(plan.add))
        if plan.delete:
            partition_requests.append(SOURCE_PARTITIONS.build_delete_request(plan.delete))
        return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=partition_requests)

    return sources_file_sensor
