from __future__ import annotations

import logging
from pathlib import Path

import pytest

from codelupe_pipeline.settings import Settings
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
    return Settings(data_dir=tmp_path / "data", sources_file=fixture_sources, retrain_min_new_rows=3)


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster for the whole session (skipped, with the reason, where impossible)."""
    from codelupe_pipeline_tests.postgres import PostgresServer, postgres_available

    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server
