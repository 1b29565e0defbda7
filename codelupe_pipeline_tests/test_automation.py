"""Declarative automation after training, and the defaults that make the loop run without a button press."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import dagster as dg
import pytest
import yaml

from codelupe_pipeline.assets.evaluation import MODEL_EVALUATION
from codelupe_pipeline.assets.registry import REGISTERED_MODEL_VERSION
from codelupe_pipeline.assets.training import LORA_ADAPTER
from codelupe_pipeline.automation.jobs import GPU_TAGS
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.settings import CHECKOUT_DIR, Settings

AFTER_TRAINING = dg.AssetSelection.assets(MODEL_EVALUATION, REGISTERED_MODEL_VERSION)


@pytest.fixture
def defs(settings: Settings) -> dg.Definitions:
    return build_definitions(settings)


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: Any = None) -> Any:
    return dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=AFTER_TRAINING,
        cursor=cursor,
    )


def test_a_new_adapter_is_evaluated_and_judged_in_one_tick_once(defs: dg.Definitions) -> None:
    with dg.instance_for_test() as instance:
        first = tick(defs, instance)
        assert first.total_requested == 0  # nothing trained yet

        instance.report_runless_asset_event(dg.AssetMaterialization(LORA_ADAPTER))
        after_training = tick(defs, instance, first.cursor)
        assert after_training.get_num_requested(MODEL_EVALUATION) == 1
        # Requested together, so they land in one run: the gate reads the evaluation of this very adapter.
        assert after_training.get_num_requested(REGISTERED_MODEL_VERSION) == 1

        again = tick(defs, instance, after_training.cursor)
        assert again.total_requested == 0


def test_a_failed_training_triggers_nothing(defs: dg.Definitions) -> None:
    with dg.instance_for_test() as instance:
        cursor = tick(defs, instance).cursor
        # A real failed training run: its inputs were never materialized on this instance.
        failed = dg.materialize(
            [*(defs.assets or [])],
            selection=[LORA_ADAPTER],
            resources=defs.resources,
            instance=instance,
            raise_on_error=False,
        )
        assert not failed.success
        assert tick(defs, instance, cursor).total_requested == 0


def test_nothing_is_requested_while_an_evaluation_is_in_progress(defs: dg.Definitions) -> None:
    with dg.instance_for_test() as instance:
        cursor = tick(defs, instance).cursor
        instance.report_runless_asset_event(dg.AssetMaterialization(LORA_ADAPTER))
        instance.create_run_for_job(
            defs.resolve_implicit_global_asset_job_def(),
            asset_selection=frozenset({MODEL_EVALUATION, REGISTERED_MODEL_VERSION}),
            status=dg.DagsterRunStatus.STARTED,
        )
        assert tick(defs, instance, cursor).total_requested == 0


def test_the_loop_runs_on_its_own_and_gpu_runs_are_one_at_a_time(settings: Settings) -> None:
    defs = build_definitions(dataclasses.replace(settings, rescan_enabled=True))
    sensors = {s.name: s for s in defs.sensors or []}
    assert {name: s.default_status for name, s in sensors.items()} == {
        "sources_file_sensor": dg.DefaultSensorStatus.RUNNING,
        "retrain_on_growth": dg.DefaultSensorStatus.RUNNING,
        "evaluate_new_adapters": dg.DefaultSensorStatus.RUNNING,
    }
    schedules = {s.name: s for s in defs.schedules or []}
    assert schedules["rescan_sources"].default_status == dg.DefaultScheduleStatus.RUNNING
    quiet = build_definitions(settings)  # the test settings turn schedules off
    assert {s.name: s.default_status for s in quiet.schedules or []}["rescan_sources"] == (
        dg.DefaultScheduleStatus.STOPPED
    )

    for job in ("full_pipeline", "train_adapter"):
        assert defs.resolve_job_def(job).tags.items() >= GPU_TAGS.items()
    assert sensors["evaluate_new_adapters"].run_tags.items() >= GPU_TAGS.items()
    instance_config = yaml.safe_load((CHECKOUT_DIR / "dagster.yaml").read_text())
    [limit] = instance_config["concurrency"]["runs"]["tag_concurrency_limits"]
    key, value = next(iter(GPU_TAGS.items()))
    assert limit == {"key": key, "value": value, "limit": 1}
    assert instance_config["concurrency"]["pools"]["default_limit"] == 1
    assert instance_config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0


def test_rescans_never_pile_up_in_the_queue(settings: Settings) -> None:
    defs = build_definitions(settings)
    rescan = next(s for s in defs.schedules or [] if s.name == "rescan_sources")
    with dg.instance_for_test() as instance:
        first = rescan(dg.build_schedule_context(instance=instance))  # type: ignore[operator]
        assert isinstance(first, dg.SkipReason) and "no source partitions" in str(first.skip_message)

        instance.add_dynamic_partitions("sources", ["fixture-dir", "fixture-repo"])
        request = rescan(dg.build_schedule_context(instance=instance))  # type: ignore[operator]
        assert isinstance(request, dg.RunRequest)
        assert request.tags["dagster/asset_partition_range_end"] == "fixture-repo"

        running = instance.create_run_for_job(
            defs.resolve_job_def("ingest_and_curate"), status=dg.DagsterRunStatus.STARTED, tags=request.tags
        )
        again = rescan(dg.build_schedule_context(instance=instance))  # type: ignore[operator]
        assert isinstance(again, dg.SkipReason) and running.run_id in str(again.skip_message)


def test_gpu_runs_carry_the_users_tags(settings: Settings) -> None:
    k8s = {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}
    tagged = dataclasses.replace(settings, gpu_run_tags=json.dumps({"dagster-k8s/config": k8s, "team": "ml"}))
    defs = build_definitions(tagged)
    sensors = {s.name: s for s in defs.sensors or []}
    for tags in (
        defs.resolve_job_def("full_pipeline").tags,
        defs.resolve_job_def("train_adapter").tags,
        sensors["evaluate_new_adapters"].run_tags,
    ):
        assert json.loads(tags["dagster-k8s/config"]) == k8s  # dagster-k8s reads the tag as JSON
        assert tags["team"] == "ml" and tags.items() >= GPU_TAGS.items()
    assert "dagster-k8s/config" not in defs.resolve_job_def("ingest_and_curate").tags  # curation stays on CPU

    for bad, message in (("{oops", "not valid JSON"), ('["a"]', "must be a JSON object")):
        with pytest.raises(ValueError, match=f"CODELUPE_GPU_RUN_TAGS .*{message}"):
            build_definitions(dataclasses.replace(settings, gpu_run_tags=bad))
