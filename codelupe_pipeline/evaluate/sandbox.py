"""Run untrusted programs (model-generated code) isolated from this process.

Isolation, strongest available first:
- bubblewrap: new network, PID, IPC, UTS (and, unprivileged, user) namespaces; a read-only view of `/` with
  `/tmp`, `/var/tmp`, `/run`, `/home`, `/root` and the home directory replaced by empty size-capped tmpfs; the
  server is PID 1 of its namespace, keeps only the capabilities it needs, and dies with us.
- unshare: new network, PID, IPC and UTS namespaces, but the real filesystem (read-only only where
  permissions say so).
- none: plain subprocesses. Said loudly, in the log and in the results.
Inside, `sandbox_server.py` forks one child per program with its own uid and rlimits (see its docstring).

Never start a sandbox from a process that initialised CUDA by forking it: workers are started with fork+exec
of a fresh interpreter (subprocess), which is safe either way, and they never share memory with generation.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)
SERVER_SOURCE = Path(__file__).with_name("sandbox_server.py")
# Directories that hold secrets or user data and that no program needs: empty in the bubblewrap view.
HIDDEN_ROOTS = ("/tmp", "/var/tmp", "/run", "/home", "/root")
PROGRAM_UIDS = (1_900_000_000, 2_100_000_000)  # uids that own nothing on a host: one per worker, picked at random


class Isolation(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    UNSHARE = "unshare"
    NONE = "none"


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # an assertion, an exception, a compile error, a non-zero exit, the output cap
    TIMED_OUT = "timed_out"  # its CPU time (or, for a sleeping program, the wall-clock backstop)
    MEMORY_EXCEEDED = "memory_exceeded"
    CRASHED = "crashed"  # killed by a signal (segfault, abort) or left before its tests finished


class SandboxUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: float = 5.0
    memory_bytes: int = 1 << 30
    max_processes: int = 32  # per program, threads included (the kernel counts both)
    max_file_bytes: int = 16 << 20  # also caps what a program can print
    wall_seconds: float | None = None  # backstop for sleeping programs; default max(30 s, 10 x CPU)

    @property
    def wall_backstop(self) -> float:
        return self.wall_seconds or max(30.0, 10 * self.cpu_seconds)

    def as_job(self) -> dict[str, float | int]:
        return {
            "cpu_seconds": self.cpu_seconds,
            "memory_bytes": self.memory_bytes,
            "max_processes": self.max_processes,
            "max_file_bytes": self.max_file_bytes,
            "wall_seconds": self.wall_backstop,
        }


@dataclass(frozen=True)
class Program:
    """What the sandbox runs: Python source (exec'd in a fork of the warm server), or files plus a build
    command (run under `build_limits`) and a run command (absolute paths; run in the program's directory)."""

    python: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    build: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    build_limits: SandboxLimits | None = None

    def job(self, job_id: int, limits: SandboxLimits) -> dict[str, object]:
        if self.python is not None:
            return {"id": job_id, "kind": "python", "program": self.python, "limits": limits.as_job()}
        if not self.run:
            raise ValueError("a Program needs python source or a run command")
        job: dict[str, object] = {
            "id": job_id,
            "kind": "command",
            "files": dict(self.files),
            "run": list(self.run),
            "env": dict(self.env),
            "limits": limits.as_job(),
        }
        if self.build:
            job["build"] = list(self.build)
            job["build_limits"] = (self.build_limits or limits).as_job()
        return job


@dataclass(frozen=True)
class ExecResult:
    status: Outcome
    detail: str  # the assertion or error, the limit hit, the signal
    output: str  # the tail of what the program printed
    cpu_seconds: float
    wall_seconds: float

    @property
    def passed(self) -> bool:
        return self.status == Outcome.PASSED


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (containers)."""
    cpus = len(os.sched_getaffinity(0))
    quota = None
    try:
        raw = Path("/sys/fs/cgroup/cpu.max").read_text().split()  # cgroup v2: "max 100000" or "200000 100000"
        if raw[0] != "max":
            quota = int(raw[0]) / int(raw[1])
    except (OSError, IndexError, ValueError):
        try:
            q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            if q > 0:
                quota = q / int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            pass
    if quota is not None:
        cpus = min(cpus, max(1, int(quota)))
    return max(1, cpus)


@functools.cache
def _bwrap_features() -> frozenset[str]:
    try:
        text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(flag for flag in ("--as-pid-1", "--disable-userns", "--size", "--cap-drop") if flag in text)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _hidden_roots() -> list[str]:
    hidden = list(HIDDEN_ROOTS)
    home = os.path.expanduser("~")
    if home not in ("/", "") and os.path.isdir(home) and not any(_under(home, r) for r in hidden):
        hidden.append(home)
    return [root for root in hidden if os.path.isdir(root) and not os.path.islink(root)]


def _interpreter_paths() -> set[str]:
    return {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(sys.executable)}


def _others_can_read(path: str) -> bool:
    """Whether a uid that is neither owner nor group can reach and read `path` (every parent traversable)."""
    path = os.path.realpath(path)
    try:
        if os.stat(path).st_mode & 0o005 != 0o005:
            return False
        while path != "/":
            path = os.path.dirname(path)
            if not os.stat(path).st_mode & 0o001:
                return False
    except OSError:
        return False
    return True


@functools.cache
def private_interpreter() -> str | None:
    """The part of this Python installation that a program's own uid cannot read, if any (a pyenv under
    /root, say). bubblewrap re-binds it readable; the degraded modes cannot, so the server imports the
    modules a program names before dropping privileges (see sandbox_server)."""
    if os.getuid() != 0:
        return None  # programs keep our uid
    paths = {os.path.dirname(os.__file__), *(p for p in sys.path if p)}
    return next((p for p in sorted(paths) if os.path.isdir(p) and not _others_can_read(p)), None)


def bwrap_prefix(readable: Iterable[str] = (), scratch_bytes: int = 512 << 20) -> list[str]:
    features = _bwrap_features()
    cmd = [
        "bwrap", "--die-with-parent", "--new-session",
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
    ]  # fmt: skip
    if "--as-pid-1" in features:
        cmd.append("--as-pid-1")  # the server is init: programs cannot kill it, orphans come to it
    if os.getuid() != 0:
        cmd.append("--unshare-user")
        if "--disable-userns" in features:
            cmd.append("--disable-userns")
    elif "--cap-drop" in features:
        # Root keeps every capability in bubblewrap unless told: the server needs only these, to run each
        # program as its own uid and to clean up after it.
        cmd += ["--cap-drop", "ALL"]
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER"):
            cmd += ["--cap-add", cap]
    cmd += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    hidden = _hidden_roots()
    for root in hidden:
        if "--size" in features:
            cmd += ["--size", str(scratch_bytes if root == "/tmp" else 16 << 20)]
        cmd += ["--perms", "0755", "--tmpfs", root]
    # The interpreter, its virtual environment and the toolchains stay reachable, read-only, wherever they live.
    made: set[str] = set()
    for path in sorted(_interpreter_paths() | {os.path.realpath(p) for p in readable}):
        hidden_by = next((r for r in hidden if _under(path, r) and path != r), None)
        if hidden_by is None or not os.path.exists(path):
            continue
        parts = Path(path).relative_to(hidden_by).parts
        for depth in range(1, len(parts)):  # traversable parents for the unprivileged child
            parent = os.path.join(hidden_by, *parts[:depth])
            if parent not in made:
                made.add(parent)
                cmd += ["--perms", "0755", "--dir", parent]
        cmd += ["--ro-bind", path, path]
    cmd += ["--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8"]
    return [*cmd, "--chdir", "/tmp", "--"]


def unshare_prefix() -> list[str]:
    cmd = ["unshare", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]
    if os.getuid() != 0:
        cmd.append("--map-root-user")
    return [*cmd, "--"]


def _probe(cmd: list[str]) -> str | None:
    """None when the command works, else why not."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit status {done.returncode}")[:300]


