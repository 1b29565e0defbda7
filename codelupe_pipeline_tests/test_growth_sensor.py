"""The growth sensor against a real Dagster instance: below, above, and at the same snapshot again."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from codelupe_pipeline.assets.curation import CURATED_SNAPSHOT
from codelupe_pipeline.assets.training import LORA_ADAPTER
from codelupe_pipeline.automation.growth import GrowthPolicy, SnapshotState, growth_decision
from codelupe_pipeline.automation.sensors import build_growth_sensor

SENSOR = build_growth_sensor("train_adapter", GrowthPolicy(min_new_rows=1000))


def snapshot(instance: dg.DagsterInstance, version: str, rows: int) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(CURATED_SNAPSHOT, metadata={"snapshot_version": version, "dagster/row_count": rows})
    )


def trained(instance: dg.DagsterInstance, version: str, rows: int) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(LORA_ADAPTER, metadata={"snapshot_version": version, "snapshot_rows": rows})
    )


def tick(instance: dg.DagsterInstance, cursor: str | None) -> tuple[object, str | None]:
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = SENSOR(context)
    return result, context.cursor


def test_below_threshold_above_threshold_and_never_twice() -> None:
    with dg.instance_for_test() as instance:
        result, cursor = tick(instance, None)
        assert isinstance(result, dg.SkipReason) and "no curated snapshot" in str(result.skip_message)

        snapshot(instance, "v1", 120)
        result, cursor = tick(instance, cursor)
        assert isinstance(result, dg.SkipReason)
        assert "grew by 120 rows" in str(result.skip_message) and "1,000" in str(result.skip_message)

        snapshot(instance, "v2", 1500)
        result, cursor = tick(instance, cursor)
        assert isinstance(result, dg.RunRequest)
        assert result.run_key == "v2"
        assert result.run_config["ops"]["lora_adapter"]["config"]["snapshot_version"] == "v2"
        assert json.loads(cursor or "{}")["version"] == "v2"

        # The same snapshot again: no second request, whatever the cursor says.
        result, cursor = tick(instance, cursor)
        assert isinstance(result, dg.SkipReason) and "already trained" in str(result.skip_message)

        # Trained on v2; a snapshot 200 rows larger is not enough, 1,100 more is.
        trained(instance, "v2", 1500)
        snapshot(instance, "v3", 1700)
        result, cursor = tick(instance, cursor)
        assert isinstance(result, dg.SkipReason) and "grew by 200 rows" in str(result.skip_message)
        snapshot(instance, "v4", 2600)
        result, cursor = tick(instance, cursor)
        assert isinstance(result, dg.RunRequest) and result.run_key == "v4"


def test_a_lost_cursor_falls_back_to_the_last_training() -> None:
    with dg.instance_for_test() as instance:
        snapshot(instance, "v1", 5000)
        trained(instance, "v1", 5000)
        result, _ = tick(instance, None)  # e.g. the sensor was reset
        assert isinstance(result, dg.SkipReason) and "already trained" in str(result.skip_message)


@pytest.mark.parametrize(
    ("current", "baseline", "policy", "expected"),
    [
        (SnapshotState("b", 1100), SnapshotState("a", 1000), GrowthPolicy(0, 0.1), True),  # +10 %
        (SnapshotState("b", 1099), SnapshotState("a", 1000), GrowthPolicy(0, 0.1), False),
        (SnapshotState("b", 1050), SnapshotState("a", 1000), GrowthPolicy(50, 0.5), True),  # rows OR fraction
        (SnapshotState("b", 900), SnapshotState("a", 1000), GrowthPolicy(0, 0.0), False),  # shrank
        (SnapshotState("b", 1000), SnapshotState("a", 1000), GrowthPolicy(0, 0.0), True),  # any new version
        (SnapshotState("a", 9000), SnapshotState("a", 1000), GrowthPolicy(1, 0.0), False),  # same version
    ],
)
def test_growth_policy(current: SnapshotState, baseline: SnapshotState, policy: GrowthPolicy, expected: bool) -> None:
    assert growth_decision(current, baseline, policy)[0] is expected
