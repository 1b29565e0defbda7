"""Settings for a closed loop under the real daemon on a CPU: one local source, a short training of the tiny
model and a two-task HumanEval (a benchmark is config), so each round of the loop takes seconds, not minutes."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import yaml

from codelupe_pipeline.evaluate.benchmarks import humaneval_path
from codelupe_pipeline.settings import Settings


def fast_loop_settings(root: Path, code: Path, max_steps: int = 4, **overrides: Any) -> Settings:
    """Write the sources, profiles and benchmarks files under `root`; the settings that read them."""
    sources = root / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [{"name": "code", "kind": "local", "path": str(code)}]}))
    profiles = root / "profiles.yaml"
    profile = {"name": "tiny-fast", "base": "tiny", "max_steps": max_steps, "seq_len": 128, "micro_batch_size": 4}
    profiles.write_text(yaml.safe_dump({"profiles": [profile]}))
    with gzip.open(humaneval_path(), "rt") as fh:
        (root / "two_tasks.jsonl").write_text("".join(fh.readlines()[:2]))
    benchmarks = root / "benchmarks.yaml"
    benchmarks.write_text(yaml.safe_dump({"benchmarks": [{"name": "humaneval_head", "path": "two_tasks.jsonl"}]}))
    return Settings(
        data_dir=root / "data",
        sources_file=sources,
        model="tiny-fast",
        model_profiles_file=profiles,
        benchmarks_file=benchmarks,
        **overrides,
    )
