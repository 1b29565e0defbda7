"""The whole pipeline once, headless, on a given Dagster instance: what `codelupe run` does.

1. When the sources file declares GitHub searches, run discovery (a failure keeps the previous results).
2. Give every source a partition of `raw_code_files`.
3. Run `full_pipeline` over all partitions in one run: one ingestion step (a single-run backfill), then the
   unpartitioned curation, training, benchmark and registration. Partitions whose source left the sources file
   are in the range too: their step retires the source's rows.
4. Delete the partitions whose retirement that run recorded.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from codelupe_pipeline.assets.ingestion import SOURCES
from codelupe_pipeline.automation.jobs import FULL_PIPELINE, discover_github_job
from codelupe_pipeline.automation.sources_sensor import REMOVED, latest_source_status, partition_range_tags
from codelupe_pipeline.resources import SourcesResource


@dataclass(frozen=True)
class PipelineRun:
    result: dg.ExecuteInProcessResult
    discovery: dg.ExecuteInProcessResult | None
    partitions: list[str]  # the source partitions the run covered
    deleted_partitions: list[str]  # partitions of removed sources, deleted after their rows were retired


def run_pipeline_once(
    defs: dg.Definitions, instance: dg.DagsterInstance, run_config: Mapping[str, Any], run_id: str | None = None
) -> PipelineRun:
    sources = (defs.resources or {})["sources"]
    assert isinstance(sources, SourcesResource)
    catalog = sources.load()  # a bad sources file stops here with an error naming it
    discovery = None
    if catalog.github.searches:
        loggers = {"loggers": run_config["loggers"]} if "loggers" in run_config else {}
        discovery = defs.resolve_job_def(discover_github_job.name).execute_in_process(
            instance=instance, run_config=loggers, raise_on_error=False
        )
        catalog = sources.load()
    if not catalog.sources:
        raise ValueError(f"{sources.sources_file}: declares no sources; add one (see README, Sources)")

    existing = set(instance.get_dynamic_partitions(SOURCES))
    new = [name for name in catalog.names if name not in existing]
    if new:
        instance.add_dynamic_partitions(SOURCES, new)
    keys = list(instance.get_dynamic_partitions(SOURCES))
    result = defs.resolve_job_def(FULL_PIPELINE).execute_in_process(
        run_config=dict(run_config),
        instance=instance,
        tags=partition_range_tags(keys),
        raise_on_error=False,
        run_id=run_id,
    )
    declared = set(catalog.names)
    gone = [k for k in keys if k not in declared and latest_source_status(instance, k)[0] == REMOVED]
    for key in gone:
        instance.delete_dynamic_partition(SOURCES, key)
    return PipelineRun(result, discovery, keys, gone)
