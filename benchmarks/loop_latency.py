"""The loop's reaction time: from a curated snapshot growing past the threshold to its training run starting,
with the real Dagster daemon running and the growth sensor at its default interval.

Each round adds files to a local source and curates them in this process (as a re-scan would); the daemon's
growth sensor sees the new snapshot, requests `train_adapter` (run key = snapshot version), the queued run
coordinator launches it. The table splits the latency into: snapshot -> run requested (the sensor's interval
and evaluation), requested -> started (the run queue, the launcher and the run worker's imports). The named
baseline is the sensor interval itself: the latency a sensor of that interval cannot beat on average.

    python -m benchmarks.loop_latency [--rounds 3] [--sensor-interval 30]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import dagster as dg

from benchmarks._common import machine
from codelupe_pipeline.assets.curation import CURATED_SNAPSHOT
from codelupe_pipeline.assets.ingestion import SOURCES
from codelupe_pipeline.automation.jobs import TRAIN_ADAPTER, ingest_and_curate_job
from codelupe_pipeline.automation.schedules import PENDING
from codelupe_pipeline.automation.sources_sensor import partition_range_tags
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.instance import prepare_dagster_home
from codelupe_pipeline.settings import CHECKOUT_DIR, Settings
from codelupe_pipeline_tests.loop_settings import fast_loop_settings
from codelupe_pipeline_tests.servers import BIN, Server, settings_env

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TARGET_SECONDS = 60.0
FILES_PER_ROUND = 6
THRESHOLD = 4


def stdlib_files() -> list[Path]:
    """Small, distinct, hand-written modules: each survives curation, so each round grows the snapshot."""
    files = sorted(p for p in STDLIB.glob("*.py") if 2_000 < p.stat().st_size < 20_000)
    return [p for p in files if not p.name.startswith(("_", "keyword", "token"))]


def settings_for(root: Path, sensor_interval: int) -> Settings:
    code = root / "code"
    code.mkdir()
    # Short CPU training and a two-task benchmark, so rounds do not wait long for the GPU slot.
    return fast_loop_settings(
        root,
        code,
        max_steps=2,
        retrain_min_new_rows=THRESHOLD,
        sensor_interval_seconds=sensor_interval,
        rescan_enabled=False,  # this script decides when the snapshot grows
    )


def curate(defs: dg.Definitions, instance: dg.DagsterInstance) -> tuple[str, float]:
    """Ingest and curate in this process; the new snapshot's version and the time it was recorded."""
    keys = list(instance.get_dynamic_partitions(SOURCES))
    result = defs.resolve_job_def(ingest_and_curate_job.name).execute_in_process(
        instance=instance, tags=partition_range_tags(keys)
    )
    assert result.success
    event = instance.get_latest_materialization_event(CURATED_SNAPSHOT)
    assert event is not None and event.asset_materialization is not None
    return str(event.asset_materialization.metadata["snapshot_version"].value), event.timestamp


def wait_for_training(instance: dg.DagsterInstance, version: str, timeout: float) -> dg.RunRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = instance.get_run_records(dg.RunsFilter(job_name=TRAIN_ADAPTER, tags={"dagster/run_key": version}))
        if records and records[0].start_time is not None:
            return records[0]
        time.sleep(0.5)
    raise TimeoutError(f"no training run started for snapshot {version} within {timeout:.0f} s")


def wait_until_idle(instance: dg.DagsterInstance, timeout: float) -> None:
    """Every run finished (training, then its evaluation), so the next round finds the GPU slot free."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        busy = instance.get_runs(filters=dg.RunsFilter(statuses=PENDING), limit=1)
        # The evaluation run is requested a sensor tick after the training ends: wait for a quiet spell.
        quiet_since = None if busy else (quiet_since or time.monotonic())
        if quiet_since and time.monotonic() - quiet_since > 45:
            return
        time.sleep(1)
    raise TimeoutError("runs still in flight")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="growth events to time (default 3)")
    parser.add_argument(
        "--sensor-interval", type=int, default=Settings.sensor_interval_seconds, help="growth sensor interval (s)"
    )
    args = parser.parse_args()

    files = stdlib_files()
    root = Path(tempfile.mkdtemp(prefix="codelupe-loop-"))
    settings = settings_for(root, args.sensor_interval)
    home = prepare_dagster_home(settings)
    defs = build_definitions(settings)
    daemon = Server(
        [str(BIN / "dagster-daemon"), "run", "-w", str(CHECKOUT_DIR / "workspace.yaml")],
        settings_env(settings),
        root / "daemon.log",
    )
    rows = []
    try:
        with daemon, dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(SOURCES, ["code"])
            for n in range(1, args.rounds + 1):
                for path in files[(n - 1) * FILES_PER_ROUND : n * FILES_PER_ROUND]:
                    shutil.copy(path, root / "code" / path.name)
                version, grown_at = curate(defs, instance)
                record = wait_for_training(instance, version, 600)
                requested = record.create_timestamp.timestamp() - grown_at
                started = (record.start_time or 0.0) - grown_at
                rows.append((n, version, requested, started))
                print(f"round {n}: requested after {requested:.1f} s, started after {started:.1f} s", flush=True)
                wait_until_idle(instance, 900)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nLoop latency, growth sensor interval {args.sensor_interval} s, {len(rows)} rounds\n{machine()}\n")
    print("| round | snapshot | snapshot -> run requested (s) | snapshot -> run started (s) | target |")
    print("|---|---|---|---|---|")
    for n, version, requested, started in rows:
        verdict = "met" if started < TARGET_SECONDS else "MISSED"
        print(f"| {n} | {version[:12]} | {requested:.1f} | {started:.1f} | < {TARGET_SECONDS:.0f} s: {verdict} |")
    starts = [r[3] for r in rows]
    median = statistics.median(starts)
    print(
        f"\nmedian start latency {median:.1f} s, max {max(starts):.1f} s; baseline (the sensor interval) "
        f"{args.sensor_interval} s: median / interval = {median / args.sensor_interval:.2f}"
    )
    return 0 if max(starts) < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
