"""Source partitions follow the sources file: the sources sensor and the re-scan schedule on a real instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from codelupe_pipeline.assets.ingestion import SOURCES, raw_code_files
from codelupe_pipeline.automation.schedules import build_rescan_schedule
from codelupe_pipeline.automation.source_sync import plan_source_sync
from codelupe_pipeline.automation.sources_sensor import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    build_sources_sensor,
    latest_source_status,
)
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.settings import Settings
from codelupe_pipeline_tests.corpus import GO_FILE, PYTHON_FILE, RUST_FILE, write_files, write_sources_file

SENSOR = build_sources_sensor("ingest_and_curate")


def local(name: str, root: Path, **extra: object) -> dict[str, object]:
    return {"name": name, "kind": "local", "path": str(root / name), **extra}


class World:
    """A sources file, a real Dagster instance and the sensor's cursor between ticks."""

    def __init__(self, tmp_path: Path, instance: dg.DagsterInstance) -> None:
        self.root = tmp_path
        self.instance = instance
        self.cursor: str | None = None
        write_files(tmp_path / "alpha", {"src/intervals.py": PYTHON_FILE})
        write_files(tmp_path / "beta", {"src/ring.rs": RUST_FILE})
        write_files(tmp_path / "gamma", {"src/cache.go": GO_FILE})
        self.settings = Settings(data_dir=tmp_path / "data", sources_file=tmp_path / "sources.yaml")
        self.defs = build_definitions(self.settings)

    def declare(self, *sources: dict[str, object]) -> None:
        write_sources_file(self.settings.sources_file, list(sources))

    def tick(self) -> dg.SensorResult | dg.SkipReason:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"sources": self.defs.resources["sources"]}
        )
        result = SENSOR(context)
        self.cursor = context.cursor
        return result

    def apply(self, result: dg.SensorResult) -> None:
        """What the daemon does with a sensor result: partitions first, then each requested run."""
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(SOURCES, list(request.partition_keys))
            else:
                for key in request.partition_keys:
                    self.instance.delete_dynamic_partition(SOURCES, key)
        for run in result.run_requests or []:
            outcome = dg.materialize(
                [raw_code_files],
                resources=self.defs.resources,
                instance=self.instance,
                partition_key=run.partition_key,
                tags=run.tags,
            )
            assert outcome.success

    def partitions(self) -> list[str]:
        return list(self.instance.get_dynamic_partitions(SOURCES))

    def statuses(self) -> dict[tuple[str, str], int]:
        with duckdb.connect(str(self.settings.warehouse_path), read_only=True) as con:
            rows = con.execute("SELECT source, status, count(*) FROM raw_files GROUP BY ALL").fetchall()
        return {(s, st): n for s, st, n in rows}


def requested(result: dg.SensorResult) -> list[tuple[str | None, str | None, str | None]]:
    return [
        (r.partition_key, r.tags.get(RANGE_START_TAG), r.tags.get(RANGE_END_TAG)) for r in result.run_requests or []
    ]


