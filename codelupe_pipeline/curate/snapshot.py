"""Immutable curated dataset snapshots: one Parquet file per version, version = hash of the content.

Training and evaluation read snapshots, never the DuckDB warehouse (which one writer locks).
Layout: <snapshots_dir>/<version>/data.parquet + manifest.json; older snapshots are kept.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

# The columns every reader of a snapshot may rely on (training, evaluation, their test fixtures).
SNAPSHOT_COLUMNS = (
    "source", "repo", "path", "language", "license", "stars", "forks", "sha256", "size_bytes", "line_count",
    "content", "split",
)  # fmt: skip
# What curation adds: a quality score per file (0-1, see dbt_like_sql/file_verdicts.sql).
CURATION_COLUMNS = ("quality_score",)
BYTES_PER_TOKEN = 3.5  # typical for code with a BPE tokenizer of a modern code model


@dataclass(frozen=True)
class SnapshotInfo:
    version: str
    directory: Path
    row_count: int
    rows_by_split: dict[str, int]
    languages: dict[str, int]
    repos: int
    total_bytes: int
    created_at: str
    source_table: str = "curated_files"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def data_path(self) -> Path:
        return self.directory / "data.parquet"

    @property
    def token_estimate(self) -> int:
        return int(self.total_bytes / BYTES_PER_TOKEN)

    def to_json(self) -> str:
        data = asdict(self)
        data["directory"] = str(self.directory)
        return json.dumps(data, indent=2, sort_keys=True)


class SnapshotError(RuntimeError):
    pass


def content_version(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """A hash of everything a snapshot holds: same rows in any order give the same version."""
    row = con.execute(
        f"""
        SELECT sha256(coalesce(string_agg(
            concat_ws(chr(31), sha256(content), split, source, repo, path, language,
                      coalesce(license, ''), coalesce(stars, -1), coalesce(forks, -1), quality_score),
            chr(30) ORDER BY source, path), ''))
        FROM "{table}"
        """
    ).fetchone()
    assert row is not None
    return str(row[0])[:16]


def load_snapshot(snapshots_dir: Path, version: str) -> SnapshotInfo:
    manifest = snapshots_dir / version / "manifest.json"
    if not manifest.exists():
        raise SnapshotError(f"snapshot {version!r} does not exist under {snapshots_dir}")
    data = json.loads(manifest.read_text())
    data["directory"] = snapshots_dir / version  # where it is now, even if the data directory moved
    return SnapshotInfo(**data)


def export_snapshot(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, table: str = "curated_files") -> SnapshotInfo:
    """Write the table as a snapshot unless a snapshot with the same content exists; return its info."""
    version = content_version(con, table)
    target = snapshots_dir / version
    if (target / "manifest.json").exists():
        return load_snapshot(snapshots_dir, version)
    row_count, total_bytes, repos = con.execute(
        f'SELECT count(*), coalesce(sum(size_bytes), 0), count(DISTINCT repo) FROM "{table}"'
    ).fetchone() or (0, 0, 0)
    if row_count == 0:
        raise SnapshotError(f"{table} is empty: refusing to write an empty snapshot")
    rows_by_split = dict(con.execute(f'SELECT split, count(*) FROM "{table}" GROUP BY split').fetchall())
    languages = dict(
        con.execute(f'SELECT language, count(*) FROM "{table}" GROUP BY language ORDER BY 2 DESC').fetchall()
    )
    info = SnapshotInfo(
        version=version,
        directory=target,
        row_count=int(row_count),
        rows_by_split={str(k): int(v) for k, v in rows_by_split.items()},
        languages={str(k): int(v) for k, v in languages.items()},
        repos=int(repos),
        total_bytes=int(total_bytes),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        source_table=table,
    )
    # Write into a temporary directory and rename: a crash never leaves a half-written snapshot.
    staging = snapshots_dir / f".staging-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    columns = ", ".join((*SNAPSHOT_COLUMNS, *CURATION_COLUMNS))
    con.execute(
        f'COPY (SELECT {columns} FROM "{table}" ORDER BY split, source, path) '
        f"TO '{staging / 'data.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
    )
    (staging / "manifest.json").write_text(info.to_json())
    try:
        staging.rename(target)
    except OSError:
        # Another process wrote the same version first: identical content, keep theirs.
        shutil.rmtree(staging, ignore_errors=True)
    return load_snapshot(snapshots_dir, version)
