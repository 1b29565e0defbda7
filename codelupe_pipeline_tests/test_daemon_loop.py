"""The loop users are promised, with the real Dagster daemon and webserver as subprocesses: add files to a
source and, with no manual launch, see ingestion, a grown snapshot, one training, one evaluation and a new
MLflow version with its promotion decision; restart the daemon and see no second training; add too few files
and see the growth sensor skip and say why. Bounded in time; it stops its servers itself."""

from __future__ import annotations

import json
import shutil
import sysconfig
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from mlflow import MlflowClient

from codelupe_pipeline.automation.schedules import PENDING
from codelupe_pipeline.instance import prepare_dagster_home
from codelupe_pipeline_tests.loop_settings import fast_loop_settings
from codelupe_pipeline_tests.servers import BIN, Server, free_port, settings_env, wait_for_http

pytestmark = pytest.mark.slow
STDLIB = Path(sysconfig.get_paths()["stdlib"])
FIRST, MORE, ONE_MORE = ["bisect.py", "colorsys.py"], ["fnmatch.py", "glob.py", "graphlib.py"], ["heapq.py"]
THRESHOLD = 4  # rows of growth that train again


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def sensor_ticks(port: int, sensor: str) -> list[dict[str, Any]]:
    query = """query($name: String!) { sensorOrError(sensorSelector: {repositoryLocationName: "codelupe_pipeline",
      repositoryName: "__repository__", sensorName: $name}) { ... on Sensor { sensorState {
      ticks(limit: 50) { status skipReason runKeys } } } } }"""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": {"name": sensor}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data = json.loads(response.read())
    return list(data["data"]["sensorOrError"]["sensorState"]["ticks"])


def copy_stdlib(names: list[str], into: Path) -> None:
    for name in names:
        shutil.copy(STDLIB / name, into / name)


def test_the_loop_closes_itself_under_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = tmp_path / "code"
    code.mkdir()
    copy_stdlib(FIRST, code)
    settings = fast_loop_settings(
        tmp_path,
        code,
        retrain_min_new_rows=THRESHOLD,
        sensor_interval_seconds=5,
        sources_sensor_interval_seconds=5,
        rescan_cron="* * * * *",
        rescan_enabled=True,
    )
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    home = prepare_dagster_home(settings)
    env = settings_env(settings)
    workspace = ["-w", str(Path(__file__).parents[1] / "workspace.yaml")]
    port = free_port()
    webserver = Server([str(BIN / "dagster-webserver"), *workspace, "-h", "127.0.0.1", "-p", str(port)], env,
                       tmp_path / "webserver.log")  # fmt: skip
    daemon = Server([str(BIN / "dagster-daemon"), "run", *workspace], env, tmp_path / "daemon.log")

    def runs(job: str, status: dg.DagsterRunStatus | None = None) -> list[dg.DagsterRun]:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            found = instance.get_runs(filters=dg.RunsFilter(job_name=job))
        return [r for r in found if status is None or r.status == status]

    def runs_of_all_jobs() -> list[dg.DagsterRun]:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            return list(instance.get_runs())

    def failed_runs() -> list[str]:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            return [f"{r.job_name} {r.run_id}" for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE]

    def skips() -> list[str]:
        return [t["skipReason"] or "" for t in sensor_ticks(port, "retrain_on_growth") if t["status"] == "SKIPPED"]

    with webserver, daemon:
        wait_for_http(f"http://127.0.0.1:{port}/server_info", 240, webserver.proc)

        # 1. A new source: the sources sensor ingests it; 2 rows are too few to train on, and the sensor says so.
        wait_for("the first ingestion", lambda: runs("ingest_and_curate", dg.DagsterRunStatus.SUCCESS), 300)
        reason = wait_for("a growth skip", lambda: [s for s in skips() if "grew by 2 rows" in s], 120)[0]
        assert f"threshold {THRESHOLD} rows" in reason
        assert not runs("train_adapter")

        # 2. Files added to the source: the rescan schedule ingests them, the snapshot grows past the threshold,
        #    training runs once, and evaluation plus promotion follow on their own.
        copy_stdlib(MORE, code)
        trained = wait_for("a training run", lambda: runs("train_adapter", dg.DagsterRunStatus.SUCCESS), 420)
        assert not failed_runs(), failed_runs()
        client = MlflowClient(settings.resolved_mlflow_tracking_uri, settings.resolved_mlflow_tracking_uri)
        versions = wait_for(
            "a judged model version",
            lambda: [
                v
                for v in client.search_model_versions(f"name = '{settings.registered_model}'")
                if "promotion_reason" in v.tags
            ],
            420,
        )
        assert len(versions) == 1, versions
        assert versions[0].tags["promoted"] == "true", versions[0].tags["promotion_reason"]
        assert versions[0].tags["dataset_version"] == trained[0].tags["codelupe/snapshot_version"]
        assert trained[0].tags["dagster/run_key"] == trained[0].tags["codelupe/snapshot_version"]

        # 3. Restart the daemon: the sensor ticks again but the snapshot never trains twice. Stopping the daemon
        #    stops the runs it launched too, so restart at a quiet moment: no run in flight, and well away from
        #    the minute on which the re-scan schedule fires.
        wait_for(
            "a quiet moment to restart the daemon",
            lambda: not any(r.status in PENDING for r in runs_of_all_jobs()) and 5 <= datetime.now().second <= 35,
            180,
        )
        daemon.stop()
        daemon.start()
        ticks_before = len(sensor_ticks(port, "retrain_on_growth"))
        wait_for(
            "sensor ticks after the restart",
            lambda: len(sensor_ticks(port, "retrain_on_growth")) >= ticks_before + 3,
            180,
        )
        assert len(runs("train_adapter")) == 1

        # 4. One file more: a new snapshot, but too little growth; the skip reason says by how much.
        copy_stdlib(ONE_MORE, code)
        reason = wait_for("a skip for too little growth", lambda: [s for s in skips() if "grew by 1 rows" in s], 300)[0]
        assert f"threshold {THRESHOLD} rows" in reason
        assert len(runs("train_adapter")) == 1
        assert not failed_runs(), failed_runs()
