"""Helpers shared by the benchmark scripts: the machine, a measured subprocess, a Markdown table."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def machine() -> str:
    """CPU model, usable cores, memory, OS, Python and the load average right now (timings depend on it)."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kb = int(meminfo.read_text().split("MemTotal:", 1)[1].split()[0])
        memory = f", {total_kb / 2**20:.0f} GiB RAM"
    load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return (
        f"{cpu}, {cores} cores{memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}{load}"
    )


def run_measured(
    cmd: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | Path | None = None
) -> tuple[str, float, float]:
    """Run a command to completion: (stdout, wall seconds, peak RSS in MB).

    The peak is the `ru_maxrss` that `wait4` reports for this child: the largest resident set of the child
    or of any descendant it waited for (Linux keeps the maximum, not the sum, over a process tree). It counts
    everything in the process, native memory too (DuckDB, numpy). stderr passes through; a failure raises.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, env=None if env is None else dict(env), cwd=cwd, text=True
    )
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, list(cmd), output=stdout)
    # ru_maxrss is kilobytes on Linux, bytes on macOS.
    peak_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return stdout, seconds, peak_mb


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_table(rows: list[dict[str, Any]], file: Any = None) -> None:
    """A Markdown table; columns are the keys of all rows in first-seen order, missing cells stay empty."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    print("\n".join(lines), file=file or sys.stdout, flush=True)
