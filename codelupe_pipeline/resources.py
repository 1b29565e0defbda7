"""Dagster resources: where state lives and what computes. Each wraps a plain module; none holds logic."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from codelupe_pipeline.duckdb_lock import connect_waiting
from codelupe_pipeline.evaluate.results import ResultsStore
from codelupe_pipeline.ingest.github_api import GitHubClient
from codelupe_pipeline.ingest.scan import ScanRules
from codelupe_pipeline.ingest.sources import SourceCatalog, load_catalog
from codelupe_pipeline.registry.mlflow_store import ModelRegistry
from codelupe_pipeline.settings import Settings
from codelupe_pipeline.train.profiles import ModelProfile, resolve_profile


class StorageResource(dg.ConfigurableResource):
    """The data directory: raw git clones, curated snapshots, base models, adapters, evaluation results."""

    data_dir: str = Field(description="Root of all CodeLupe state (CODELUPE_DATA_DIR).")

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    @property
    def git_dir(self) -> Path:
        return self.root / "raw" / "git"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    @property
    def base_models_dir(self) -> Path:
        return self.root / "models" / "base"

    @property
    def adapters_dir(self) -> Path:
        return self.root / "models" / "adapters"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"


class SourcesResource(dg.ConfigurableResource):
    """What to ingest: the sources file, the discovered repositories, and the file rules applied to all."""

    sources_file: str = Field(description="YAML list of sources (CODELUPE_SOURCES_FILE); absent = Python stdlib.")
    discovered_file: str = Field(description="Managed file of the repositories GitHub discovery accepted.")
    languages: list[str] = Field(description="Languages kept at ingestion (CODELUPE_LANGUAGES).")
    max_file_bytes: int = Field(default=1_000_000, description="Larger files are skipped.")
    stdlib_max_files: int = Field(default=300, description="Files taken from the stdlib default corpus.")

    def load(self) -> SourceCatalog:
        return load_catalog(Path(self.sources_file), Path(self.discovered_file), self.stdlib_max_files)

    def rules(self) -> ScanRules:
        return ScanRules(languages=frozenset(self.languages), max_file_bytes=self.max_file_bytes)


class GitHubResource(dg.ConfigurableResource):
    """GitHub's REST API for discovery. The token is read from the environment when used, never stored."""

    api_url: str = Field(default="https://api.github.com", description="API base URL (CODELUPE_GITHUB_API_URL).")
    token_env_var: str = Field(default="GITHUB_TOKEN", description="Environment variable holding the token.")
    max_wait_seconds: float = Field(default=900.0, description="Longest rate-limit wait slept through.")

    def client(self) -> GitHubClient:
        token = os.environ.get(self.token_env_var, "").strip() or None
        return GitHubClient(api_url=self.api_url, token=token, max_wait_seconds=self.max_wait_seconds)


class DuckDBWarehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file. DuckDB allows one writer process: assets using it share the `duckdb` pool
    (limit 1), and a connection waits for another process's lock instead of failing at once."""

    path: str = Field(description="DuckDB database file (<data_dir>/warehouse.duckdb).")
    lock_timeout_seconds: float = Field(default=300.0, description="How long to wait for another writer.")
    row_group_size: int = Field(
        default=4096,
        description="Rows per row group of the tables written. DuckDB gives each thread whole row groups, so a "
        "corpus of a few thousand large files needs groups smaller than the default 122,880 rows to use every core.",
    )

    memory_limit: str = Field(
        default="",
        description="DuckDB's memory limit, e.g. 8GB or 50% (CODELUPE_DUCKDB_MEMORY_LIMIT); empty = DuckDB's "
        "default, 80 % of RAM. Beyond it DuckDB spills to disk next to the warehouse instead of growing.",
    )

    def _open(self) -> duckdb.DuckDBPyConnection:
        # The warehouse is ATTACHed to an in-memory database, whose spill directory would be the working
        # directory: spill next to the warehouse file instead.
        config: dict[str, str | bool | int | float | list[str]] = {"temp_directory": f"{self.path}.tmp"}
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        try:
            con = duckdb.connect(config=config)
        except duckdb.Error as exc:
            if not self.memory_limit:
                raise
            raise ValueError(
                f"CODELUPE_DUCKDB_MEMORY_LIMIT={self.memory_limit!r} is not a DuckDB memory limit: {exc}"
            ) from exc
        try:
            path = self.path.replace("'", "''")
            con.execute(f"ATTACH '{path}' AS warehouse (ROW_GROUP_SIZE {int(self.row_group_size)})")
            con.execute("USE warehouse")
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = connect_waiting(self._open, self.lock_timeout_seconds)
        try:
            yield con
        finally:
            con.close()


