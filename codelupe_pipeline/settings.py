"""Every CodeLupe setting in one place: its default, its environment variable and what it does.

Defaults work on a laptop with no GPU and no services: all state goes under one data directory inside the
checkout. Each setting can be overridden by its environment variable; `codelupe config` prints the table.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
# The checkout root when the package runs from a clone (the supported way); else the working directory.
CHECKOUT_DIR = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").exists() else Path.cwd()


def _setting(env: str, default: Any, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(
        "CODELUPE_DATA_DIR",
        CHECKOUT_DIR / "data",
        "Directory holding all state: Dagster instance, DuckDB warehouse, snapshots, models, MLflow store.",
    )
    sources_file: Path = _setting(
        "CODELUPE_SOURCES_FILE",
        CHECKOUT_DIR / "sources.yaml",
        "YAML file listing the code sources to ingest. When absent, the Python standard library is used.",
    )
    sql_dir: Path = _setting(
        "CODELUPE_SQL_DIR",
        CHECKOUT_DIR / "dbt_like_sql",
        "Directory of the curation SQL models (one model per .sql file).",
    )
    languages: tuple[str, ...] = _setting(
        "CODELUPE_LANGUAGES",
        ("python", "rust", "go", "typescript", "dart", "sql"),
        "Comma-separated languages to keep at ingestion (the seed's target languages by default).",
    )
    max_file_bytes: int = _setting(
        "CODELUPE_MAX_FILE_BYTES", 1_000_000, "Files larger than this many bytes are skipped at ingestion."
    )
    stdlib_max_files: int = _setting(
        "CODELUPE_STDLIB_MAX_FILES",
        300,
        "How many files of the Python standard library the default corpus takes (0 = all).",
    )
    duckdb_memory_limit: str = _setting(
        "CODELUPE_DUCKDB_MEMORY_LIMIT",
        "",
        "Memory the DuckDB warehouse may use before it spills to disk, e.g. 8GB or 50%; empty = DuckDB's 80 % of RAM.",
    )
    model: str = _setting(
        "CODELUPE_MODEL",
        "tiny",
        "Base model: a profile name (tiny, qwen2.5-coder-7b, qwen2.5-coder-14b, ...), a hub id or a local path.",
    )
    model_profiles_file: Path = _setting(
        "CODELUPE_MODEL_PROFILES",
        CHECKOUT_DIR / "profiles.yaml",
        "YAML file of extra or adjusted model profiles (`profiles: [{name, base, ...}]`); absent = none.",
    )
    device: str = _setting("CODELUPE_DEVICE", "auto", "Compute device: auto (CUDA when present), cpu or cuda.")
    gpu_memory_gb: float = _setting(
        "CODELUPE_GPU_MEMORY_GB",
        0.0,
        "GPU memory (GiB) the training plan must fit; 0 = the detected GPU's (on CPU: the machine's RAM).",
    )
    train_processes: int = _setting(
        "CODELUPE_TRAIN_PROCESSES",
        1,
        "Data-parallel training processes, one per GPU (torchrun, DDP); 1 = a single device.",
    )
    mlflow_tracking_uri: str = _setting(
        "CODELUPE_MLFLOW_TRACKING_URI",
        "",
        "MLflow tracking and registry store. Empty: a SQLite store under <data_dir>/mlflow.",
    )
    postgres_url: str = _setting(
        "CODELUPE_POSTGRES_URL",
        "",
        "Postgres URL for Dagster's run, event-log and schedule storage. Empty: SQLite under <data_dir>/dagster.",
    )
    registered_model: str = _setting(
        "CODELUPE_REGISTERED_MODEL", "codelupe-coder", "Name of the model in the MLflow model registry."
    )
    benchmarks_file: Path = _setting(
        "CODELUPE_BENCHMARKS_FILE",
        CHECKOUT_DIR / "benchmarks.yaml",
        "YAML file listing the benchmarks the evaluation executes. When absent, HumanEval alone.",
    )
    sandbox_isolation: str = _setting(
        "CODELUPE_SANDBOX_ISOLATION",
        "auto",
        "How the code sandbox isolates programs: auto (the strongest available, loudly degraded), "
        "bubblewrap (fail without it), unshare or none.",
    )
    sandbox_workers: int = _setting(
        "CODELUPE_SANDBOX_WORKERS", 0, "Programs the sandbox runs in parallel (0 = one per available CPU)."
    )
    retrain_min_new_rows: int = _setting(
        "CODELUPE_RETRAIN_MIN_NEW_ROWS",
        1000,
        "The growth sensor requests training when the curated snapshot grew by at least this many rows.",
    )
    retrain_min_growth_fraction: float = _setting(
        "CODELUPE_RETRAIN_MIN_GROWTH_FRACTION",
        0.0,
        "Also request training when the snapshot grew by this fraction of the last trained one (0 = off).",
    )
    sensor_interval_seconds: int = _setting(
        "CODELUPE_SENSOR_INTERVAL_SECONDS", 30, "How often the growth sensor looks at the curated snapshot."
    )
    rescan_cron: str = _setting(
        "CODELUPE_RESCAN_CRON", "0 * * * *", "Cron schedule on which sources are re-scanned and curated."
    )
    rescan_enabled: bool = _setting(
        "CODELUPE_RESCAN_ENABLED",
        True,
        "Whether the rescan_sources schedule starts on its own when the daemon runs (false: turn it on in the UI).",
    )
    sources_sensor_interval_seconds: int = _setting(
        "CODELUPE_SOURCES_SENSOR_INTERVAL_SECONDS",
        60,
        "How often the sources sensor reads the sources file for added, changed and removed sources.",
    )
    github_api_url: str = _setting(
        "CODELUPE_GITHUB_API_URL",
        "https://api.github.com",
        "GitHub REST API base URL for discovery (GitHub Enterprise: https://HOST/api/v3). Token: GITHUB_TOKEN.",
    )
    github_max_wait_seconds: float = _setting(
        "CODELUPE_GITHUB_MAX_WAIT_SECONDS",
        900.0,
        "Longest rate-limit wait discovery sleeps through; a longer one fails that search, saying when to retry.",
    )
    discovery_cron: str = _setting(
        "CODELUPE_DISCOVERY_CRON", "0 3 * * *", "Cron schedule on which GitHub discovery runs its searches again."
    )

    gpu_run_tags: str = _setting(
        "CODELUPE_GPU_RUN_TAGS",
        "",
        "JSON object of extra tags for runs that hold the GPU, e.g. a dagster-k8s/config that asks for a GPU node.",
    )
    asset_owners: tuple[str, ...] = _setting(
        "CODELUPE_ASSET_OWNERS",
        ("team:codelupe",),
        "Comma-separated owners shown on every asset in the Dagster UI (emails or team:NAME).",
    )

    def __post_init__(self) -> None:
        for owner in self.asset_owners:
            if "@" not in owner and not owner.startswith("team:"):
                raise ValueError(f"CODELUPE_ASSET_OWNERS: {owner!r} is neither an email address nor team:NAME")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from the environment, falling back to its default."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(f.name, f.metadata["env"], raw, f.default)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment variables that give another process (a server, the daemon) these same settings."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                env[f.metadata["env"]] = ",".join(value)
            elif isinstance(value, bool):
                env[f.metadata["env"]] = str(value).lower()
            else:
                env[f.metadata["env"]] = str(value)
        return env

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, description) for every setting, for docs and `codelupe config`."""
        rows = []
        for f in dataclasses.fields(cls):
            default = ",".join(f.default) if isinstance(f.default, tuple) else str(f.default)
            default = default.replace(str(CHECKOUT_DIR), "<checkout>")
            rows.append((f.metadata["env"], default, f.metadata["help"]))
        return rows

    @property
    def extra_gpu_tags(self) -> dict[str, str]:
        """CODELUPE_GPU_RUN_TAGS as Dagster run tags: values that are not strings become JSON (as dagster-k8s reads)."""
        if not self.gpu_run_tags.strip():
            return {}
        try:
            parsed = json.loads(self.gpu_run_tags)
        except json.JSONDecodeError as exc:
            raise ValueError(f"CODELUPE_GPU_RUN_TAGS is not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ValueError("CODELUPE_GPU_RUN_TAGS must be a JSON object of tag names to values")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}

    # Where state lives: derived from data_dir so that one variable moves all of it.
    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def discovered_sources_file(self) -> Path:
        """The managed file GitHub discovery writes and the source catalog reads."""
        return self.data_dir / "discovered_sources.yaml"

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def eval_dir(self) -> Path:
        return self.data_dir / "eval"

    @property
    def eval_results_path(self) -> Path:
        return self.eval_dir / "results.duckdb"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def resolved_mlflow_tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> Path:
        return self.mlflow_dir / "artifacts"


def _parse(name: str, env: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw).expanduser().resolve()
        if isinstance(default, tuple):
            return tuple(part.strip().lower() for part in raw.split(",") if part.strip())
        return raw.strip()
    except ValueError as exc:
        raise ValueError(f"{env}={raw!r} is not a valid value for setting {name!r}: {exc}") from exc
