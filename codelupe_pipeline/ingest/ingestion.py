"""Ingest one source into the raw store: fetch, list, stream the changed files into one transaction, report."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from codelupe_pipeline.ingest import datasets, git, store
from codelupe_pipeline.ingest.scan import FileListing, ScanRules, SkipReason, Skips, list_directory, list_git_commit
from codelupe_pipeline.ingest.sources import DatasetSource, GitSource, Source

# Files are written in batches of this many files or bytes of content, whichever comes first.
BATCH_FILES = 500
BATCH_BYTES = 32 * 1024 * 1024


@dataclass
class SourceReport:
    source: str
    kind: str
    status: str  # ingested | unchanged | empty | failed | removed
    revision: str | None = None
    added: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    license: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    retired: int = 0  # rows taken out of the training data because the source left the sources file
    retired_at: datetime | None = None

    def record(self, counts: store.ApplyCounts, skips: Skips) -> SourceReport:
        """This report after a scan that was written."""
        skips.add_many(SkipReason.DUPLICATE_PATH, counts.duplicates, counts.duplicate_examples)
        self.status = "ingested"
        self.added, self.changed, self.deleted, self.unchanged = (
            counts.added,
            counts.changed,
            counts.deleted,
            counts.unchanged,
        )
        self.record_skips(skips)
        return self

    def record_skips(self, skips: Skips) -> None:
        self.skipped = dict(skips.counts)
        self.skipped_examples = {k: list(v) for k, v in skips.examples.items()}


def _batches(files: Iterable[store.FileRow]) -> Iterator[list[store.FileRow]]:
    batch: list[store.FileRow] = []
    size = 0
    for f in files:
        batch.append(f)
        size += f.size_bytes
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def ingest_source(con: duckdb.DuckDBPyConnection, source: Source, rules: ScanRules, git_dir: Path) -> SourceReport:
    """Bring the raw store in step with one source. Raises on a failing source; stored rows stay intact."""
    store.ensure_schema(con)
    if isinstance(source, DatasetSource):
        return _ingest_dataset(con, source, rules)
    rules = dataclasses.replace(rules, max_files=source.max_files, exclude=source.exclude)
    previous_state = store.source_state(con, source.name)
    config = source.fingerprint()

    def unchanged(location: str, revision: str) -> bool:
        return (
            previous_state is not None
            and previous_state.removed_at is None
            and (previous_state.location, previous_state.revision, previous_state.config)
            == (location, revision, config)
        )

    if isinstance(source, GitSource):
        repo_dir = git_dir / source.name
        location = git.normalize_url(source.url)
        try:
            commit = git.sync(source.url, repo_dir, ref=source.ref, commit=source.commit)
        except git.EmptyRepositoryError as exc:
            return SourceReport(source.name, source.kind, "empty", error=str(exc))
        if unchanged(location, commit):  # same commit: not even the tree is listed
            return _unchanged(con, source, commit, previous_state)
        listing = list_git_commit(repo_dir, commit, rules)
    else:
        location = str(source.path.resolve())
        listing = list_directory(source.path, rules)

    with listing:
        report = SourceReport(source.name, source.kind, "unchanged", revision=listing.revision)
        report.license = source.license or listing.license
        if unchanged(location, listing.revision) and previous_state and previous_state.license == report.license:
            report.record_skips(listing.skips)
            return _unchanged(con, source, listing.revision, previous_state, report)
        counts = _write_listing(con, source, listing, rules, location, config, report.license)
    return report.record(counts, listing.skips)


def _unchanged(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    revision: str,
    state: store.SourceState | None,
    report: SourceReport | None = None,
) -> SourceReport:
    """Nothing to read; only new star/fork counts (e.g. from discovery) are written."""
    report = report or SourceReport(source.name, source.kind, "unchanged", revision=revision)
    report.unchanged = store.current_count(con, source.name)
    if state is not None:
        report.license = state.license
        if (state.stars, state.forks) != (source.stars, source.forks):
            store.refresh_popularity(con, source.name, source.stars, source.forks)
    return report


def _write_listing(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    listing: FileListing,
    rules: ScanRules,
    location: str,
    config: str,
    license: str | None,
) -> store.ApplyCounts:
    previous = store.current_fingerprints(con, source.name)
    rows = (
        store.FileRow(
            f.path,
            f.sha256,
            f.content,
            f.language,
            f.size_bytes,
            f.line_count,
            f.fingerprint,
            repo=source.repo_for(f.path),
            license=license,
            stars=source.stars,
            forks=source.forks,
        )
        for f in listing.read(previous, rules)
    )
    with store.SourceWriter(con, source.name, listing.revision) as writer:
        writer.keep(listing.unchanged(previous))
        for batch in _batches(rows):
            writer.write(batch)
        state = store.SourceState(
            source.kind, location, listing.revision, license, config=config, stars=source.stars, forks=source.forks
        )
        return writer.finish(state, repo_metadata=(license, source.stars, source.forks))


def _ingest_dataset(con: duckdb.DuckDBPyConnection, source: DatasetSource, rules: ScanRules) -> SourceReport:
    rules = dataclasses.replace(rules, exclude=source.exclude)
    state = store.source_state(con, source.name)
    # Same entry, not removed since: unchanged data can be kept without reading it.
    same_source = state is not None and (state.config, state.removed_at) == (source.fingerprint(), None)
    if source.hub_id is not None:
        return _ingest_hub_dataset(con, source, rules, state if same_source else None)
    return _ingest_data_files(con, source, rules, same_source)


def _ingest_hub_dataset(
    con: duckdb.DuckDBPyConnection, source: DatasetSource, rules: ScanRules, state: store.SourceState | None
) -> SourceReport:
    revision = datasets.hub_revision(source)
    report = SourceReport(source.name, source.kind, "unchanged", revision=revision, license=source.license)
    if state is not None and state.revision == revision:
        report.unchanged = store.current_count(con, source.name)
        return report
    skips = Skips()
    with store.SourceWriter(con, source.name, revision) as writer:
        converter = datasets.RowConverter(source, rules, skips)
        _write_records(writer, converter, datasets.read_hub_batches(source), source.max_rows)
        location = f"hf://datasets/{source.hub_id}"
        counts = writer.finish(
            store.SourceState(source.kind, location, revision, source.license, config=source.fingerprint())
        )
    return report.record(counts, skips)


def _ingest_data_files(
    con: duckdb.DuckDBPyConnection, source: DatasetSource, rules: ScanRules, same_source: bool
) -> SourceReport:
    assert source.path is not None
    files = datasets.resolve_data_files(source.path)
    known = store.source_file_fingerprints(con, source.name)
    fingerprints = {str(f): datasets.data_file_fingerprint(f, known.get(str(f))) for f in files}
    hashes = {origin: datasets.content_hash(fp) for origin, fp in fingerprints.items()}
    unchanged = {o for o, sha in hashes.items() if same_source and datasets.content_hash(known.get(o, "")) == sha}
    # The revision names the content of the files, not their mtimes: a `touch` is not a new revision.
    revision = "files-" + datasets.manifest_hash(hashes)
    report = SourceReport(source.name, source.kind, "unchanged", revision=revision, license=source.license)
    if unchanged == set(hashes) == set(known):
        if known != fingerprints:  # touched files: remember their new mtimes, store nothing else
            store.record_data_files(con, source.name, fingerprints)
        report.unchanged = store.current_count(con, source.name)
        return report

    skips = Skips()
    with store.SourceWriter(con, source.name, revision) as writer:
        for f in files:
            origin = str(f)
            if origin in unchanged:
                writer.keep_origin(origin)
                continue
            converter = datasets.RowConverter(source, rules, skips, origin=origin)
            try:
                batches = datasets.read_record_batches(f, source.columns, skips)
                _write_records(writer, converter, batches, source.max_rows)
            except OSError as exc:  # the whole source fails: a half-read file must not delete its rows
                raise datasets.DatasetError(f"{f}: cannot read: {exc}") from None
        state = store.SourceState(
            source.kind, str(Path(source.path).expanduser()), revision, source.license, config=source.fingerprint()
        )
        counts = writer.finish(state, data_files=fingerprints)
    return report.record(counts, skips)


def _write_records(
    writer: store.SourceWriter,
    converter: datasets.RowConverter,
    batches: Iterable[list[dict[str, object]]],
    max_rows: int,
) -> None:
    for records in batches:
        if max_rows:
            records = records[: max_rows - converter.rows_seen]
        writer.write(converter.convert(records))
        if max_rows and converter.rows_seen >= max_rows:
            break


def removed_source_report(con: duckdb.DuckDBPyConnection, name: str, kind: str = "?") -> SourceReport:
    """The report of a partition whose source is no longer in the sources file (its rows were retired)."""
    store.ensure_schema(con)
    retired, at = store.removed_rows(con, name)
    state = store.source_state(con, name)
    return SourceReport(
        name,
        state.kind if state else kind,
        "removed",
        revision=state.revision if state else None,
        retired=retired,
        retired_at=at,
    )
