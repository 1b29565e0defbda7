"""Ingestion: raw code files from every configured source into the DuckDB raw store."""

from collections import Counter

import dagster as dg

from codelupe_pipeline.assets.metadata import markdown_table
from codelupe_pipeline.ingest import store
from codelupe_pipeline.ingest.ingestion import SourceReport, ingest_source
from codelupe_pipeline.resources import DuckDBWarehouse, SourcesResource, StorageResource

RAW_CODE_FILES = dg.AssetKey("raw_code_files")


@dg.asset(
    key=RAW_CODE_FILES,
    group_name="ingestion",
    kinds={"python", "duckdb", "git"},
    pool="duckdb",
    code_version="1",
    description=(
        "Raw code files from every source in the sources file (local directories, git repositories, the "
        "Python stdlib), content-addressed in DuckDB. Incremental: unchanged files are not re-read, changed "
        "files supersede their old row, deleted files are marked deleted. A failing source is reported and "
        "skipped; what it stored before stays."
    ),
)
def raw_code_files(
    context: dg.AssetExecutionContext,
    sources: SourcesResource,
    warehouse: DuckDBWarehouse,
    storage: StorageResource,
) -> dg.MaterializeResult:
    declared = sources.load()
    rules = sources.rules()
    reports: list[SourceReport] = []
    with warehouse.connect() as con:
        for source in declared:
            try:
                report = ingest_source(con, source, rules, storage.git_dir)
            except Exception as exc:  # one bad source never stops the others
                context.log.error(f"source {source.name!r} failed and was skipped: {exc}")
                report = SourceReport(source.name, source.kind, "failed", error=f"{type(exc).__name__}: {exc}")
            context.log.info(
                f"{report.source}: {report.status} (+{report.added} added, {report.changed} changed, "
                f"{report.deleted} deleted, {report.unchanged} unchanged)"
            )
            reports.append(report)
        store.ensure_schema(con)
        current = store.current_counts(con)

    skipped: Counter[str] = Counter()
    for r in reports:
        skipped.update(r.skipped)
    failed = [r for r in reports if r.status == "failed"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(current.values()),
            "files_added": sum(r.added for r in reports),
            "files_changed": sum(r.changed for r in reports),
            "files_deleted": sum(r.deleted for r in reports),
            "sources_failed": len(failed),
            "sources": markdown_table(
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
            "skipped_files_by_reason": markdown_table(
                ["reason", "files", "examples"],
                [
                    (
                        reason,
                        n,
                        ", ".join(ex for r in reports for ex in r.skipped_examples.get(reason, []))[:200],
                    )
                    for reason, n in skipped.most_common()
                ],
            ),
        }
    )
