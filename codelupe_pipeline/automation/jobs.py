"""Jobs: discovery, the whole chain, ingestion + curation (sensor and schedule runs), training.

`raw_code_files` is partitioned by source: a run of `full_pipeline` or `ingest_and_curate` names the sources
it ingests (one partition, or a range of them for a single-run backfill); curation after it is unpartitioned
and reads every source.
"""

import dagster as dg

from codelupe_pipeline.assets.ingestion import GITHUB_REPOSITORIES

_DISCOVERY = dg.AssetSelection.assets(GITHUB_REPOSITORIES)

discover_github_job = dg.define_asset_job(
    "discover_github",
    selection=_DISCOVERY,
    description="Run the GitHub searches of the sources file and update the discovered git sources.",
)
# Runs that hold the GPU carry this tag; dagster.yaml lets one such run execute at a time, the rest queue.
GPU_TAGS = {"codelupe/resource": "gpu"}

full_pipeline_job = dg.define_asset_job(
    "full_pipeline",
    selection=dg.AssetSelection.all() - _DISCOVERY,
    description="Ingest the given sources, curate, train, benchmark and register, end to end.",
    tags=GPU_TAGS,
)
ingest_and_curate_job = dg.define_asset_job(
    "ingest_and_curate",
    selection=dg.AssetSelection.groups("ingestion", "curation") - _DISCOVERY,
    description="Ingest the given sources and rebuild the curated snapshot (a new version only if it changed).",
)
train_adapter_job = dg.define_asset_job(
    "train_adapter",
    selection=dg.AssetSelection.groups("training"),
    description="Train a LoRA adapter on a curated snapshot and register it as `challenger`; its evaluation "
    "and promotion follow by declarative automation.",
    tags=GPU_TAGS,
)
