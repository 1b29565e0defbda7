"""Ingest one source into the raw store: fetch, list, stream the changed files into one transaction, report."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
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

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

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
    report.record_skips(listing.skips)
    report.status = "ingested"
    report.added, report.changed, report.deleted, report.unchanged = (
        counts.added,
        counts.changed,
        counts.deleted,
        counts.unchanged,
    )
    return report


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
    previous_state = store.source_state(con, source.name)
    config = source.fingerprint()
    skips = Skips()
    report = SourceReport(source.name, source.kind, "unchanged", license=source.license)

    if source.hub_id is not None:
        revision = datasets.hub_revision(source)
        location = f"hf://datasets/{source.hub_id}"
        report.revision = revision
        if previous_state and (previous_state.revision, previous_state.config, previous_state.removed_at) == (
            revision,
            config,
            None,
        ):
            return report
        with store.SourceWriter(con, source.name, revision) as writer:
            converter = datasets.RowConverter(source, rules, skips)
            _write_records(writer, converter, datasets.read_hub_batches(source), source.max_rows)
            counts = writer.finish(store.SourceState(source.kind, location, revision, source.license, config=config))
        return _dataset_report(report, counts, skips)

    assert source.path is not None
    files = datasets.resolve_data_files(source.path)
    known = store.source_file_fingerprints(con, source.name)
    fingerprints = {str(f): datasets.data_file_fingerprint(f, known.get(str(f))) for f in files}
    changed = [
        f for f in files if datasets.content_hash(known.get(str(f), "")) != datasets.content_hash(fingerprints[str(f)])
    ]
    # The revision names the content of the files, not their mtimes: a `touch` is not a new revision.
    revision = "files-" + datasets.manifest_hash({o: datasets.content_hash(fp) for o, fp in fingerprints.items()})
    report.revision = revision
    same_source = previous_state is not None and (previous_state.config, previous_state.removed_at) == (config, None)
    if same_source and not changed and set(known) == set(fingerprints):
        if known != fingerprints:  # touched files: remember their new mtimes, store nothing else
            store.record_data_files(con, source.name, fingerprints)
        report.unchanged = store.current_count(con, source.name)
        return report

    location = str(Path(source.path).expanduser())
    with store.SourceWriter(con, source.name, revision) as writer:
        for f in files:
            origin = str(f)
            if f not in changed and same_source:
                writer.keep_origin(origin)
                continue
            converter = datasets.RowConverter(source, rules, skips, origin=origin)
            try:
                _write_records(
                    writer, converter, datasets.read_record_batches(f, source.columns, skips), source.max_rows
                )
            except OSError as exc:  # the whole source fails: a half-read file must not delete its rows
                raise datasets.DatasetError(f"{f}: cannot read: {exc}") from None
        counts = writer.finish(
            store.SourceState(source.kind, location, revision, source.license, config=config),
            data_files=fingerprints,
        )
    return _dataset_report(report, counts, skips)


def _write_records(
    writer: store.SourceWriter,
    converter: datasets.RowConverter,
    batches: Iterable[list[dict[str, object]]],
    max_rows: int,
) -> None:
    for records in batches:
        if max_rows:
            records = records[: max_rows - converter.rows_seen]
        for path in writer.write(converter.convert(records)):
            converter.skips.add(SkipReason.DUPLICATE_PATH, path)
        if max_rows and converter.rows_seen >= max_rows:
            break


def _dataset_report(report: SourceReport, counts: store.ApplyCounts, skips: Skips) -> SourceReport:
    report.status = "ingested"
    report.added, report.changed, report.deleted, report.unchanged = (
        counts.added,
        counts.changed,
        counts.deleted,
        counts.unchanged,
    )
    report.record_skips(skips)
    return report


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