def test_partitions_follow_the_sources_file(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        world = World(tmp_path, instance)
        world.declare(local("alpha", tmp_path), local("beta", tmp_path))

        # New sources: partitions, and one run (a single-run backfill) over both.
        first = world.tick()
        assert isinstance(first, dg.SensorResult)
        assert requested(first) == [(None, "alpha", "beta")]
        world.apply(first)
        assert world.partitions() == ["alpha", "beta"]
        assert world.statuses() == {("alpha", "current"): 1, ("beta", "current"): 1}

        nothing = world.tick()
        assert isinstance(nothing, dg.SkipReason) and "nothing added, changed or removed" in str(nothing.skip_message)

        # A changed entry is ingested again (here: an exclude pattern that now leaves its file out).
        world.declare(local("alpha", tmp_path, exclude=["src/*"]), local("beta", tmp_path))
        changed = world.tick()
        assert isinstance(changed, dg.SensorResult) and requested(changed) == [("alpha", None, None)]
        world.apply(changed)
        assert world.statuses()[("alpha", "deleted")] == 1

        # A removed source: first a run of its partition retires its rows, then the partition goes.
        world.declare(local("alpha", tmp_path, exclude=["src/*"]), local("gamma", tmp_path))
        removal = world.tick()
        assert isinstance(removal, dg.SensorResult)
        assert requested(removal) == [("gamma", None, None), ("beta", None, None)]
        assert [list(r.partition_keys) for r in removal.dynamic_partitions_requests] == [["gamma"]]
        world.apply(removal)
        assert world.statuses()[("beta", "removed")] == 1  # kept for history, out of the training data
        assert ("beta", "current") not in world.statuses()
        assert latest_source_status(instance, "beta")[0] == "removed"
        deletion = world.tick()
        assert isinstance(deletion, dg.SensorResult) and not deletion.run_requests
        assert isinstance(deletion.dynamic_partitions_requests[0], dg.DeleteDynamicPartitionsRequest)
        world.apply(deletion)
        assert world.partitions() == ["alpha", "gamma"]

        # Back in the file: a new partition, ingested again from its files (the blobs are still stored).
        world.declare(local("alpha", tmp_path, exclude=["src/*"]), local("gamma", tmp_path), local("beta", tmp_path))
        back = world.tick()
        assert isinstance(back, dg.SensorResult) and requested(back) == [("beta", None, None)]
        world.apply(back)
        assert world.statuses()[("beta", "current")] == 1

        # The re-scan schedule asks for one run over every partition.
        schedule = build_rescan_schedule("0 * * * *")
        request = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests[0]
        assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("alpha", "beta")


def test_a_broken_sources_file_changes_nothing(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        world = World(tmp_path, instance)
        world.settings.sources_file.write_text("sources:\n  - {name: x, kind: git}\n")
        result = world.tick()
        assert isinstance(result, dg.SkipReason)
        assert "sources.yaml" in str(result.skip_message) and "url" in str(result.skip_message)
        assert world.partitions() == []


def test_removed_sources_are_retired_by_any_ingestion_run(tmp_path: Path) -> None:
    """Even a partition deleted by hand cannot leave its rows in the training data."""
    with dg.instance_for_test() as instance:
        world = World(tmp_path, instance)
        world.declare(local("alpha", tmp_path), local("beta", tmp_path))
        world.apply(world.tick())  # type: ignore[arg-type]
        world.declare(local("alpha", tmp_path))
        instance.delete_dynamic_partition(SOURCES, "beta")
        result = dg.materialize(
            [raw_code_files], resources=world.defs.resources, instance=instance, partition_key="alpha"
        )
        assert result.success
        meta = result.asset_materializations_for_node("raw_code_files")[0].metadata
        assert meta["run_sources_retired"].value == {"beta": 1}
        assert world.statuses() == {("alpha", "current"): 1, ("beta", "removed"): 1}


@pytest.mark.parametrize(
    ("declared", "partitions", "seen", "retired", "expected"),
    [
        ({"a": "1", "b": "1"}, [], None, set(), (["a", "b"], [], [], [])),
        ({"a": "1"}, ["a"], None, set(), ([], [], [], [])),  # first look: existing partitions are ingested
        ({"a": "2"}, ["a"], {"a": "1"}, set(), ([], ["a"], [], [])),  # entry changed
        ({"a": "1"}, ["a", "b"], {"a": "1", "b": "1"}, set(), ([], [], ["b"], [])),  # removed: retire first
        ({"a": "1"}, ["a", "b"], {"a": "1"}, {"b"}, ([], [], [], ["b"])),  # retired: delete the partition
        ({"a": "1", "b": "1"}, ["a", "b"], {"a": "1"}, {"b"}, ([], ["b"], [], [])),  # back before its deletion
    ],
)
def test_plan_source_sync(
    declared: dict[str, str],
    partitions: list[str],
    seen: dict[str, str] | None,
    retired: set[str],
    expected: tuple[list[str], list[str], list[str], list[str]],
) -> None:
    plan = plan_source_sync(declared, partitions, seen, retired)
    assert (plan.add, plan.ingest, plan.retire, plan.delete) == expected
