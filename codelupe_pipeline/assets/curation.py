"""Curation: one asset per SQL model in `dbt_like_sql/`, then the immutable curated snapshot.

Adding a SQL file adds an asset; its declared tests become asset checks. Every asset that opens the
warehouse runs in the `duckdb` pool (limit 1), so Dagster never lets two of them fight over DuckDB's lock.
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb

from codelupe_pipeline.assets.ingestion import RAW_CODE_FILES
from codelupe_pipeline.assets.metadata import markdown_table
from codelupe_pipeline.curate.snapshot import SnapshotInfo, export_snapshot
from codelupe_pipeline.curate.sql_models import SqlModel, load_models, load_vars, run_model, run_test
from codelupe_pipeline.resources import DuckDBWarehouse, StorageResource

# Tables that `{{ source('...') }}` may name, and the asset that writes each.
SOURCE_TABLES: dict[str, dg.AssetKey] = {"raw_files": RAW_CODE_FILES, "raw_blobs": RAW_CODE_FILES}
FINAL_MODEL = "curated_files"
FUNNEL_MODEL = "curation_funnel"
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
            run = run_model(con, model, load_vars(sql_dir))
            context.log.info(f"{model.name}: {run.row_count:,} rows ({model.materialized})")
            yield dg.MaterializeResult(
                metadata={
                    "dagster/row_count": run.row_count,
                    "dagster/column_schema": dg.TableSchema(
                        columns=[dg.TableColumn(name, type_) for name, type_ in run.columns]
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


def build_sql_model_assets(sql_dir: Path) -> list[dg.AssetsDefinition]:
    models = load_models(sql_dir, known_sources=set(SOURCE_TABLES))
    if FINAL_MODEL not in models or FUNNEL_MODEL not in models:
        raise ValueError(f"{sql_dir} must define the models {FINAL_MODEL}.sql and {FUNNEL_MODEL}.sql")
    return [_sql_model_asset(model, sql_dir) for model in models.values()]


def _latest_version(context: dg.AssetExecutionContext) -> str | None:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("snapshot_version")
    return str(value.value) if value is not None else None


def _funnel(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, int]]:
    return [(str(s), int(f or 0), int(b or 0)) for s, f, b in con.execute(
        f'SELECT stage, files, bytes FROM "{FUNNEL_MODEL}"'
    ).fetchall()]  # fmt: skip


@dg.asset(
    key=CURATED_SNAPSHOT,
    deps=[dg.AssetKey(FINAL_MODEL), dg.AssetKey(FUNNEL_MODEL)],
    group_name="curation",
    kinds={"duckdb", "parquet"},
    pool="duckdb",
    output_required=False,
    code_version="1",
    description=(
        "The curated dataset as an immutable Parquet snapshot; its version is a hash of its content. A new "
        "materialization is recorded only when the content changed, so the growth sensor and training see "
        "each dataset version once. Training and evaluation read snapshots, never the warehouse."
    ),
)
def curated_snapshot(
    context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, storage: StorageResource
) -> Iterator[dg.Output[SnapshotInfo]]:
    with warehouse.connect() as con:
        info = export_snapshot(con, storage.snapshots_dir, FINAL_MODEL)
        funnel = _funnel(con)
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
            "token_estimate": info.token_estimate,
            "path": dg.MetadataValue.path(str(info.data_path)),
            "language_mix": markdown_table(
                ["language", "files", "share"],
                [(lang, n, f"{n / info.row_count:.1%}") for lang, n in info.languages.items()],
            ),
            "filter_funnel": markdown_table(["stage", "files", "bytes"], funnel),
        },
    )


@dg.asset_check(asset=CURATED_SNAPSHOT, description="The snapshot holds rows, and each content hash once.")
def snapshot_rows_unique(curated_snapshot: SnapshotInfo) -> dg.AssetCheckResult:
    # Reads the exported Parquet with an in-memory DuckDB: the warehouse is never opened here.
    with duckdb.connect() as con:
        total, distinct = con.execute(
            f"SELECT count(*), count(DISTINCT sha256) FROM read_parquet('{curated_snapshot.data_path}')"
        ).fetchone() or (0, 0)
    return dg.AssetCheckResult(
        passed=total > 0 and total == distinct,
        metadata={"rows": int(total), "distinct_content_hashes": int(distinct)},
    )
