"""Run untrusted programs (model-generated code) isolated from this process.

Isolation, strongest available first:
- bubblewrap: new network, PID, IPC and UTS namespaces; a read-only view of `/`, a fresh tmpfs `/tmp`,
  the home directory hidden; the worker dies with us.
- unshare: new network and PID namespaces only (no filesystem view).
- none: plain subprocesses. Said loudly, in the log and in the results.
Inside, `sandbox_server.py` forks one child per program with rlimits (see its docstring).

Never start a sandbox from a process that initialised CUDA: workers are started with fork+exec of a fresh
interpreter (subprocess), which is safe either way, but generation and execution stay in separate processes.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)
SERVER_SOURCE = Path(__file__).with_name("sandbox_server.py")


class Isolation(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    UNSHARE = "unshare"
    NONE = "none"


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: float = 5.0
    memory_bytes: int = 1 << 30
    max_processes: int = 32
    max_file_bytes: int = 16 << 20  # also caps what a program can print
    wall_seconds: float | None = None  # backstop for sleeping programs; default max(30 s, 10 x CPU)

    @property
    def wall_backstop(self) -> float:
        return self.wall_seconds or max(30.0, 10 * self.cpu_seconds)


@dataclass(frozen=True)
class ExecResult:
    status: str  # passed | failed | timed_out | memory_exceeded | output_exceeded | crashed
    detail: str
    output: str
    cpu_seconds: float
    wall_seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def detect_isolation() -> Isolation:
    """The strongest isolation this machine allows (checked by running it once)."""
    if shutil.which("bwrap") and _works([*_bwrap_prefix(), "true"]):
        return Isolation.BUBBLEWRAP
    if shutil.which("unshare") and _works([*_unshare_prefix(), "true"]):
        return Isolation.UNSHARE
    return Isolation.NONE


def _bwrap_prefix() -> list[str]:
    cmd = [
        "bwrap", "--die-with-parent", "--new-session",
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
    ]  # fmt: skip
    if os.getuid() != 0:
        cmd.append("--unshare-user")
    # A fresh /tmp, and the user's home hidden (keys, tokens, shell history)...
    hidden = ["/tmp"]
    home = os.path.expanduser("~")
    if home not in ("/", "/tmp", "") and os.path.isdir(home):
        hidden.append(home)
    for root in hidden:
        cmd += ["--perms", "0755", "--tmpfs", root]
    # ...but the interpreter and its virtual environment stay reachable, read-only, wherever they live.
    for prefix in sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}):
        under = next((h for h in hidden if prefix.startswith(h.rstrip("/") + os.sep)), None)
        if under is None:
            continue
        parts = Path(prefix).relative_to(under).parts
        for depth in range(1, len(parts)):  # traversable parents for the unprivileged child
            cmd += ["--perms", "0755", "--dir", os.path.join(under, *parts[:depth])]
        cmd += ["--ro-bind", prefix, prefix]
    cmd += [
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--chdir",
        "/tmp",
    ]
    return [*cmd, "--"]


def _unshare_prefix() -> list[str]:
    cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if os.getuid() != 0:
        cmd.append("--map-root-user")
    return [*cmd, "--"]


class _Worker:
    """One server process inside the isolation boundary, running one program at a time."""

    def __init__(self, isolation: Isolation) -> None:
        prefix = {
            Isolation.BUBBLEWRAP: _bwrap_prefix,
            Isolation.UNSHARE: _unshare_prefix,
            Isolation.NONE: lambda: [],
        }[isolation]()
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}  # no secrets from our environment
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-I", "-B", "-c", SERVER_SOURCE.read_text()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        ready = self._readline()
        if not ready or not json.loads(ready).get("ready"):
            self.close()
            raise RuntimeError(f"sandbox worker ({isolation}) failed to start")

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def run(self, job: dict[str, object]) -> dict[str, object] | None:
        """The job's result, or None when the worker died under it."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        line = self._readline()
        return json.loads(line) if line else None

    def error_tail(self) -> str:
        """The end of the worker's own stderr: why it died, when it did."""
        self.stderr.seek(0)
        return self.stderr.read()[-1000:].decode("utf-8", "replace").strip()

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


class Sandbox:
    """A pool of sandbox workers. Use as a context manager; `run` executes programs in parallel."""

    def __init__(
        self,
        workers: int | None = None,
        limits: SandboxLimits | None = None,
        isolation: Isolation | str = "auto",
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.isolation = detect_isolation() if isolation == "auto" else Isolation(isolation)
        self.workers = workers or len(os.sched_getaffinity(0))
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._ids = itertools.count()
        # bwrap --die-with-parent ties a worker's life to the *thread* that started it: start them all
        # from one thread that lives as long as the sandbox, not from short-lived pool threads.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")
        if self.isolation != Isolation.BUBBLEWRAP:
            log.warning(self.warning)

    @property
    def warning(self) -> str | None:
        if self.isolation == Isolation.BUBBLEWRAP:
            return None
        if self.isolation == Isolation.UNSHARE:
            return (
                "SANDBOX DEGRADED: bubblewrap is unavailable; programs run with no network and their own PID "
                "namespace (unshare) but see the real filesystem. Install bubblewrap (apt-get install bubblewrap)."
            )
        return (
            "SANDBOX NOT ISOLATED: neither bubblewrap nor unshare works here; model-generated programs run as "
            "plain subprocesses with rlimits only (network and filesystem reachable). Install bubblewrap."
        )

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for worker in self._all:
                worker.close()
            self._all.clear()
        self._spawner.shutdown(wait=True)

    def _acquire(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._all) < self.workers:
                worker = self._spawner.submit(_Worker, self.isolation).result()
                self._all.append(worker)
                return worker
        return self._idle.get()

    def _replace(self, worker: _Worker) -> None:
        with self._lock:
            worker.close()
            if worker in self._all:
                self._all.remove(worker)

    def run_one(self, program: str, limits: SandboxLimits | None = None) -> ExecResult:
        limits = limits or self.limits
        job = {
            "id": next(self._ids),
            "program": program,
            "cpu_seconds": limits.cpu_seconds,
            "memory_bytes": limits.memory_bytes,
            "max_processes": limits.max_processes,
            "max_file_bytes": limits.max_file_bytes,
            "wall_seconds": limits.wall_backstop,
        }
        worker = self._acquire()
        result = worker.run(job)
        if result is None:
            reason = worker.error_tail()
            self._replace(worker)  # the program took its worker down: start a fresh one next time
            detail = "the sandbox worker died while running this program"
            return ExecResult("crashed", f"{detail}: {reason}" if reason else detail, "", 0.0, 0.0)
        self._idle.put(worker)
        return ExecResult(
            status=str(result["status"]),
            detail=str(result["detail"]),
            output=str(result["output"]),
            cpu_seconds=float(result["cpu_seconds"]),  # type: ignore[arg-type]
            wall_seconds=float(result["wall_seconds"]),  # type: ignore[arg-type]
        )

    def run(self, programs: Sequence[str], limits: SandboxLimits | None = None) -> list[ExecResult]:
        """Execute every program; results in the same order."""
        if not programs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(programs))) as pool:
            return list(pool.map(lambda p: self.run_one(p, limits), programs))
