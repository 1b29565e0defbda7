"""Start the training processes for a job and follow their events (the Dagster asset and the tests use it).

Training runs in child processes, never in the calling one: the same command trains on one device or,
through torchrun, on several; the caller never initialises CUDA (so it can still fork sandboxes); and the
GPU memory is returned the moment training ends, before evaluation loads the model again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codelupe_pipeline.train.run import EVENT_PREFIX
from codelupe_pipeline.train.trainer import TrainingJob

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class TrainingFailed(RuntimeError):
    """The training processes failed; the message carries their error and the log's tail."""


def command(job_file: Path, processes: int) -> list[str]:
    return [sys.executable, "-m", "codelupe_pipeline.train.run", str(job_file), f"--processes={processes}"]


def launch(
    job: TrainingJob,
    on_event: Callable[[dict[str, Any]], None],
    processes: int = 1,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the job to the end; return the `done` event (the result). Raises TrainingFailed."""
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    job_file = run_dir / "job.json"
    job_file.write_text(job.to_json())
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), child_env.get("PYTHONPATH")) if p)
    log_path = run_dir / "train.log"
    result: dict[str, Any] | None = None
    error = ""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command(job_file, processes),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=child_env,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line.startswith(EVENT_PREFIX):
                    continue
                event = json.loads(line[len(EVENT_PREFIX) :])
                if event["event"] == "done":
                    result = event
                elif event["event"] == "error":
                    error = event["error"]
                on_event(event)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the caller was interrupted: training stops with it
                proc.kill()
                proc.wait()
    if code != 0 or result is None:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise TrainingFailed(
            f"training failed (exit code {code}): {error or 'no error reported'}\n--- {log_path} (tail):\n{tail}"
        )
    return result
