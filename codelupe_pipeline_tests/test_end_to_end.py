"""The whole chain with `dg.materialize` on a real instance: ingestion to a registered MLflow version."""

from __future__ import annotations

import hashlib

import dagster as dg
import duckdb
import pytest
from mlflow import MlflowClient

from codelupe_pipeline import cli
from codelupe_pipeline.automation.run_once import run_pipeline_once
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.settings import Settings
from codelupe_pipeline_tests.conftest import FAST_RUN_CONFIG


def materialize_all(settings: Settings, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """What `codelupe run` does: a partition per source, then one run of `full_pipeline` over all of them."""
    return run_pipeline_once(build_definitions(settings), instance, FAST_RUN_CONFIG).result


def stored_state(settings: Settings) -> str:
    """A fingerprint of everything ingestion stored."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute(
            "SELECT source, path, revision, sha256, status, fingerprint FROM raw_files ORDER BY ALL"
        ).fetchall()
        blobs = con.execute("SELECT sha256 FROM raw_blobs ORDER BY 1").fetchall()
    return hashlib.sha256(repr((rows, blobs)).encode()).hexdigest()


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    out = {}
    for event in result.get_asset_materialization_events():
        m = event.step_materialization_data.materialization
        out[m.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    return out


def test_full_chain_then_idempotent_rerun(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with dg.instance_for_test() as instance:
        first = materialize_all(settings, instance)
        assert first.success
        done = materializations(first)
        assert set(done) >= {
            "raw_code_files", "stg_raw_files", "file_features", "file_verdicts", "deduped_files",
            "curated_files", "curation_funnel", "curated_snapshot", "base_model", "lora_adapter",
            "model_evaluation", "registered_model_version",
        }  # fmt: skip

        # Ingestion: both sources, every language, the README skipped.
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            languages = {r[0] for r in con.execute("SELECT DISTINCT language FROM raw_files").fetchall()}
            licence = con.execute("SELECT DISTINCT license FROM raw_files WHERE source='fixture-repo'").fetchall()
        assert languages == {"python", "rust", "go", "typescript", "dart", "sql"}
        assert licence == [("MIT",)]

        # Curation: the exact copy is gone, the snapshot is a versioned Parquet file.
        snap = done["curated_snapshot"]
        assert snap["dagster/row_count"] == 6
        assert "exact_duplicate" in str(snap["filter_funnel"])
        assert (settings.snapshots_dir / str(snap["snapshot_version"]) / "data.parquet").exists()

        # Training happened and was recorded; the base model was built from the corpus.
        adapter = done["lora_adapter"]
        assert adapter["snapshot_version"] == snap["snapshot_version"]
        assert (settings.models_dir / "base" / "tiny" / "tokenizer.json").exists()

        # MLflow: a real model version with provenance tags and the pass@1 metric on its run.
        client = MlflowClient(settings.resolved_mlflow_tracking_uri, settings.resolved_mlflow_tracking_uri)
        versions = client.search_model_versions(f"name = '{settings.registered_model}'")
        assert len(versions) == 1
        version = versions[0]
        assert version.tags["dataset_version"] == snap["snapshot_version"]
        assert version.tags["base_model_profile"] == "tiny"
        assert "humaneval_pass_at_1" in version.tags
        run = client.get_run(version.run_id)
        assert "humaneval_pass_at_1" in run.data.metrics
        assert run.data.metrics["humaneval_pass_at_1"] == done["model_evaluation"]["humaneval_pass_at_1"]
        assert client.get_model_version_by_alias(settings.registered_model, "champion").version == version.version
        artifacts = {a.path for a in client.list_artifacts(version.run_id, "adapter")}
        assert "adapter/adapter_model.safetensors" in artifacts

        # `codelupe champion` tells its lineage from the registry alone.
        for env, value in settings.to_env().items():
            monkeypatch.setenv(env, value)
        capsys.readouterr()
        assert cli.main(["champion"]) == 0
        shown = capsys.readouterr().out
        assert f"champion: {settings.registered_model} v{version.version}" in shown
        assert f"dataset_version: {snap['snapshot_version']}" in shown
        assert "humaneval_pass_at_1: " in shown and "promotion_reason: " in shown

        # Again, with no new input: nothing stored changes, no new dataset version, no new model version.
        before = stored_state(settings)
        snapshots_before = sorted(p.name for p in settings.snapshots_dir.iterdir())
        second = materialize_all(settings, instance)
        assert second.success
        assert "curated_snapshot" not in materializations(second)
        assert "lora_adapter" not in materializations(second)
        assert stored_state(settings) == before
        assert sorted(p.name for p in settings.snapshots_dir.iterdir()) == snapshots_before
        assert len(client.search_model_versions(f"name = '{settings.registered_model}'")) == 1