@functools.cache
def isolation_report() -> tuple[Isolation, tuple[str, ...]]:
    """The strongest isolation this machine allows (checked by running it once), and why stronger ones fail."""
    reasons = []
    if not shutil.which("bwrap"):
        reasons.append("bubblewrap is not installed (apt-get install bubblewrap)")
    elif (why := _probe([*bwrap_prefix(), "true"])) is None:
        return Isolation.BUBBLEWRAP, ()
    else:
        reasons.append(f"bubblewrap cannot create its namespaces here: {why}")
    if not shutil.which("unshare"):
        reasons.append("unshare (util-linux) is not installed")
    elif (why := _probe([*unshare_prefix(), "true"])) is None:
        return Isolation.UNSHARE, tuple(reasons)
    else:
        reasons.append(f"unshare cannot create namespaces here: {why}")
    return Isolation.NONE, tuple(reasons)


def detect_isolation() -> Isolation:
    return isolation_report()[0]


def isolation_warning(isolation: Isolation) -> str | None:
    """The loud line for the run log and the metadata; None under bubblewrap."""
    if isolation == Isolation.BUBBLEWRAP:
        return None
    chosen, reasons = isolation_report()
    why = f" ({'; '.join(reasons)})" if reasons and chosen == isolation else " (forced by configuration)"
    if isolation == Isolation.UNSHARE:
        return (
            "SANDBOX DEGRADED: bubblewrap is unavailable" + why + ". Model-generated programs run with no network "
            "and their own PID namespace (unshare), but they see the real filesystem, protected only by file "
            "permissions. Install bubblewrap for the full sandbox."
        )
    return (
        "SANDBOX NOT ISOLATED" + why + ": model-generated programs run as plain subprocesses with rlimits only; "
        "the network is reachable and the filesystem is protected only by file permissions. Install bubblewrap."
    )


