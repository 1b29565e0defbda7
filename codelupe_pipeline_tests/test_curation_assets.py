"""Curation as Dagster assets on a real instance: metadata a curator reads, checks, idempotence, and two
processes materializing curation against one DuckDB file at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codelupe_pipeline.assets.ingestion import SOURCES
from codelupe_pipeline.automation.jobs import ingest_and_curate_job
from codelupe_pipeline.automation.sources_sensor import partition_range_tags
from codelupe_pipeline.curate import snapshot_checks
from codelupe_pipeline.curate.decontamination import texts_from_tasks
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.evaluate.benchmarks import humaneval_path
from codelupe_pipeline.evaluate.tasks import load_tasks
from codelupe_pipeline.resources import DuckDBWarehouse, SourcesResource
from codelupe_pipeline.settings import CHECKOUT_DIR, Settings
from codelupe_pipeline_tests.test_end_to_end import materializations

CURATION_CHECKS = {
    "snapshot_rows_unique", "snapshot_min_rows", "no_unredacted_secrets", "no_benchmark_contamination",
    "language_mix_within_limits",
}  # fmt: skip


def curation_selection(settings: Settings) -> tuple[list[object], dict[str, object]]:
    """Every curation asset and check (not ingestion), for `dg.materialize`."""
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    assets = [a for a in defs.assets or [] if any(graph.get(k).group_name == "curation" for k in a.keys)]  # type: ignore[union-attr]
    checks = [c for c in defs.asset_checks or [] if all(k.asset_key.path == ["curated_snapshot"] for k in c.check_keys)]  # type: ignore[union-attr]
    return [*assets, *checks], dict(defs.resources or {})


def ingest_and_curate(settings: Settings, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """What the sources sensor and the rescan schedule run: every source's partition, then curation."""
    defs = build_definitions(settings)
    sources = (defs.resources or {})["sources"]
    assert isinstance(sources, SourcesResource)
    names = sources.load().names
    instance.add_dynamic_partitions(SOURCES, [n for n in names if not instance.has_dynamic_partition(SOURCES, n)])
    job = defs.resolve_job_def(ingest_and_curate_job.name)
    return job.execute_in_process(instance=instance, tags=partition_range_tags(names))


def test_curation_assets_metadata_checks_and_idempotence(settings: Settings) -> None:
    with dg.instance_for_test() as instance:
        first = ingest_and_curate(settings, instance)
        assert first.success
        checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
        assert set(checks) >= CURATION_CHECKS
        failed = {name: e.metadata for name, e in checks.items() if not e.passed}
        assert not failed
        snap = materializations(first)["curated_snapshot"]
        assert snap["dagster/row_count"] == 6
        for key in (
            "filter_funnel",
            "dropped_file_samples",
            "language_mix",
            "redactions_by_kind",
            "contaminated_files",
        ):
            assert key in snap, key
        assert "exact_duplicate" in str(snap["filter_funnel"]) and "rows out" in str(snap["filter_funnel"])
        assert snap["token_estimate"] > 0
        # The UI's column table says what each column of a report model means (config columns in its SQL).
        schema = materializations(first)["curation_funnel"]["dagster/column_schema"]
        described = {c.name: c.description for c in schema.columns}
        assert set(described) == {"step", "stage", "files", "failing", "bytes"}
        assert all(described.values()) and "first step" in str(described["files"])
        data = pq.read_table(settings.snapshots_dir / str(snap["snapshot_version"]) / "data.parquet")
        assert {"quality_score", "content", "split", "sha256"} <= set(data.column_names)

        second = ingest_and_curate(settings, instance)
        assert second.success
        assert "curated_snapshot" not in materializations(second), "unchanged data: no new dataset version"


