"""Schedules: periodic re-scans of every source (on by default) and GitHub discovery (off until turned on)."""

import dagster as dg

from codelupe_pipeline.assets.ingestion import SOURCES
from codelupe_pipeline.automation.jobs import discover_github_job, ingest_and_curate_job
from codelupe_pipeline.automation.sources_sensor import partition_range_tags

# Runs not finished yet.
PENDING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def build_rescan_schedule(cron: str, running: bool = True) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="rescan_sources",
        job=ingest_and_curate_job,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=f"Re-scans every source partition in one run, then curates, on `{cron}`.",
    )
    def rescan_sources(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        keys = list(context.instance.get_dynamic_partitions(SOURCES))
        if not keys:
            return dg.SkipReason("no source partitions yet: the sources sensor adds them from the sources file")
        # A re-scan already waiting or running covers this tick too: never let re-scans pile up in the queue.
        pending = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=ingest_and_curate_job.name, statuses=PENDING), limit=1
        )
        if pending:
            return dg.SkipReason(
                f"run {pending[0].run_id} of {ingest_and_curate_job.name} is still {pending[0].status.value}"
            )
        return dg.RunRequest(tags={"codelupe/trigger": "rescan", **partition_range_tags(keys)})

    return rescan_sources


def build_discovery_schedule(cron: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="rediscover_github",
        job=discover_github_job,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Runs the GitHub searches of the sources file again on `{cron}`; the sources sensor "
        "then adds the new repositories.",
    )
