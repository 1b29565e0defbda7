"""Ingestion: GitHub discovery, then raw code files from every source into the DuckDB raw store.

`raw_code_files` has one dynamic partition per source (the partition key is the source's name), so a source
can be materialized or backfilled alone from the UI. A run over several partitions is one step (single-run
backfill policy): one DuckDB connection ingests them in turn, and the unpartitioned curation after it runs once.
"""

import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from codelupe_pipeline.assets.metadata import markdown_table
from codelupe_pipeline.ingest import discovery, store
from codelupe_pipeline.ingest.ingestion import SourceReport, ingest_source, removed_source_report
from codelupe_pipeline.ingest.sources import read_discovered
from codelupe_pipeline.resources import DuckDBWarehouse, GitHubResource, SourcesResource, StorageResource

RAW_CODE_FILES = dg.AssetKey("raw_code_files")
GITHUB_REPOSITORIES = dg.AssetKey("github_repositories")
SOURCES = "sources"  # the name of the dynamic partitions: one partition per source name
SOURCE_PARTITIONS = dg.DynamicPartitionsDefinition(name=SOURCES)
SOURCES_INGESTED_CHECK = "sources_ingested"
# Per-partition metadata key that says what happened to the source; the sources sensor reads it.
SOURCE_STATUS = "source_status"


@dg.asset(
    key=GITHUB_REPOSITORIES,
    group_name="ingestion",
    kinds={"python", "github"},
    code_version="1",
    description=(
        "Repositories found by the GitHub searches of the sources file that pass the repo gate (stars, forks, "
        "excluded words, forks/archived/templates). Written to the managed discovered-sources file, where each "
        "becomes a git source (a partition of raw_code_files, added by the sources sensor)."
    ),
)
def github_repositories(
    context: dg.AssetExecutionContext, sources: SourcesResource, github: GitHubResource
) -> dg.MaterializeResult:
    catalog = sources.load()
    path = sources.discovered_file
    previous = read_discovered(Path(path))
    client = github.client()
    today = datetime.now(UTC).date().isoformat()
    result = discovery.discover(client, catalog.github, previous, today)
    if catalog.github.searches and len(result.failed) == len(catalog.github.searches):
        # Nothing learned: fail visibly, and leave the file (and so every source) as it was.
        raise dg.Failure(
            description="every GitHub search failed; the discovered sources are unchanged",
            metadata={"errors": "\n".join(f"{s.search}: {s.error}" for s in result.failed)},
        )
    discovery.write_discovered(Path(path), result.repos)
    for s in result.failed:
        context.log.warning(f"GitHub search {s.search!r} failed, keeping what it found before: {s.error}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(result.repos),
            "discovered_file": dg.MetadataValue.path(path),
            "repositories_new": sum(s.new for s in result.searches),
            "repositories_dropped": len(result.dropped),
            "searches_failed": len(result.failed),
            "api_requests": client.requests,
            "rate_limit_waits": len(client.waits),
            "rate_limit_wait_seconds": round(sum(w.seconds for w in client.waits), 1),
            "searches": markdown_table(
                ["search", "query", "results", "seen", "accepted", "new", "error"],
                [(s.search, s.query, s.results, s.seen, s.accepted, s.new, s.error or "") for s in result.searches],
            ),
            "rejected_by_gate": markdown_table(
                ["reason", "repositories", "examples"],
                [(r, n, ", ".join(result.rejected_examples[r])) for r, n in result.rejected.most_common()],
            ),
            "dropped": markdown_table(["repository", "why"], result.dropped),
            "repositories": markdown_table(
                ["repository", "stars", "forks", "language", "found by"],
                [(r.full_name, r.stars, r.forks, r.language, ", ".join(r.found_by)) for r in result.repos[:200]],
            ),
        }
    )


