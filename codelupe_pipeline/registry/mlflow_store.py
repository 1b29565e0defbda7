"""The MLflow side of CodeLupe: one experiment per base model, one run per training, one registered model.

Provenance lives in model-version tags (dataset snapshot, base model, scores, Dagster run, git commit);
aliases (`champion`, `challenger`) say which version serves, since MLflow's stages are deprecated.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"
ADAPTER_ARTIFACT_PATH = "adapter"

# MLflow logs a migration line per table on first use of a SQLite store: keep the run log readable.
logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass(frozen=True)
class VersionInfo:
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str]
    aliases: list[str]


class ModelRegistry:
    def __init__(self, tracking_uri: str, model_name: str, artifact_root: Path | None = None) -> None:
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # Experiments and runs
    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = None
        if self.artifact_root is not None:
            safe = name.replace("/", "_")
            location = (self.artifact_root / safe).resolve().as_uri()
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except MlflowException:  # created concurrently by another run
            experiment = self.client.get_experiment_by_name(name)
            assert experiment is not None
            return str(experiment.experiment_id)

    def start_run(self, experiment: str, run_name: str, tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=dict(tags))
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        batch = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):
            self.client.log_batch(run_id, params=batch[i : i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        import time

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        self.client.log_artifacts(run_id, str(local_dir), artifact_path=artifact_path)

    def log_json(self, run_id: str, data: object, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_text(json.dumps(data, indent=2, default=str))
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(run_id, str(path), artifact_path=None if parent == "." else parent)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def run_url(self, run_id: str, ui_base: str = "http://127.0.0.1:5000") -> str:
        run = self.client.get_run(run_id)
        return f"{ui_base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    # The registered model
    def register(self, run_id: str, tags: Mapping[str, str], description: str = "") -> VersionInfo:
        try:
            self.client.create_registered_model(
                self.model_name, description="LoRA adapters for code, trained and promoted by CodeLupe."
            )
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                raise
        version = self.client.create_model_version(
            self.model_name,
            source=f"runs:/{run_id}/{ADAPTER_ARTIFACT_PATH}",
            run_id=run_id,
            tags={k: str(v) for k, v in tags.items()},
            description=description,
        )
        return self.version(str(version.version))

    def version(self, version: str) -> VersionInfo:
        mv = self.client.get_model_version(self.model_name, version)
        return VersionInfo(str(mv.version), mv.run_id, mv.source or "", dict(mv.tags), list(mv.aliases or []))

    def versions(self) -> list[VersionInfo]:
        found = self.client.search_model_versions(f"name = '{self.model_name}'")
        return sorted(
            (VersionInfo(str(v.version), v.run_id, v.source or "", dict(v.tags), list(v.aliases or [])) for v in found),
            key=lambda v: int(v.version),
        )

    def alias(self, alias: str) -> VersionInfo | None:
        try:
            mv = self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None
        return self.version(str(mv.version))

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, version)

    def set_version_tags(self, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, str(value))

    # Added for training: resuming a run, single-file artifacts, fetching an adapter to continue from.
    def reopen_run(self, run_id: str) -> bool:
        """Mark an interrupted run as running again (a resumed training continues its curve); False if gone."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        if run.info.lifecycle_stage != "active":
            return False
        self.client.update_run(run_id, status="RUNNING")
        return True

    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def download_adapter(self, version: str, destination: Path) -> Path:
        """The adapter files of a model version, downloaded from its run's artifacts."""
        info = self.version(version)
        if info.run_id is None:
            raise ValueError(f"{self.model_name} v{version} has no run to download its adapter from")
        destination.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(info.run_id, ADAPTER_ARTIFACT_PATH, str(destination)))

    def log_table(self, run_id: str, columns: Mapping[str, list[Any]], artifact_file: str) -> None:
        """A table the MLflow UI shows in the run's artifacts (column name -> values)."""
        self.client.log_table(run_id, data=dict(columns), artifact_file=artifact_file)
