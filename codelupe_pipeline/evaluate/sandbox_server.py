"""The sandbox's worker server. Runs INSIDE the isolation boundary (bubblewrap / unshare), standard library only.

It reads one JSON job per line on stdin and answers one JSON result per line on stdout. Each program runs
in a fork of this small, clean process (far cheaper than a fresh interpreter), in its own session and
process group, as an unprivileged user when the server runs as root, with rlimits on CPU time, memory,
processes, file size and open files, in a fresh temporary directory, with an empty environment. The whole
process group is killed when the program ends or overruns; only a CPU-time limit decides "timed out",
plus a generous wall-clock backstop for programs that sleep.
"""

import builtins
import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time

# Modules most benchmark programs import, loaded once here so that each fork starts warm.
PRELOAD = (
    "math", "re", "collections", "itertools", "functools", "string", "heapq", "bisect", "typing", "hashlib",
    "random", "statistics", "fractions", "decimal", "datetime", "copy", "operator", "json", "traceback",
    "array", "numbers", "unicodedata", "textwrap", "dataclasses", "enum", "abc", "struct", "io", "sys",
)  # fmt: skip
NOBODY = 65534
CRASH_SIGNALS = {signal.SIGSEGV: "SIGSEGV", signal.SIGBUS: "SIGBUS", signal.SIGABRT: "SIGABRT",
                 signal.SIGILL: "SIGILL", signal.SIGFPE: "SIGFPE"}  # fmt: skip


def _limit(kind: int, soft: int, hard: int | None = None) -> None:
    try:
        resource.setrlimit(kind, (soft, soft if hard is None else hard))
    except (ValueError, OSError):
        pass


def _child(job: dict, workdir: str, status_w: int) -> None:
    """Runs in the forked child; never returns."""
    code = 70
    try:
        os.setsid()
        os.chdir(workdir)
        out = os.open(".output", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.closerange(3, status_w)
        os.closerange(status_w + 1, 4096)
        if os.getuid() == 0:
            # Root ignores RLIMIT_NPROC: drop to nobody so that the process cap (fork bombs) holds.
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        cpu = int(job["cpu_seconds"])
        _limit(resource.RLIMIT_CPU, cpu, cpu + 1)
        _limit(resource.RLIMIT_AS, int(job["memory_bytes"]))
        _limit(resource.RLIMIT_NPROC, int(job["max_processes"]))
        _limit(resource.RLIMIT_FSIZE, int(job["max_file_bytes"]))
        _limit(resource.RLIMIT_NOFILE, 256)
        _limit(resource.RLIMIT_CORE, 0)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"})
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        program = compile(job["program"], "<sample>", "exec")
        try:
            exec(program, {"__name__": "__main__", "__builtins__": builtins})
        except MemoryError:
            os.write(status_w, b"memory")
            code = 3
        except SystemExit as exc:
            os.write(status_w, f"error:SystemExit({exc.code!r}) before the tests finished".encode())
            code = 2
        except BaseException as exc:  # the program's own failure: assertion, exception, ...
            import traceback

            traceback.print_exc()
            os.write(status_w, f"error:{type(exc).__name__}: {exc}"[:2000].encode("utf-8", "replace"))
            code = 1
        else:
            os.write(status_w, b"ok")
            code = 0
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException as exc:  # the sandbox could not be set up for this program
        try:
            os.write(status_w, f"setup:{type(exc).__name__}: {exc}".encode("utf-8", "replace"))
        except OSError:
            pass
    finally:
        os._exit(code)


def _tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_job(job: dict, base_tmp: str) -> dict:
    workdir = tempfile.mkdtemp(prefix="sample-", dir=base_tmp)
    if os.getuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
    status_r, status_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        _child(job, workdir, status_w)
    os.close(status_w)
    wall_limit = float(job["wall_seconds"])
    wall_timeout = False
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    while True:
        finished, status, usage = os.wait4(pid, os.WNOHANG)
        if finished:
            break
        remaining = wall_limit - (time.monotonic() - started)
        if remaining <= 0:
            wall_timeout = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            finished, status, usage = os.wait4(pid, 0)
            break
        if pidfd is not None:
            select.select([pidfd], [], [], remaining)
        else:
            time.sleep(min(0.005, remaining))
    if pidfd is not None:
        os.close(pidfd)
    _kill_group(pid)  # anything the program left behind in its group
    wall = time.monotonic() - started
    cpu = usage.ru_utime + usage.ru_stime
    with os.fdopen(status_r, "rb") as fh:
        verdict = fh.read().decode("utf-8", "replace")
    output = _tail(os.path.join(workdir, ".output"))
    shutil.rmtree(workdir, ignore_errors=True)

    result = {"id": job["id"], "cpu_seconds": round(cpu, 4), "wall_seconds": round(wall, 4), "output": output}
    term_signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    if verdict == "ok" and not wall_timeout:
        result.update(status="passed", detail="")
    elif wall_timeout:
        result.update(status="timed_out", detail=f"no result after {wall_limit:.0f} s wall clock (sleeping?)")
    elif term_signal == signal.SIGXCPU or (
        # SIGXCPU comes only from the CPU limit; SIGKILL from its hard limit one second later. The kernel's
        # CPU accounting can read slightly under the limit at that moment, hence the 90 %.
        term_signal == signal.SIGKILL and cpu >= 0.9 * float(job["cpu_seconds"])
    ):
        result.update(status="timed_out", detail=f"used its {job['cpu_seconds']} s of CPU time")
    elif verdict == "memory" or "MemoryError" in verdict:
        result.update(status="memory_exceeded", detail=f"over {int(job['memory_bytes']) >> 20} MiB")
    elif term_signal == signal.SIGXFSZ:
        result.update(status="output_exceeded", detail=f"wrote over {int(job['max_file_bytes'])} bytes")
    elif verdict.startswith("error:"):
        result.update(status="failed", detail=verdict[len("error:") :])
    elif verdict.startswith("setup:"):
        result.update(status="crashed", detail="sandbox setup failed: " + verdict[len("setup:") :])
    elif term_signal is not None:
        name = CRASH_SIGNALS.get(signal.Signals(term_signal), signal.Signals(term_signal).name)
        result.update(status="crashed", detail=f"killed by {name}")
    else:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        result.update(status="crashed", detail=f"exited with status {code} without a result")
    return result


def _kill_group(pgid: int) -> None:
    """Kill the whole process group and wait until it is gone, so the next program starts clean."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.001)


def main() -> None:
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    base_tmp = tempfile.mkdtemp(prefix="codelupe-sandbox-")
    os.chmod(base_tmp, 0o711)
    # Results go out on a private copy of stdout; the children never see it.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    proto.write(json.dumps({"ready": True, "pid": os.getpid(), "uid": os.getuid()}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        proto.write(json.dumps(run_job(job, base_tmp)) + "\n")
    shutil.rmtree(base_tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