def _source_metadata(report: SourceReport, current_rows: int) -> dict[str, object]:
    metadata: dict[str, object] = {
        "dagster/row_count": current_rows,
        SOURCE_STATUS: report.status,
        "source_kind": report.kind,
        "revision": report.revision or "",
        "licence": report.license or "",
        "files_added": report.added,
        "files_changed": report.changed,
        "files_deleted": report.deleted,
        "files_unchanged": report.unchanged,
        "skipped_files_by_reason": markdown_table(
            ["reason", "files", "examples"],
            [
                (reason, n, ", ".join(report.skipped_examples.get(reason, []))[:200])
                for reason, n in Counter(report.skipped).most_common()
            ],
        ),
    }
    if report.error:
        metadata["error"] = report.error
    if report.status == "removed":
        metadata["rows_retired"] = report.retired
        metadata["retired_at"] = report.retired_at.isoformat() if report.retired_at else ""
    return metadata


with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # backfill_policy is beta; single-run backfills are what we want

    @dg.asset(
        key=RAW_CODE_FILES,
        deps=[GITHUB_REPOSITORIES],
        partitions_def=SOURCE_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="ingestion",
        kinds={"python", "duckdb", "git"},
        pool="duckdb",
        code_version="2",
        check_specs=[
            dg.AssetCheckSpec(
                SOURCES_INGESTED_CHECK,
                asset=RAW_CODE_FILES,
                description="Every source of the run ingested (a warning names each failed source and its error).",
            )
        ],
        description=(
            "Raw code files, one partition per source of the sources file (local directories, git "
            "repositories, Parquet/JSONL datasets, discovered GitHub repositories), content-addressed in "
            "DuckDB. Incremental: unchanged files are not re-read, changed files supersede their old row, "
            "deleted files are marked deleted. A failing source is reported and skipped; what it stored "
            "before stays. The rows of a source removed from the sources file are marked `removed` (kept for "
            "history, out of the training data)."
        ),
    )
    def raw_code_files(
        context: dg.AssetExecutionContext,
        sources: SourcesResource,
        warehouse: DuckDBWarehouse,
        storage: StorageResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        catalog = sources.load()
        declared = catalog.by_name()
        rules = sources.rules()
        reports: list[SourceReport] = []
        with warehouse.connect() as con:
            # Whatever partitions this run covers, no source missing from the sources file stays trainable.
            retired = store.retire_sources(con, declared)
            for name, rows in retired.items():
                context.log.warning(f"source {name!r} left the sources file: {rows} rows marked removed")
            for key in context.partition_keys:
                source = declared.get(key)
                if source is None:
                    report = removed_source_report(con, key)
                else:
                    try:
                        report = ingest_source(con, source, rules, storage.git_dir)
                    except Exception as exc:  # one bad source never stops the others
                        context.log.error(f"source {key!r} failed and was skipped: {exc}")
                        report = SourceReport(key, source.kind, "failed", error=f"{type(exc).__name__}: {exc}")
                context.log.info(
                    f"{report.source}: {report.status} (+{report.added} added, {report.changed} changed, "
                    f"{report.deleted} deleted, {report.unchanged} unchanged)"
                )
                reports.append(report)
            current = store.current_counts(con)

        for report in reports:
            context.add_asset_metadata(
                _source_metadata(report, current.get(report.source, 0)), partition_key=report.source
            )
        skipped: Counter[str] = Counter()
        for r in reports:
            skipped.update(r.skipped)
        failed = [r for r in reports if r.status == "failed"]
        yield dg.MaterializeResult(
            metadata={
                "run_sources_failed": len(failed),
                "run_sources_retired": dg.MetadataValue.json(retired),
                "run_sources": markdown_table(
                    [
                        "source",
                        "kind",
                        "status",
                        "revision",
                        "licence",
                        "current files",
                        "added",
                        "changed",
                        "deleted",
                        "error",
                    ],
                    [
                        (
                            r.source,
                            r.kind,
                            r.status,
                            (r.revision or "")[:16],
                            r.license,
                            current.get(r.source, 0),
                            r.added,
                            r.changed,
                            r.deleted,
                            r.error or "",
                        )
                        for r in reports
                    ],
                ),
                "run_skipped_files_by_reason": markdown_table(
                    ["reason", "files"], [(reason, n) for reason, n in skipped.most_common()]
                ),
            }
        )
        yield dg.AssetCheckResult(
            check_name=SOURCES_INGESTED_CHECK,
            passed=not failed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "failed_sources": markdown_table(["source", "error"], [(r.source, r.error) for r in failed]),
                "sources_in_run": len(reports),
            },
        )
