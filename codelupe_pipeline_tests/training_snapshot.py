"""A real training snapshot and tiny base model for the training tests, built once per test session.

The snapshot holds the fixture corpus's six languages plus a fixed slice of the Python standard library
(enough code for a loss curve to mean something), in the curated snapshot's Parquet schema.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from codelupe_pipeline.curate.snapshot import SNAPSHOT_COLUMNS
from codelupe_pipeline.train.base_model import build_tiny_model
from codelupe_pipeline.train.profiles import PROFILES
from codelupe_pipeline_tests import corpus

STDLIB_FILES = (
    "bisect.py", "colorsys.py", "copy.py", "fnmatch.py", "glob.py", "graphlib.py", "heapq.py", "keyword.py",
    "linecache.py", "queue.py", "sched.py", "shlex.py", "textwrap.py",
)  # fmt: skip
FIXTURE_FILES = {
    "interval.py": ("python", corpus.PYTHON_FILE),
    "ring.rs": ("rust", corpus.RUST_FILE),
    "cache.go": ("go", corpus.GO_FILE),
    "page.ts": ("typescript", corpus.TYPESCRIPT_FILE),
    "money.dart": ("dart", corpus.DART_FILE),
    "revenue.sql": ("sql", corpus.SQL_FILE),
}


@dataclass(frozen=True)
class TrainingFixture:
    snapshot: Path  # data.parquet
    base_model: Path  # the tiny model directory


def snapshot_rows() -> list[dict[str, object]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [
        ("stdlib", name, "python", (stdlib / name).read_text()) for name in STDLIB_FILES if (stdlib / name).exists()
    ]
    files += [("fixture", name, lang, text) for name, (lang, text) in FIXTURE_FILES.items()]
    rows = []
    for repo, path, language, content in files:
        rows.append(
            {
                "source": repo, "repo": repo, "path": path, "language": language, "license": "MIT",
                "stars": 0, "forks": 0, "sha256": hashlib.sha256(content.encode()).hexdigest(),
                "size_bytes": len(content.encode()), "line_count": content.count("\n") + 1, "content": content,
                # Whole repositories go to one split; here a few stdlib files stand in for a second repository.
                "split": "validation" if path in ("queue.py", "shlex.py", "money.dart") else "train",
            }
        )  # fmt: skip
    return rows


def build_training_fixture(root: Path) -> TrainingFixture:
    rows = snapshot_rows()
    root.mkdir(parents=True, exist_ok=True)
    data = root / "snapshot" / "data.parquet"
    data.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{c: r[c] for c in SNAPSHOT_COLUMNS} for r in rows]), data)
    model = build_tiny_model(
        PROFILES["tiny"], [str(r["content"]) for r in rows if r["split"] == "train"], root / "tiny"
    )
    return TrainingFixture(data, model)
