"""Jobs: discovery, the whole chain, ingestion + curation (sensor and schedule runs), training + evaluation.

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
full_pipeline_job = dg.define_asset_job(
    "full_pipeline",
    selection=dg.AssetSelection.all() - _DISCOVERY,
    description="Ingest the given sources, curate, train, benchmark and register, end to end.",
)
ingest_and_curate_job = dg.define_asset_job(
    "ingest_and_curate",
    selection=dg.AssetSelection.groups("ingestion", "curation") - _DISCOVERY,
    description="Ingest the given sources and rebuild the curated snapshot (a new version only if it changed).",
)
train_and_evaluate_job = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.groups("training", "evaluation", "registry"),
    description="Train a LoRA adapter on the latest snapshot, benchmark it and register it in MLflow.",
    tags={"codelupe/resource": "gpu"},
)