class EvaluationResource(dg.ConfigurableResource):
    """What the evaluation scores and how its sandbox runs (deployment settings; run settings are dg.Config)."""

    benchmarks_file: str = Field(description="Benchmarks file (CODELUPE_BENCHMARKS_FILE); absent = HumanEval.")
    sandbox_isolation: str = Field(default="auto", description="auto, bubblewrap, unshare or none.")
    sandbox_workers: int = Field(default=0, description="Parallel sandbox programs (0 = one per CPU).")
    results_path: str = Field(description="DuckDB file of evaluation results (<data_dir>/eval/results.duckdb).")

    def results(self) -> ResultsStore:
        return ResultsStore(Path(self.results_path))


class MlflowResource(dg.ConfigurableResource):
    """The MLflow tracking store and model registry (a SQLite file by default, Postgres when configured)."""

    tracking_uri: str = Field(description="MLflow tracking/registry URI (CODELUPE_MLFLOW_TRACKING_URI).")
    artifact_root: str = Field(description="Where run artifacts (adapters, tables) are stored.")
    registered_model: str = Field(description="Registered model name (CODELUPE_REGISTERED_MODEL).")
    ui_url: str = Field(default="http://127.0.0.1:5000", description="Base URL of the MLflow UI, for links.")

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.registered_model, Path(self.artifact_root))


class ComputeResource(dg.ConfigurableResource):
    """The device that trains and generates: `auto` takes CUDA when a GPU is present."""

    device: str = Field(default="auto", description="auto, cpu or cuda (CODELUPE_DEVICE).")
    gpu_memory_gb: float = Field(
        default=0.0, description="GiB the training plan must fit; 0 = detect (CODELUPE_GPU_MEMORY_GB)."
    )
    train_processes: int = Field(
        default=1, description="Data-parallel training processes, one per GPU (CODELUPE_TRAIN_PROCESSES)."
    )

    def resolve(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {self.device!r} was requested but torch sees no CUDA GPU "
                f"(torch {torch.__version__}); set CODELUPE_DEVICE=auto or cpu"
            )
        return self.device


class ModelResource(dg.ConfigurableResource):
    """Which base model to fine-tune: a profile name, a hub id or a local model directory."""

    model: str = Field(default="tiny", description="Profile, hub id or local path (CODELUPE_MODEL).")
    profiles_file: str = Field(default="", description="Extra model profiles, YAML (CODELUPE_MODEL_PROFILES).")

    def profile(self) -> ModelProfile:
        return resolve_profile(self.model, Path(self.profiles_file) if self.profiles_file else None)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "storage": StorageResource(data_dir=str(settings.data_dir)),
        "sources": SourcesResource(
            sources_file=str(settings.sources_file),
            discovered_file=str(settings.discovered_sources_file),
            languages=list(settings.languages),
            max_file_bytes=settings.max_file_bytes,
            stdlib_max_files=settings.stdlib_max_files,
        ),
        "github": GitHubResource(api_url=settings.github_api_url, max_wait_seconds=settings.github_max_wait_seconds),
        "warehouse": DuckDBWarehouse(path=str(settings.warehouse_path), memory_limit=settings.duckdb_memory_limit),
        "mlflow": MlflowResource(
            tracking_uri=settings.resolved_mlflow_tracking_uri,
            artifact_root=str(settings.mlflow_artifact_root),
            registered_model=settings.registered_model,
        ),
        "evaluation": EvaluationResource(
            benchmarks_file=str(settings.benchmarks_file),
            sandbox_isolation=settings.sandbox_isolation,
            sandbox_workers=settings.sandbox_workers,
            results_path=str(settings.eval_results_path),
        ),
        "compute": ComputeResource(
            device=settings.device,
            gpu_memory_gb=settings.gpu_memory_gb,
            train_processes=settings.train_processes,
        ),
        "model": ModelResource(model=settings.model, profiles_file=str(settings.model_profiles_file)),
    }
