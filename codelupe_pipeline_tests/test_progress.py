"""The terminal progress bar follows a real run through the instance's event log."""

import io
import uuid

import dagster as dg
import pytest

from codelupe_pipeline.progress import RunProgress


@dg.asset
def first(context: dg.AssetExecutionContext) -> int:
    context.log.info("loss 7.25 at step 3")
    return 1


@dg.asset
def broken(first: int) -> int:
    raise ValueError("bad input")


@dg.asset
def second(first: int) -> int:
    return first + 1


@dg.asset
def after_broken(broken: int) -> int:  # never runs, and no step event says so
    return broken


@pytest.mark.parametrize("fail", [False, True])
def test_the_bar_counts_steps_and_shows_the_latest_log_line(fail: bool) -> None:
    assets = [first, broken, after_broken, second] if fail else [first, second]
    out = io.StringIO()
    run_id = str(uuid.uuid4())
    with dg.instance_for_test() as instance:
        with RunProgress(instance, run_id, len(assets), file=out, disable=False, poll_seconds=0.05) as progress:
            job = dg.Definitions(assets=assets).resolve_implicit_global_asset_job_def()
            result = job.execute_in_process(instance=instance, run_id=run_id, raise_on_error=False)
        assert result.success is not fail
    assert progress.bar.n == len(assets)
    text = out.getvalue()
    assert f"{len(assets)}/{len(assets)}" in text
    assert "loss 7.25 at step 3" in text
    assert ("1 failed" in text) is fail
    assert progress.failed == (["broken"] if fail else [])


def test_a_disabled_bar_prints_nothing() -> None:
    out = io.StringIO()
    with dg.instance_for_test() as instance, RunProgress(instance, "none", 3, file=out, disable=True):
        pass
    assert out.getvalue() == ""