def test_snapshot_checks_catch_what_curation_must_never_let_through(tmp_path: Path) -> None:
    task = next(t for t in load_tasks(humaneval_path(), "humaneval")[1] if t.task_id == "HumanEval/0")
    rows = {
        "path": ["ok.py", "leak.py", "bench.py", "copy.py"],
        "content": [
            "def add(a, b):\n    return a + b\n",
            'TOKEN = "ghp_R8kx2Lm9Qw4Zt7Vb1Nc6Hj3Fd5Sa0Gp8Ye2Ur"\n',
            task.prompt + task.canonical_solution,
            "def add(a, b):\n    return a + b\n",
        ],
        "language": ["python", "python", "python", "rust"],
        "size_bytes": [30, 50, 900, 30],
        "sha256": ["a", "b", "c", "a"],
    }
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table(rows), path)
    assert [leak.path for leak in snapshot_checks.unredacted_secrets(path)] == ["leak.py"]
    found = snapshot_checks.contaminated_rows(path, texts_from_tasks("humaneval", [task]), 13, 0.5)
    assert [p for p, _ in found] == ["bench.py"]
    shares = snapshot_checks.language_bytes(path)
    assert snapshot_checks.language_share_violations(shares, {"default": [0.0, 1.0]}) == []
    problems = snapshot_checks.language_share_violations(shares, {"default": [0.0, 0.9], "go": [0.1, 1.0]})
    assert [p.split(":")[0] for p in problems] == ["go", "python"]


CHILD = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path
    import dagster as dg
    from codelupe_pipeline.settings import Settings
    from codelupe_pipeline_tests.test_curation_assets import curation_selection

    settings = Settings(data_dir=Path(sys.argv[1]), sources_file=Path(sys.argv[2]))
    selection, resources = curation_selection(settings)
    (Path(sys.argv[3]) / f"ready-{os.getpid()}").touch()  # about to open the warehouse
    with dg.instance_for_test() as instance:
        result = dg.materialize(selection, resources=resources, instance=instance, raise_on_error=False)
    versions = [
        e.step_materialization_data.materialization.metadata["snapshot_version"].value
        for e in result.get_asset_materialization_events()
        if e.step_materialization_data.materialization.asset_key.to_user_string() == "curated_snapshot"
    ]
    print("SNAPSHOT", versions[0] if versions else None)
    sys.exit(0 if result.success else 1)
    """
)


@pytest.mark.slow
def test_two_processes_curating_at_once_wait_for_the_duckdb_lock(settings: Settings, tmp_path: Path) -> None:
    """Two real processes build every curation model against one warehouse file while a third process holds
    its lock: both wait instead of failing, and both end with the same snapshot. (About 40 s on 2 cores.)"""
    with dg.instance_for_test() as instance:
        assert ingest_and_curate(settings, instance).success

    holder = duckdb.connect(str(settings.warehouse_path))  # this process holds the write lock to start with
    ready = tmp_path / "ready"
    ready.mkdir()
    logs = [tmp_path / f"child-{i}.log" for i in range(2)]
    children = []
    for log in logs:
        with log.open("w") as out:
            command = [sys.executable, "-c", CHILD, str(settings.data_dir), str(settings.sources_file), str(ready)]
            children.append(subprocess.Popen(command, cwd=CHECKOUT_DIR, stdout=out, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 300
    while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline and all(c.poll() is None for c in children):
        time.sleep(0.2)
    time.sleep(3)  # both are now knocking on the locked warehouse
    assert all(c.poll() is None for c in children), "a child gave up on the lock instead of waiting"
    holder.close()
    for child in children:
        child.wait(timeout=600)
    outputs = [log.read_text() for log in logs]
    for child, output in zip(children, outputs, strict=True):
        assert child.returncode == 0, output[-3000:]
    versions = {line.split()[1] for output in outputs for line in output.splitlines() if line.startswith("SNAPSHOT")}
    assert len(versions) == 1 and None not in versions and "None" not in versions


def test_the_warehouse_memory_limit_is_a_setting(tmp_path: Path) -> None:
    capped = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), memory_limit="300MB")
    with capped.connect() as con:
        limit = str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])  # type: ignore[index]
        spill = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]  # type: ignore[index]
    assert spill == f"{tmp_path / 'w.duckdb'}.tmp"  # beyond the limit it spills next to the warehouse
    assert limit.startswith("286") and "MiB" in limit  # 300 MB as DuckDB reports it
    bad = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), memory_limit="lots")
    with pytest.raises(ValueError, match="CODELUPE_DUCKDB_MEMORY_LIMIT='lots'"), bad.connect():
        pass
