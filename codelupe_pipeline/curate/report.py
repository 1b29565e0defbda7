"""What a curator reads about one curation run, taken from the report models in the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

# The models the report reads; the curated snapshot asset depends on each of them.
REPORT_MODELS = ("curation_funnel", "dropped_samples", "language_mix", "redaction_counts", "contaminated_files")


@dataclass(frozen=True)
class FunnelStage:
    stage: str
    files: int
    failing: int | None  # files failing the rule at all (None for rows in / rows out)
    bytes: int


@dataclass(frozen=True)
class DroppedSample:
    reason: str
    source: str
    path: str
    detail: str
    excerpt: str


@dataclass(frozen=True)
class LanguageShare:
    language: str
    files: int
    bytes: int
    byte_share: float


@dataclass(frozen=True)
class ContaminatedFile:
    source: str
    path: str
    benchmark: str
    task_id: str
    part: str
    overlap: float


@dataclass(frozen=True)
class CurationReport:
    funnel: list[FunnelStage]
    samples: list[DroppedSample]
    languages: list[LanguageShare]
    redactions: dict[str, tuple[int, int]]  # kind -> (findings, files)
    contaminated: list[ContaminatedFile] = field(default_factory=list)


def read_report(con: duckdb.DuckDBPyConnection) -> CurationReport:
    funnel = [
        FunnelStage(str(stage), int(files or 0), None if failing is None else int(failing), int(size or 0))
        for stage, files, failing, size in con.execute(
            "SELECT stage, files, failing, bytes FROM curation_funnel ORDER BY step"
        ).fetchall()
    ]
    samples = [
        DroppedSample(*(str(v) if v is not None else "" for v in row))
        for row in con.execute("SELECT drop_reason, source, path, drop_detail, excerpt FROM dropped_samples").fetchall()
    ]
    languages = [
        LanguageShare(str(lang), int(files), int(size), float(share))
        for lang, files, size, share in con.execute(
            "SELECT language, files, bytes, byte_share FROM language_mix"
        ).fetchall()
    ]
    redactions = {
        str(kind): (int(findings), int(files))
        for kind, findings, files in con.execute("SELECT kind, findings, files FROM redaction_counts").fetchall()
    }
    contaminated = [
        ContaminatedFile(str(s), str(p), str(b), str(t), str(part), float(o))
        for s, p, b, t, part, o in con.execute(
            """
            SELECT d.source, d.path, c.benchmark, c.task_id, c.part, c.overlap
            FROM file_decisions AS d JOIN contaminated_files AS c USING (sha256)
            WHERE d.drop_reason = 'benchmark_contamination'
            ORDER BY d.source, d.path
            """
        ).fetchall()
    ]
    return CurationReport(funnel, samples, languages, redactions, contaminated)
