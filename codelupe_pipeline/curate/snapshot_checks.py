"""Checks on an exported snapshot, reading only its Parquet file (never the warehouse, which one writer locks).

Each check re-derives its answer from the data training will read, with the same detectors curation used:
a bug or a bypass in the SQL models shows up here, not in a trained model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from codelupe_pipeline.curate import secrets
from codelupe_pipeline.curate.decontamination import BenchmarkIndex, BenchmarkText, Contamination, find_contamination
from codelupe_pipeline.curate.sql_models import sql_literal

_BATCH_ROWS = 2048


@dataclass(frozen=True)
class SecretLeak:
    path: str
    kinds: list[str]


def unredacted_secrets(data_path: Path, min_entropy: float = secrets.DEFAULT_MIN_ENTROPY) -> list[SecretLeak]:
    """Snapshot files in which a secret detector still finds something."""
    with duckdb.connect() as con:
        # DuckDB pre-selects the files and, in the same pass, which detectors' substrings each one holds.
        rows = con.execute(
            f"SELECT path, content, {secrets.possible_kinds_sql('lowered')} FROM ("
            f"SELECT path, content, lower(content) AS lowered FROM read_parquet({sql_literal(str(data_path))}) "
            f"WHERE regexp_matches(content, {sql_literal(secrets.PREFILTER)})) ORDER BY path"
        ).fetchall()
    leaks = []
    for path, content, kinds in rows:
        found = secrets.find_secrets(content, min_entropy, set(kinds))
        if found:
            leaks.append(SecretLeak(str(path), [f.kind for f in found]))
    return leaks


def contaminated_rows(
    data_path: Path, texts: Sequence[BenchmarkText], n: int, min_overlap: float
) -> list[tuple[str, Contamination]]:
    """(path, match) for every snapshot file that holds a benchmark text, read in batches."""
    index = BenchmarkIndex.build([t.text for t in texts], n)  # once, not per batch
    found: list[tuple[str, Contamination]] = []
    for batch in pq.ParquetFile(data_path).iter_batches(batch_size=_BATCH_ROWS, columns=["path", "content"]):
        paths = batch.column("path").to_pylist()
        for match in find_contamination(batch.column("content"), texts, n, min_overlap, index):
            found.append((str(paths[match.row]), match))
    return found


def language_bytes(data_path: Path) -> dict[str, int]:
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT language, sum(size_bytes) FROM read_parquet({sql_literal(str(data_path))}) GROUP BY 1"
        ).fetchall()
    return {str(lang): int(size) for lang, size in rows}


def language_share_violations(bytes_by_language: Mapping[str, int], limits: Mapping[str, Sequence[float]]) -> list[str]:
    """Languages whose share of the bytes is outside its [min, max] (`default` for unlisted languages)."""
    total = sum(bytes_by_language.values()) or 1
    default = limits.get("default", (0.0, 1.0))
    problems = []
    for language in sorted(set(bytes_by_language) | {k for k in limits if k != "default"}):
        low, high = limits.get(language, default)
        share = bytes_by_language.get(language, 0) / total
        if not low <= share <= high:
            problems.append(f"{language}: {share:.1%} of the bytes, expected {low:.0%}-{high:.0%}")
    return problems
