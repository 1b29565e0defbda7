"""Schedules: periodic re-scans of every source (off until a user turns it on in the UI)."""

import dagster as dg

from codelupe_pipeline.automation.jobs import ingest_and_curate_job


def build_rescan_schedule(cron: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="rescan_sources",
        job=ingest_and_curate_job,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Re-scan every source and rebuild the curated snapshot on `{cron}`.",
    )
