"""Curation: one asset per SQL model in `dbt_like_sql/`, the benchmark texts, then the immutable snapshot.

Adding a SQL file adds an asset; its declared tests become asset checks. Every asset that opens the
warehouse runs in the `duckdb` pool (limit 1), so Dagster never lets two of them fight over DuckDB's lock;
across processes (two runs, a CLI and the UI) the warehouse resource waits for the lock instead of failing.
The checks on the snapshot read its Parquet file only.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from codelupe_pipeline.assets.ingestion import RAW_CODE_FILES
from codelupe_pipeline.assets.metadata import markdown_table
from codelupe_pipeline.curate import snapshot_checks
from codelupe_pipeline.curate.decontamination import (
    BENCHMARK_TEXTS_TABLE,
    evaluation_benchmark_texts,
    write_benchmark_texts,
)
from codelupe_pipeline.curate.functions import register_curation_functions
from codelupe_pipeline.curate.report import REPORT_MODELS, CurationReport, read_report
from codelupe_pipeline.curate.snapshot import BYTES_PER_TOKEN, SnapshotInfo, export_snapshot
from codelupe_pipeline.curate.sql_models import SqlModel, load_models, load_vars, run_model, run_test
from codelupe_pipeline.resources import DuckDBWarehouse, EvaluationResource, StorageResource

BENCHMARK_TEXTS = dg.AssetKey(BENCHMARK_TEXTS_TABLE)
# Tables that `{{ source('...') }}` may name, and the asset that writes each.
SOURCE_TABLES: dict[str, dg.AssetKey] = {
    "raw_files": RAW_CODE_FILES,
    "raw_blobs": RAW_CODE_FILES,
    BENCHMARK_TEXTS_TABLE: BENCHMARK_TEXTS,
}
FINAL_MODEL = "curated_files"
CURATED_SNAPSHOT = dg.AssetKey("curated_snapshot")


def _sql_model_asset(model: SqlModel, sql_dir: Path) -> dg.AssetsDefinition:
    deps = [dg.AssetKey(ref) for ref in model.refs]
    deps += list(dict.fromkeys(SOURCE_TABLES[src] for src in model.sources))

    @dg.asset(
        name=model.name,
        deps=deps,
        group_name="curation",
        kinds={"duckdb", "sql"},
        pool="duckdb",
        description=model.description,
        code_version=model.code_version,
        metadata={"sql_file": dg.MetadataValue.path(str(model.path)), "materialized": model.materialized},
        check_specs=[dg.AssetCheckSpec(t.name, asset=model.name, description=t.describe()) for t in model.tests],
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> Iterator[object]:
        with warehouse.connect() as con:
            register_curation_functions(con)
            run = run_model(con, model, load_vars(sql_dir))
            context.log.info(f"{model.name}: {run.row_count:,} rows ({model.materialized})")
            yield dg.MaterializeResult(
                metadata={
                    "dagster/row_count": run.row_count,
                    "dagster/column_schema": dg.TableSchema(
                        columns=[
                            dg.TableColumn(name, type_, description=model.column_description(name))
                            for name, type_ in run.columns
                        ]
                    ),
                }
            )
            for test in model.tests:
                failing = run_test(con, model, test)
                yield dg.AssetCheckResult(
                    check_name=test.name,
                    passed=failing == 0,
                    metadata={"failing_rows": failing, "rule": test.describe()},
                )

    return _asset


@dg.asset(
    key=BENCHMARK_TEXTS,
    group_name="curation",
    kinds={"duckdb", "python"},
    pool="duckdb",
    code_version="1",
    description=(
        "Prompts and canonical solutions of every benchmark the evaluation stage scores (its benchmarks file; "
        "HumanEval by default), the texts curation decontaminates against: a file containing one is dropped."
    ),
)
def benchmark_texts(warehouse: DuckDBWarehouse, evaluation: EvaluationResource) -> dg.MaterializeResult:
    texts = evaluation_benchmark_texts(Path(evaluation.benchmarks_file))
    with warehouse.connect() as con:
        rows = write_benchmark_texts(con, texts)
    per_benchmark: dict[tuple[str, str], int] = {}
    for text in texts:
        per_benchmark[(text.benchmark, text.part)] = per_benchmark.get((text.benchmark, text.part), 0) + 1
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "texts": markdown_table(["benchmark", "part", "texts"], [(*k, n) for k, n in per_benchmark.items()]),
        }
    )


def _latest_version(context: dg.AssetExecutionContext) -> str | None:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("snapshot_version")
    return str(value.value) if value is not None else None


def _report_metadata(report: CurationReport, info: SnapshotInfo) -> dict[str, Any]:
    dropped = sum(s.files for s in report.funnel if s.stage.startswith("dropped: "))
    return {
        "files_dropped": dropped,
        "filter_funnel": markdown_table(
            ["stage", "files", "failing the rule at all", "bytes"],
            [(s.stage, s.files, s.failing, s.bytes) for s in report.funnel],
        ),
        "dropped_file_samples": markdown_table(
            ["rule", "file", "why", "start of the file (redacted)"],
            [(s.reason, f"{s.source}:{s.path}", s.detail, s.excerpt[:160]) for s in report.samples],
        ),
        "language_mix": markdown_table(
            ["language", "files", "bytes", "share of bytes", "token estimate"],
            [
                (lang.language, lang.files, lang.bytes, f"{lang.byte_share:.1%}", int(lang.bytes / BYTES_PER_TOKEN))
                for lang in report.languages
            ],
        ),
        "secrets_redacted": sum(findings for findings, _ in report.redactions.values()),
        "redactions_by_kind": markdown_table(
            ["kind", "findings", "files"], [(kind, f, n) for kind, (f, n) in report.redactions.items()]
        ),
        "benchmark_contaminated_files": len(report.contaminated),
        "contaminated_files": markdown_table(
            ["file", "benchmark", "task", "part", "n-grams matched"],
            [(f"{c.source}:{c.path}", c.benchmark, c.task_id, c.part, f"{c.overlap:.0%}") for c in report.contaminated],
        ),
        "token_estimate": info.token_estimate,
    }


@dg.asset(
    key=CURATED_SNAPSHOT,
    deps=[dg.AssetKey(FINAL_MODEL), *(dg.AssetKey(m) for m in REPORT_MODELS)],
    group_name="curation",
    kinds={"duckdb", "parquet"},
    pool="duckdb",
    output_required=False,
    code_version="2",
    description=(
        "The curated dataset as an immutable Parquet snapshot; its version is a hash of its content. A new "
        "materialization is recorded only when the content changed, so the growth sensor and training see "
        "each dataset version once. Its metadata holds the filter funnel, samples of dropped files per rule, "
        "the language mix, redaction counts and decontamination matches. Training and evaluation read "
        "snapshots, never the warehouse."
    ),
)
def curated_snapshot(
    context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, storage: StorageResource
) -> Iterator[dg.Output[SnapshotInfo]]:
    with warehouse.connect() as con:
        info = export_snapshot(con, storage.snapshots_dir, FINAL_MODEL)
        report = read_report(con)
    previous = _latest_version(context)
    if previous == info.version:
        context.log.info(f"curated data unchanged (snapshot {info.version}): no new dataset version")
        return
    context.log.info(f"new snapshot {info.version}: {info.row_count:,} rows (previous: {previous or 'none'})")
    yield dg.Output(
        info,
        data_version=dg.DataVersion(info.version),
        metadata={
            "snapshot_version": info.version,
            "previous_version": previous or "",
            "dagster/row_count": info.row_count,
            "train_rows": info.rows_by_split.get("train", 0),
            "validation_rows": info.rows_by_split.get("validation", 0),
            "repositories": info.repos,
            "megabytes": round(info.total_bytes / 1e6, 2),
            "path": dg.MetadataValue.path(str(info.data_path)),
            **_report_metadata(report, info),
        },
    )


def _snapshot_checks(sql_dir: Path) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=CURATED_SNAPSHOT, description="The snapshot holds each content hash once.")
    def snapshot_rows_unique(curated_snapshot: SnapshotInfo) -> dg.AssetCheckResult:
        with duckdb.connect() as con:
            total, distinct = con.execute(
                f"SELECT count(*), count(DISTINCT sha256) FROM read_parquet('{curated_snapshot.data_path}')"
            ).fetchone() or (0, 0)
        return dg.AssetCheckResult(
            passed=total == distinct, metadata={"rows": int(total), "distinct_content_hashes": int(distinct)}
        )

    @dg.asset_check(
        asset=CURATED_SNAPSHOT,
        description="The snapshot holds at least `min_curated_rows` rows (dbt_like_sql/vars.yaml).",
    )
    def snapshot_min_rows(curated_snapshot: SnapshotInfo) -> dg.AssetCheckResult:
        minimum = int(load_vars(sql_dir)["min_curated_rows"])
        return dg.AssetCheckResult(
            passed=curated_snapshot.row_count >= minimum,
            metadata={"rows": curated_snapshot.row_count, "minimum": minimum},
        )

    @dg.asset_check(
        asset=CURATED_SNAPSHOT,
        description="No secret or personal data that the redaction detectors find is left in the snapshot.",
    )
    def no_unredacted_secrets(curated_snapshot: SnapshotInfo) -> dg.AssetCheckResult:
        min_entropy = float(load_vars(sql_dir)["secret_min_entropy"])
        leaks = snapshot_checks.unredacted_secrets(curated_snapshot.data_path, min_entropy)
        return dg.AssetCheckResult(
            passed=not leaks,
            metadata={
                "files_with_findings": len(leaks),
                "files": markdown_table(["file", "kinds"], [(x.path, ", ".join(x.kinds)) for x in leaks[:20]]),
            },
        )

    @dg.asset_check(
        asset=CURATED_SNAPSHOT,
        description="No snapshot file contains a prompt or canonical solution of a benchmark the evaluation scores.",
    )
    def no_benchmark_contamination(
        curated_snapshot: SnapshotInfo, evaluation: EvaluationResource
    ) -> dg.AssetCheckResult:
        variables = load_vars(sql_dir)
        found = snapshot_checks.contaminated_rows(
            curated_snapshot.data_path,
            evaluation_benchmark_texts(Path(evaluation.benchmarks_file)),
            int(variables["decontamination_ngram"]),
            float(variables["decontamination_min_overlap"]),
        )
        return dg.AssetCheckResult(
            passed=not found,
            metadata={
                "contaminated_files": len(found),
                "files": markdown_table(
                    ["file", "task", "part", "n-grams matched"],
                    [(path, m.text.task_id, m.text.part, f"{m.overlap:.0%}") for path, m in found[:20]],
                ),
            },
        )

    @dg.asset_check(
        asset=CURATED_SNAPSHOT,
        description="Each language's share of the bytes is within `language_share_limits` (vars.yaml).",
    )
    def language_mix_within_limits(curated_snapshot: SnapshotInfo) -> dg.AssetCheckResult:
        limits = load_vars(sql_dir)["language_share_limits"]
        shares = snapshot_checks.language_bytes(curated_snapshot.data_path)
        problems = snapshot_checks.language_share_violations(shares, limits)
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"outside_limits": "; ".join(problems) or "none", "limits": str(limits)},
        )

    return [
        snapshot_rows_unique,
        snapshot_min_rows,
        no_unredacted_secrets,
        no_benchmark_contamination,
        language_mix_within_limits,
    ]


def build_curation(sql_dir: Path) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """Every curation asset (one per SQL model, the benchmark texts, the snapshot) and the snapshot's checks."""
    models = load_models(sql_dir, known_sources=set(SOURCE_TABLES))
    missing = [m for m in (FINAL_MODEL, *REPORT_MODELS, "file_decisions") if m not in models]
    if missing:
        raise ValueError(f"{sql_dir} must define the models {', '.join(f'{m}.sql' for m in missing)}")
    assets = [_sql_model_asset(model, sql_dir) for model in models.values()]
    return [*assets, benchmark_texts, curated_snapshot], _snapshot_checks(sql_dir)