class _Worker:
    """One server process inside the isolation boundary, running one program at a time. Constructing one only
    launches it (cheap); `wait_ready` waits for its interpreter, so that many can start at once."""

    def __init__(self, isolation: Isolation, readable: Sequence[str], scratch_bytes: int) -> None:
        self.isolation = isolation
        prefix = {
            Isolation.BUBBLEWRAP: lambda: bwrap_prefix(readable, scratch_bytes),
            Isolation.UNSHARE: unshare_prefix,
            Isolation.NONE: list,
        }[isolation]()
        config = {
            "program_uid": random.SystemRandom().randrange(*PROGRAM_UIDS),
            "preimport": isolation != Isolation.BUBBLEWRAP and private_interpreter() is not None,
        }
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}  # no secrets from our environment
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-I", "-B", "-c", SERVER_SOURCE.read_text(), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.info: dict[str, object] = {}

    def wait_ready(self) -> _Worker:
        ready = self._readline()
        self.info = json.loads(ready) if ready.startswith("{") else {}
        if not self.info.get("ready"):
            reason = self.error_tail()
            self.close()
            raise SandboxUnavailable(f"sandbox worker ({self.isolation}) failed to start: {reason or 'no answer'}")
        return self

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def run(self, job: dict[str, object], deadline_seconds: float) -> dict[str, object] | None:
        """The job's result, or None when the worker died under it (or hung past the deadline)."""
        assert self.proc.stdin is not None
        watchdog = threading.Timer(deadline_seconds, self.proc.kill)
        watchdog.start()
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            line = self._readline()
        except (BrokenPipeError, OSError, ValueError):
            return None
        finally:
            watchdog.cancel()
        return json.loads(line) if line else None

    def error_tail(self) -> str:
        """The end of the worker's own stderr: why it died, when it did."""
        try:
            self.stderr.seek(0)
            return self.stderr.read()[-1000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        if self.stderr.closed:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stderr.close()


class Sandbox:
    """A pool of sandbox workers. Use as a context manager; `run` executes programs in parallel, `submit` one
    program in the background (to execute completions while the model is still generating)."""

    def __init__(
        self,
        workers: int | None = None,
        limits: SandboxLimits | None = None,
        isolation: Isolation | str = "auto",
        readable_paths: Iterable[str] = (),
        scratch_bytes: int = 512 << 20,
    ) -> None:
        self.limits = limits or SandboxLimits()
        if isolation == "auto":
            self.isolation = detect_isolation()
        else:
            self.isolation = Isolation(isolation)
            if self.isolation == Isolation.BUBBLEWRAP and detect_isolation() != Isolation.BUBBLEWRAP:
                raise SandboxUnavailable("bubblewrap isolation was required: " + "; ".join(isolation_report()[1]))
        self.workers = workers or available_cpus()
        self.readable_paths = tuple(readable_paths)
        self.scratch_bytes = scratch_bytes
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._ids = iter(range(1 << 62))
        # bwrap --die-with-parent ties a worker's life to the *thread* that started it: start them all
        # from one thread that lives as long as the sandbox, not from short-lived pool threads.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")
        self._pool: ThreadPoolExecutor | None = None
        self.warning = isolation_warning(self.isolation)
        if self.warning and (private := private_interpreter()):
            self.warning += (
                f" Programs run as an unprivileged uid that cannot read {private}: the modules a program names "
                "are imported for it, but modules the standard library loads lazily may fail."
            )
        if self.warning:
            log.warning(self.warning)

    def describe(self) -> dict[str, object]:
        return {
            "isolation": self.isolation.value,
            "workers": self.workers,
            "warning": self.warning or "",
            "cpu_seconds": self.limits.cpu_seconds,
            "memory_mb": self.limits.memory_bytes >> 20,
        }

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._lock:
            for worker in self._all:
                worker.close()
            self._all.clear()
        self._spawner.shutdown(wait=True)

    def _launch(self) -> _Worker:
        return self._spawner.submit(_Worker, self.isolation, self.readable_paths, self.scratch_bytes).result()

    def start(self) -> None:
        """Start every worker now, all at once (otherwise each starts with its first program)."""
        with self._lock:
            launched = [self._launch() for _ in range(self.workers - len(self._all))]
            try:
                for worker in launched:
                    worker.wait_ready()
            except SandboxUnavailable:
                for worker in launched:
                    worker.close()
                raise
            self._all += launched
            for worker in launched:
                self._idle.put(worker)

    def _acquire(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._all) < self.workers:
                worker = self._launch().wait_ready()
                self._all.append(worker)
                return worker
        return self._idle.get()

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            worker.close()
            if worker in self._all:
                self._all.remove(worker)

    def run_one(self, program: Program | str, limits: SandboxLimits | None = None) -> ExecResult:
        limits = limits or self.limits
        if isinstance(program, str):
            program = Program(python=program)
        job = program.job(next(self._ids), limits)
        build = program.build_limits or limits
        deadline = limits.wall_backstop + (build.wall_backstop if program.build else 0) + 30
        worker = self._acquire()
        result = worker.run(job, deadline)
        if result is None:
            reason = worker.error_tail()
            self._retire(worker)  # the program took its worker down: start a fresh one next time
            detail = "the sandbox worker died while running this program"
            return ExecResult(Outcome.CRASHED, f"{detail}: {reason}" if reason else detail, "", 0.0, 0.0)
        self._idle.put(worker)
        return ExecResult(
            status=Outcome(str(result["status"])),
            detail=str(result["detail"]),
            output=str(result["output"]),
            cpu_seconds=float(result["cpu_seconds"]),  # type: ignore[arg-type]
            wall_seconds=float(result["wall_seconds"]),  # type: ignore[arg-type]
        )

    def submit(self, program: Program | str, limits: SandboxLimits | None = None) -> Future[ExecResult]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox")
        return self._pool.submit(self.run_one, program, limits)

    def run(self, programs: Sequence[Program | str], limits: SandboxLimits | None = None) -> list[ExecResult]:
        """Execute every program; results in the same order."""
        return [future.result() for future in [self.submit(p, limits) for p in programs]]
