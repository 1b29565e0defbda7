"""The lora_adapter asset on a real Dagster instance: a materialization killed with SIGKILL mid-training and
materialized again resumes (same run directory, same MLflow run); the memory plan refuses what cannot fit;
`init: champion` continues the champion's adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from mlflow import MlflowClient

from codelupe_pipeline.assets.ingestion import SOURCES
from codelupe_pipeline.assets.training import BASE_MODEL, LORA_ADAPTER
from codelupe_pipeline.automation.jobs import ingest_and_curate_job
from codelupe_pipeline.automation.sources_sensor import partition_range_tags
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.registry.mlflow_store import CHAMPION, ModelRegistry
from codelupe_pipeline.resources import ComputeResource, ModelResource, SourcesResource
from codelupe_pipeline.settings import Settings
from codelupe_pipeline.train.launcher import PACKAGE_ROOT
from codelupe_pipeline_tests.corpus import build_fixture_corpus

TRAIN = {
    "max_steps": 6,
    "eval_every": 3,
    "checkpoint_every": 3,
    "eval_batches": 2,
    "micro_batch_size": 4,
    "seq_len": 128,
}

# The killed materialization runs in its own process, as a Dagster run worker would.
MATERIALIZE = """
import json, sys
from pathlib import Path
import dagster as dg
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.settings import Settings
settings = Settings(data_dir=Path(sys.argv[1]), sources_file=Path(sys.argv[2]))
defs = build_definitions(settings)
with dg.DagsterInstance.from_config(sys.argv[3]) as instance:
    dg.materialize(defs.assets, resources=defs.resources, instance=instance, selection=[dg.AssetKey("lora_adapter")],
                   run_config={"ops": {"lora_adapter": {"config": json.loads(sys.argv[4])}}})
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """Ingestion (a partition per source), curation and the base model, once, into a persistent instance."""
    root = tmp_path_factory.mktemp("asset")
    settings = Settings(data_dir=root / "data", sources_file=build_fixture_corpus(root / "corpus"))
    home = root / "dagster_home"
    home.mkdir()
    defs = build_definitions(settings)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        sources = (defs.resources or {})["sources"]
        assert isinstance(sources, SourcesResource)
        instance.add_dynamic_partitions(SOURCES, sources.load().names)
        keys = list(instance.get_dynamic_partitions(SOURCES))
        curated = defs.resolve_job_def(ingest_and_curate_job.name).execute_in_process(
            instance=instance, tags=partition_range_tags(keys)
        )
        assert curated.success
        built = dg.materialize(
            defs.assets,  # type: ignore[arg-type]
            resources=defs.resources,
            instance=instance,
            selection=[BASE_MODEL],
        )
        assert built.success
    return settings, home


def materialize(settings: Settings, home: Path, config: dict[str, Any], **resources: Any) -> dg.ExecuteInProcessResult:
    defs = build_definitions(settings)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return dg.materialize(
            defs.assets,  # type: ignore[arg-type]
            resources={**defs.resources, **resources},  # type: ignore[dict-item]
            instance=instance,
            selection=[LORA_ADAPTER],
            run_config={"ops": {"lora_adapter": {"config": config}}},
            raise_on_error=False,
        )


def adapter_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == LORA_ADAPTER]
    metadata = event.step_materialization_data.materialization.metadata
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(
        settings.resolved_mlflow_tracking_uri, settings.registered_model, settings.mlflow_artifact_root
    )


def test_a_plan_that_does_not_fit_is_refused_before_training(pipeline: tuple[Settings, Path]) -> None:
    settings, home = pipeline
    result = materialize(settings, home, TRAIN, compute=ComputeResource(device="cpu", gpu_memory_gb=0.001))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.step_failure_data.error.message)  # type: ignore[union-attr]
    assert "does not fit: the plan needs" in message and "the configured GPU (0.001 GiB) has 0.0 GiB" in message
    assert "weights" in message and "activations" in message
    assert registry(settings).versions() == []
    assert not (settings.models_dir / "checkpoints").exists() or not any(
        (settings.models_dir / "checkpoints").iterdir()
    )


