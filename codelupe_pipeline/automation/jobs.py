"""Jobs: the whole chain, ingestion + curation (scheduled re-scans), and training + evaluation + registry."""

import dagster as dg

full_pipeline_job = dg.define_asset_job(
    "full_pipeline",
    selection=dg.AssetSelection.all(),
    description="Ingest, curate, train, benchmark and register, end to end.",
)
ingest_and_curate_job = dg.define_asset_job(
    "ingest_and_curate",
    selection=dg.AssetSelection.groups("ingestion", "curation"),
    description="Re-scan every source and rebuild the curated snapshot (a new version only if it changed).",
)
train_and_evaluate_job = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.groups("training", "evaluation", "registry"),
    description="Train a LoRA adapter on the latest snapshot, benchmark it and register it in MLflow.",
    tags={"codelupe/resource": "gpu"},
)
