from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from codelupe_pipeline.curate.decontamination import BenchmarkText, evaluation_benchmark_texts, write_benchmark_texts
from codelupe_pipeline.curate.functions import register_curation_functions
from codelupe_pipeline.curate.sql_models import load_models, load_vars, run_model
from codelupe_pipeline.ingest import store
from codelupe_pipeline.settings import CHECKOUT_DIR, Settings
from codelupe_pipeline_tests.corpus import build_fixture_corpus

# Small enough for a 2-core CI machine, large enough to exercise every stage for real.
FAST_RUN_CONFIG = {
    "ops": {
        "lora_adapter": {
            "config": {"max_steps": 6, "eval_every": 3, "checkpoint_every": 3, "micro_batch_size": 4, "seq_len": 128}
        },
        "model_evaluation": {
            "config": {"task_limit": 3, "max_new_tokens": 16, "your_stack_tasks": 3, "perplexity_max_chars": 20_000}
        },
    }
}


@pytest.fixture(autouse=True)
def _quiet_libraries() -> None:
    for name in ("alembic", "mlflow", "httpx", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture
def fixture_sources(tmp_path: Path) -> Path:
    """A real git repository and a plain directory of Python, Rust, Go, TypeScript, Dart and SQL files."""
    return build_fixture_corpus(tmp_path / "corpus")


@pytest.fixture
def settings(tmp_path: Path, fixture_sources: Path) -> Settings:
    # Schedules stay off in tests unless a test turns them on (the daemon test does).
    return Settings(
        data_dir=tmp_path / "data", sources_file=fixture_sources, retrain_min_new_rows=3, rescan_enabled=False
    )


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster for the whole session (skipped, with the reason, where impossible)."""
    from codelupe_pipeline_tests.postgres import PostgresServer, postgres_available

    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


# --- Curation: a raw store written directly (the tables ingestion fills) and the SQL models run on it.


@dataclass(frozen=True)
class RawFile:
    source: str
    path: str
    content: str
    language: str = "python"
    license: str | None = "MIT"
    stars: int | None = None
    forks: int | None = None
    repo: str | None = None  # defaults to the source


def write_raw_store(con: duckdb.DuckDBPyConnection, files: Iterable[RawFile]) -> None:
    """Current rows in `raw_files` and their contents in `raw_blobs`, as ingestion stores them."""
    store.ensure_schema(con)
    for f in files:
        sha = hashlib.sha256(f.content.encode()).hexdigest()
        con.execute(
            "INSERT INTO raw_blobs SELECT ?, ? WHERE ? NOT IN (SELECT sha256 FROM raw_blobs)", [sha, f.content, sha]
        )
        con.execute(
            """
            INSERT INTO raw_files (source, repo, path, revision, sha256, language, size_bytes, line_count, license,
                                   stars, forks, fingerprint, status, ingested_at)
            VALUES (?, ?, ?, 'r1', ?, ?, ?, ?, ?, ?, ?, 'f', 'current', now())
            """,
            [f.source, f.repo or f.source, f.path, sha, f.language, len(f.content.encode()),
             f.content.count("\n") + (0 if f.content.endswith("\n") else 1), f.license, f.stars, f.forks],
        )  # fmt: skip


def run_curation_models(
    con: duckdb.DuckDBPyConnection,
    overrides: dict[str, Any] | None = None,
    texts: list[BenchmarkText] | None = None,
) -> dict[str, Any]:
    """Write the benchmark texts (the evaluation's default: HumanEval) and build every curation model in order."""
    sql_dir = CHECKOUT_DIR / "dbt_like_sql"
    variables = {**load_vars(sql_dir), **(overrides or {})}
    register_curation_functions(con)
    write_benchmark_texts(con, evaluation_benchmark_texts() if texts is None else texts)
    for model in load_models(sql_dir).values():
        run_model(con, model, variables)
    return variables
