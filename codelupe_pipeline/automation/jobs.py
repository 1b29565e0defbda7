"""Jobs: discovery, the whole chain, ingestion + curation (sensor and schedule runs), training.

`raw_code_files` is partitioned by source: a run of `full_pipeline` or `ingest_and_curate` names the sources
it ingests (one partition, or a range of them for a single-run backfill); curation after it is unpartitioned
and reads every source.
"""

from collections.abc import Mapping

import dagster as dg

# What dg.define_asset_job returns; Dagster does not export it under a public name.
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from codelupe_pipeline.assets.ingestion import GITHUB_REPOSITORIES

_DISCOVERY = dg.AssetSelection.assets(GITHUB_REPOSITORIES)

discover_github_job = dg.define_asset_job(
    "discover_github",
    selection=_DISCOVERY,
    description="Run the GitHub searches of the sources file and update the discovered git sources.",
)
# Runs that hold the GPU carry this tag; dagster.yaml lets one such run execute at a time, the rest queue.
GPU_TAGS = {"codelupe/resource": "gpu"}
# Their tags come from the settings, so the jobs are built with the definitions; their names are fixed.
FULL_PIPELINE, TRAIN_ADAPTER = "full_pipeline", "train_adapter"

ingest_and_curate_job = dg.define_asset_job(
    "ingest_and_curate",
    selection=dg.AssetSelection.groups("ingestion", "curation") - _DISCOVERY,
    description="Ingest the given sources and rebuild the curated snapshot (a new version only if it changed).",
)


def build_gpu_jobs(
    tags: Mapping[str, str] = GPU_TAGS,
) -> tuple[UnresolvedAssetJobDefinition, UnresolvedAssetJobDefinition]:
    """The jobs that hold the GPU, with their run tags: GPU_TAGS and the user's CODELUPE_GPU_RUN_TAGS."""
    full_pipeline = dg.define_asset_job(
        FULL_PIPELINE,
        selection=dg.AssetSelection.all() - _DISCOVERY,
        description="Ingest the given sources, curate, train, benchmark and register, end to end.",
        tags=tags,
    )
    train_adapter = dg.define_asset_job(
        TRAIN_ADAPTER,
        selection=dg.AssetSelection.groups("training"),
        description="Train a LoRA adapter on a curated snapshot and register it as `challenger`; its evaluation "
        "and promotion follow by declarative automation.",
        tags=tags,
    )
    return full_pipeline, train_adapter
