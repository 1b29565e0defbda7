"""Ingest one source into the raw store: fetch, scan incrementally, store in one transaction, report."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from codelupe_pipeline.ingest import git, store
from codelupe_pipeline.ingest.scan import ScanResult, ScanRules, scan_directory, scan_git_commit
from codelupe_pipeline.ingest.sources import GitSource, Source


@dataclass
class SourceReport:
    source: str
    kind: str
    status: str  # ingested | unchanged | failed
    revision: str | None = None
    added: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    license: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def ingest_source(con: duckdb.DuckDBPyConnection, source: Source, rules: ScanRules, git_dir: Path) -> SourceReport:
    """Bring the raw store in step with one source. Raises on a failing source; stored rows stay intact."""
    store.ensure_schema(con)
    previous_state = store.source_state(con, source.name)
    rules = dataclasses.replace(rules, max_files=source.max_files, exclude=source.exclude)
    scan: ScanResult
    if isinstance(source, GitSource):
        repo_dir = git_dir / source.name
        commit = git.sync(source.url, repo_dir, ref=source.ref, commit=source.commit)
        location = git.normalize_url(source.url)
        if previous_state and previous_state.revision == commit and previous_state.location == location:
            return SourceReport(source.name, source.kind, "unchanged", revision=commit)
        scan = scan_git_commit(repo_dir, commit, store.current_fingerprints(con, source.name), rules)
    else:
        root = source.path
        location = str(root.resolve())
        scan = scan_directory(root, store.current_fingerprints(con, source.name), rules)
    license = source.license or scan.license
    report = SourceReport(
        source.name,
        source.kind,
        "unchanged",
        revision=scan.revision,
        unchanged=scan.unchanged,
        license=license,
        skipped=dict(scan.skipped),
        skipped_examples=dict(scan.skipped_examples),
    )
    if (
        previous_state is not None
        and previous_state.revision == scan.revision
        and previous_state.location == location
        and previous_state.license == license
        and not scan.files
    ):
        return report  # nothing changed: store nothing, not even a new scan time

    state = store.SourceState(kind=source.kind, location=location, revision=scan.revision, license=license)
    counts = store.apply_scan(
        con,
        source=source.name,
        repo_of={f.path: source.repo_for(f.path) for f in scan.files},
        state=state,
        files=[
            store.FileRow(f.path, f.sha256, f.content, f.language, f.size_bytes, f.line_count, f.fingerprint)
            for f in scan.files
        ],
        present=scan.present,
        stars=source.stars,
        forks=source.forks,
    )
    report.status = "ingested"
    report.added, report.changed, report.deleted = counts.added, counts.changed, counts.deleted
    report.unchanged = len(scan.present) - counts.added - counts.changed
    return report
