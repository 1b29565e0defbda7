"""`python -m codelupe_pipeline.train.run <job.json> [--processes N]`: the training processes of a job.

With one process it trains on one device. With `--processes N` it becomes the torchrun agent of N
data-parallel processes, each running this module again (as `torchrun --nproc-per-node N -m
codelupe_pipeline.train.run job.json` or `accelerate launch --multi_gpu --num_processes N -m ...` would).
The first process prints each event as one line on stdout (`CODELUPE_EVENT {json}`) and appends it to
`events.jsonl` in the run directory. Every process dies with its parent, so killing the Dagster step
(or the agent) leaves no orphaned trainer.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

EVENT_PREFIX = "CODELUPE_EVENT "


def die_with_parent() -> None:
    """Linux: get SIGKILL when the parent (the Dagster step, or torchrun) dies, never run on orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    parser = argparse.ArgumentParser(prog="python -m codelupe_pipeline.train.run")
    parser.add_argument("job", type=Path, help="job.json written by the launcher")
    parser.add_argument("--processes", type=int, default=1, help="data-parallel processes (torchrun)")
    args = parser.parse_args(argv)
    if args.processes > 1 and "WORLD_SIZE" not in os.environ:
        from torch.distributed.run import main as torchrun

        torchrun(
            ["--standalone", f"--nproc-per-node={args.processes}", "-m", "codelupe_pipeline.train.run", str(args.job)]
        )
        return 0
    from codelupe_pipeline.train.trainer import TrainingJob, train

    job = TrainingJob.from_json(args.job.read_text())
    first = int(os.environ.get("RANK", "0")) == 0
    events = (Path(job.run_dir) / "events.jsonl").open("a") if first else None

    def emit(event: dict[str, Any]) -> None:
        line = json.dumps(event, default=str)
        if events is not None:  # the run's own record first: whoever sees the line can find it there too
            events.write(line + "\n")
            events.flush()
        print(EVENT_PREFIX + line, flush=True)

    try:
        train(job, emit)
    except Exception as exc:
        traceback.print_exc()
        if first:
            emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    finally:
        if events is not None:
            events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