def test_a_gpu_model_on_a_cpu_machine_says_why_not(pipeline: tuple[Settings, Path]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: auto does not fall back to the CPU")
    settings, home = pipeline
    result = materialize(
        settings, home, TRAIN, model=ModelResource(model="qwen2.5-coder-7b"), compute=ComputeResource(device="auto")
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.step_failure_data.error.message)  # type: ignore[union-attr]
    assert "no CUDA GPU on this machine" in message and "qwen2.5-coder-7b (7.6B parameters)" in message
    assert "CODELUPE_MODEL=tiny" in message
    assert registry(settings).versions() == []


@pytest.mark.slow  # about 80 s: a materialization killed mid-training, then resumed; then one continuing it
def test_killed_materialization_resumes_then_a_champion_is_continued(pipeline: tuple[Settings, Path]) -> None:
    settings, home = pipeline
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH"))))}
    args = [str(settings.data_dir), str(settings.sources_file), str(home), json.dumps(TRAIN)]
    worker = subprocess.Popen(
        [sys.executable, "-c", MATERIALIZE, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = settings.models_dir / "checkpoints"
    deadline = time.monotonic() + 300
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline and worker.poll() is None:  # wait for step 4, after the checkpoint at 3
        logs = list(checkpoints.glob("*/events.jsonl"))
        events = [json.loads(line) for line in logs[0].read_text().splitlines()] if logs else []
        if any(e["event"] == "step" and e["step"] >= 4 for e in events):
            break
        time.sleep(0.2)
    os.kill(worker.pid, signal.SIGKILL)  # the run worker dies; the trainer must die with it
    worker.wait()
    trainer = next(e["pid"] for e in events if e["event"] == "start")
    for _ in range(50):
        try:
            os.kill(trainer, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the trainer process {trainer} outlived its killed Dagster process")
    (run_dir,) = list(checkpoints.iterdir())
    assert (run_dir / "step-000003").is_dir() and not (run_dir / "complete.json").exists()
    mlflow_run = (run_dir / "mlflow_run_id").read_text()

    resumed = materialize(settings, home, TRAIN)
    assert resumed.success
    metadata = adapter_metadata(resumed)
    assert metadata["resumed_from_step"] == 3 and metadata["steps"] == 6
    assert str(metadata["run_dir"]) == str(run_dir) and not run_dir.exists()  # cleaned up after success
    assert "![loss curve](data:image/png;base64," in str(metadata["loss_curve_plot"])
    assert "fits" in str(metadata["memory_plan"]) and "format: completion" in str(metadata["samples"])
    assert 0 < metadata["non_pad_fraction"] <= 1 and metadata["mfu"] > 0 and "CPU" in metadata["mfu_basis"]
    # One MLflow run across both attempts: its train_loss curve has every step, and the registered version.
    client = MlflowClient(settings.resolved_mlflow_tracking_uri)
    history = client.get_metric_history(mlflow_run, "train_loss")
    assert {m.step for m in history} == set(range(1, 7))
    assert client.get_run(mlflow_run).info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(mlflow_run, "training")}
    assert artifacts == {"training/job.json", "training/loss_curve.png"}
    (version,) = registry(settings).versions()
    challenger = registry(settings).alias("challenger")
    assert version.run_id == mlflow_run and challenger is not None and challenger.version == version.version
    assert version.tags["train_steps"] == "6" and Path(version.tags["adapter_dir"]).is_dir()

    # The registry makes it champion; the next training continues its adapter instead of a fresh one.
    registry(settings).set_alias(CHAMPION, version.version)
    following = materialize(settings, home, {**TRAIN, "max_steps": 2, "init": "champion"})
    assert following.success
    nxt = adapter_metadata(following)
    assert nxt["init"] == f"champion v{version.version}" and nxt["resumed_from_step"] == 0
    assert nxt["val_loss_before"] == pytest.approx(float(version.tags["val_loss"]), rel=1e-4)
    assert registry(settings).versions()[-1].tags["init"] == f"champion v{version.version}"
