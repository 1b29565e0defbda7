"""The sandbox's worker server. Runs INSIDE the isolation boundary (bubblewrap / unshare), standard library only.

It reads one JSON job per line on stdin and answers one JSON result per line on stdout. Each program runs in
a fork of this small, clean process (far cheaper than a fresh interpreter):

- in its own session and process group, in a fresh temporary directory, with an empty environment;
- as a user id of its own (when the server is real root: a uid that owns nothing on the host, one per worker,
  so that workers cannot signal each other and the process cap is per worker), with no way to gain privileges
  (no_new_privs; capabilities dropped inside a user namespace);
- under rlimits on CPU time, address space, processes, file size (which also caps its output) and open files;
- a Python program is exec()'d in the forked child; a compiled one (Rust, Go, ...) is built by a grandchild
  under its own, larger limits, then exec'd in place of the child.

CPU time decides "timed out": the kernel's RLIMIT_CPU per process, plus a check of the CPU used by the whole
process tree for programs that fork. A generous wall-clock backstop only catches programs that sleep. When a
program ends, everything it started goes with it: as PID 1 of its own PID namespace the server kills every
other process there; without a namespace it is a child subreaper and kills its descendants.
"""

import builtins
import ctypes
import json
import math
import os
import re
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback

# Modules most benchmark programs import, loaded once here so that each fork starts warm.
PRELOAD = (
    "math", "re", "collections", "itertools", "functools", "string", "heapq", "bisect", "typing", "hashlib",
    "random", "statistics", "fractions", "decimal", "datetime", "copy", "operator", "json", "array", "numbers",
    "unicodedata", "textwrap", "dataclasses", "enum", "abc", "struct", "io",
)  # fmt: skip
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE, signal.SIGSYS}
OOM_MARKERS = ("memory allocation of", "out of memory", "MemoryError", "std::bad_alloc", "Cannot allocate memory")
# Modules whose import does something (opens a browser, a window): never imported on a program's behalf.
IMPORT_SIDE_EFFECTS = frozenset({"antigravity", "this", "turtle", "turtledemo", "tkinter", "idlelib", "webbrowser"})
FAILURE_LINES = (  # what says why a program failed, most telling first
    re.compile(r"panicked at|\w*Error\b|error(\[E\d+\])?:|\bFAIL\b|Exception"),
    re.compile(r"assert|fail", re.IGNORECASE),
)
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_SET_SECUREBITS = 28
SECURE_NOROOT_ALL = 0x3F  # NOROOT, NO_SETUID_FIXUP, KEEP_CAPS (locked): uid 0 gains nothing on exec
CLK_TCK = os.sysconf("SC_CLK_TCK")
TREE_CHECK_AFTER = 0.25  # seconds: fast programs (nearly all) never pay for the process-tree CPU check
TREE_CHECK_EVERY = 0.2

LIBC = ctypes.CDLL(None, use_errno=True)
IS_PID1 = os.getpid() == 1  # PID 1 of our own PID namespace (bubblewrap --as-pid-1, unshare --fork)
PREIMPORT = False  # set in main(): the program uid cannot read the Python installation (see the host side)


def _real_root() -> bool:
    """uid 0 of the initial user namespace (not root inside a user namespace, which cannot switch uid)."""
    try:
        with open("/proc/self/uid_map") as fh:
            return os.getuid() == 0 and fh.read().split()[:3] == ["0", "0", "4294967295"]
    except OSError:
        return False


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities() -> None:
    """Root inside a user namespace (unshare --map-root-user): keep uid 0 but lose every capability for good."""
    LIBC.prctl(PR_SET_SECUREBITS, SECURE_NOROOT_ALL, 0, 0, 0)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if LIBC.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _import_as_server(program: str) -> None:
    """Import, before dropping privileges, the modules a program names: for a program uid that cannot read a
    Python installation that lives in a private directory (degraded sandbox modes, as root). Only modules of
    the installation itself can be found (-I: no working directory on sys.path)."""
    import ast

    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    for name in sorted(names):
        if name.split(".")[0] in IMPORT_SIDE_EFFECTS:
            continue
        try:
            __import__(name)
        except Exception:  # the program will meet the same error itself
            pass


def _limit(kind: int, soft: int, hard: int | None = None) -> None:
    try:
        resource.setrlimit(kind, (soft, soft if hard is None else hard))
    except (ValueError, OSError):
        pass


def _apply_limits(limits: dict) -> None:
    cpu = max(1, math.ceil(float(limits["cpu_seconds"])))
    _limit(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU, then SIGKILL a second later if it is caught
    _limit(resource.RLIMIT_AS, int(limits["memory_bytes"]))
    _limit(resource.RLIMIT_NPROC, int(limits["max_processes"]))
    _limit(resource.RLIMIT_FSIZE, int(limits["max_file_bytes"]))
    _limit(resource.RLIMIT_NOFILE, 256)
    _limit(resource.RLIMIT_CORE, 0)


def _enter_program(job: dict, workdir: str, status_w: int, uid: int | None) -> dict[str, str]:
    """In the forked child: cut every tie to the server, become the program's user. Returns its environment."""
    if uid is not None and PREIMPORT and job["kind"] == "python":
        _import_as_server(job["program"])
    os.setsid()
    os.chdir(workdir)
    out = os.open(".output", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.closerange(3, status_w)
    os.closerange(status_w + 1, 65536)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif os.getuid() == 0:
        _drop_capabilities()
    LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # no setuid binary can raise it again
    os.umask(0o077)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGXCPU):
        signal.signal(sig, signal.SIG_DFL)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
    env.update(job.get("env") or {})
    os.environ.clear()
    os.environ.update(env)
    return env


def _failure_line(program: str, exc: BaseException) -> str:
    """`AssertionError at line 12: assert candidate(3) == 4` - the program's own line that failed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<sample>"]
    lineno = (frames[-1].lineno if frames else getattr(exc, "lineno", None)) or 0
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    lines = program.splitlines()
    if isinstance(exc, SyntaxError):
        message = f"SyntaxError: {exc.msg}"
    if 0 < lineno <= len(lines):
        message += f" at line {lineno}: {lines[lineno - 1].strip()[:200]}"
    return message[:1000]


def _run_python(job: dict, status_w: int) -> int:
    program = job["program"]
    _apply_limits(job["limits"])
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
    try:
        code = compile(program, "<sample>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": builtins})
    except MemoryError:
        os.write(status_w, b"memory")
        return 3
    except SystemExit as exc:
        os.write(status_w, f"error:SystemExit({exc.code!r}) before the tests finished".encode())
        return 2
    except BaseException as exc:  # the program's own failure: assertion, exception, syntax error, ...
        traceback.print_exc()
        os.write(status_w, ("error:" + _failure_line(program, exc)).encode("utf-8", "replace"))
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os.write(status_w, b"ok")
    return 0


def _run_command(job: dict, status_w: int, env: dict[str, str]) -> None:
    """Write the files, build under the build limits, then become the program under the run limits."""
    for name, content in job["files"].items():
        with open(name, "w", encoding="utf-8") as fh:
            fh.write(content)
    build = job.get("build")
    if build:
        pid = os.fork()
        if pid == 0:
            try:
                _apply_limits(job["build_limits"])
                os.execve(build[0], build, env)
            finally:
                os._exit(127)
        _, status, usage = os.wait4(pid, 0)
        cpu = usage.ru_utime + usage.ru_stime
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            os.write(status_w, f"build:{status}:{cpu:.4f}".encode())
            os._exit(1)
        os.write(status_w, f"built:{cpu:.4f};".encode())
    _apply_limits(job["limits"])
    os.execve(job["run"][0], job["run"], env)  # status_w is close-on-exec: EOF tells the server we got here


def _child(job: dict, workdir: str, status_w: int, uid: int | None) -> None:
    """Runs in the forked child; never returns."""
    code = 70
    try:
        env = _enter_program(job, workdir, status_w, uid)
        if job["kind"] == "python":
            code = _run_python(job, status_w)
        else:
            _run_command(job, status_w, env)
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


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _program_processes() -> dict[int, float]:
    """Every live process the programs started, with its CPU seconds: all of our PID namespace but us, or
    all of our descendants where there is no namespace."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(p)) is not None}
    me = os.getpid()
    if IS_PID1:
        return {pid: cpu for pid, (_, cpu) in stats.items() if pid != me}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, float] = {}
    todo = list(children.get(me, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = stats[pid][1]
            todo.extend(children.get(pid, []))
    return found


def _kill_group(pgid: int) -> None:
    """SIGKILL the program's process group and, as PID 1, everything else in our namespace."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if IS_PID1:
        try:
            os.kill(-1, signal.SIGKILL)  # everyone in our PID namespace but us
        except ProcessLookupError:
            pass


def _sweep(pgid: int) -> None:
    """Kill and reap everything the program left behind, including processes that left its group, so that the
    next program starts clean. Orphans come to us (PID 1 or subreaper): no child left means nothing left."""
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        _kill_group(pgid)
        if not IS_PID1:
            for pid in _program_processes():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.002)


def _verdict(job: dict, status: int, cpu: float, verdict: str, output: str, killed_for: str | None) -> dict:
    limits = job["limits"]
    term_signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    build_cpu = 0.0
    if verdict.startswith("built:"):
        head, _, verdict = verdict.partition(";")
        build_cpu = float(head[len("built:") :])
    run_cpu = max(0.0, cpu - build_cpu)
    last_line = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    memory_mib = int(limits["memory_bytes"]) >> 20

    if killed_for == "wall":
        return {"status": "timed_out", "detail": f"no result after {limits['wall_seconds']:.0f} s (sleeping?)"}
    if killed_for == "tree":
        return {"status": "timed_out", "detail": f"its processes used over {limits['cpu_seconds']} s of CPU time"}
    if verdict.startswith("build:"):
        _, build_status, build_seconds = verdict.split(":", 2)
        raw = int(build_status)
        if os.WIFSIGNALED(raw) and os.WTERMSIG(raw) in (signal.SIGXCPU, signal.SIGKILL):
            return {"status": "timed_out", "detail": f"compilation used {build_seconds} s of CPU time"}
        if any(marker in output for marker in OOM_MARKERS):
            return {"status": "memory_exceeded", "detail": "compilation ran out of memory"}
        return {"status": "failed", "detail": f"compile error: {_failure_detail(output)}"}
    if verdict.startswith("setup:"):
        return {"status": "crashed", "detail": "sandbox setup failed: " + verdict[6:]}
    # SIGXCPU comes only from the CPU limit, SIGKILL from its hard limit a second later (the kernel's accounting
    # can read slightly under the limit at that moment).
    if term_signal == signal.SIGXCPU or (
        term_signal == signal.SIGKILL and run_cpu >= 0.9 * float(limits["cpu_seconds"])
    ):
        return {"status": "timed_out", "detail": f"used its {limits['cpu_seconds']} s of CPU time"}
    if term_signal == signal.SIGXFSZ:
        return {"status": "failed", "detail": f"wrote more than {int(limits['max_file_bytes'])} bytes (output limit)"}
    if job["kind"] == "python":
        if verdict == "ok":
            return {"status": "passed", "detail": ""}
        if verdict == "memory" or verdict.startswith("error:MemoryError"):
            return {"status": "memory_exceeded", "detail": f"over its {memory_mib} MiB memory limit"}
        if verdict.startswith("error:"):
            return {"status": "failed", "detail": verdict[6:]}
    elif os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == 0:
            return {"status": "passed", "detail": ""}
        if any(marker in output for marker in OOM_MARKERS):
            return {"status": "memory_exceeded", "detail": f"over its {memory_mib} MiB memory limit"}
        return {"status": "failed", "detail": f"exit status {code}: {_failure_detail(output)}"}
    if term_signal is not None:
        if any(marker in output for marker in OOM_MARKERS):
            return {"status": "memory_exceeded", "detail": f"over its {memory_mib} MiB memory limit"}
        name = signal.Signals(term_signal).name
        kind = "crashed" if term_signal in CRASH_SIGNALS else "killed"
        return {"status": "crashed", "detail": f"{kind} by {name}" + (f": {last_line[:300]}" if last_line else "")}
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return {"status": "crashed", "detail": f"exited with status {code} before its tests finished"}


def _failure_detail(output: str) -> str:
    """The lines of a compiler's or runtime's output that say what failed (a panic, an assertion, an error)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pattern in FAILURE_LINES:
        for i, line in enumerate(lines):
            if pattern.search(line) and not line.startswith("at "):
                context = [n for n in lines[i + 1 : i + 4] if not n.startswith(("at ", "note:", "Node.js v"))]
                return " | ".join([line, *context])[:500]
    return lines[-1][:500] if lines else ""


def _wait(pid: int, job: dict, started: float) -> tuple[int, float, str | None]:
    """Wait for the program: (status, CPU seconds, why we killed it or None)."""
    cpu_limit = float(job["limits"]["cpu_seconds"]) + float(job.get("build_limits", {}).get("cpu_seconds", 0))
    wall_limit = float(job["limits"]["wall_seconds"]) + float(job.get("build_limits", {}).get("wall_seconds", 0))
    pidfd = os.pidfd_open(pid)
    killed_for = None
    try:
        while not select.select([pidfd], [], [], 0)[0]:
            elapsed = time.monotonic() - started
            if elapsed >= wall_limit:
                killed_for = "wall"
            elif elapsed >= TREE_CHECK_AFTER and sum(_program_processes().values()) > cpu_limit + 0.5:
                killed_for = "tree"  # several processes sharing out more CPU than the program may use
            if killed_for:
                break
            pause = TREE_CHECK_AFTER - elapsed if elapsed < TREE_CHECK_AFTER else TREE_CHECK_EVERY
            select.select([pidfd], [], [], max(0.0, min(pause, wall_limit - elapsed)))
    finally:
        os.close(pidfd)
    # Kill before reaping: while the program is a zombie, its process group id cannot be reused.
    _kill_group(pid)
    _, status, usage = os.wait4(pid, 0)
    return status, usage.ru_utime + usage.ru_stime, killed_for


def _remove(path: str) -> None:
    def retry(func, failed_path, _exc):  # a program may have taken its own permissions away
        os.chmod(os.path.dirname(failed_path), 0o700)
        func(failed_path)

    try:
        shutil.rmtree(path, onerror=retry)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def run_job(job: dict, base_tmp: str, uid: int | None) -> dict:
    workdir = tempfile.mkdtemp(prefix="sample-", dir=base_tmp)
    if uid is not None:
        os.chown(workdir, uid, uid)
    status_r, status_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        _child(job, workdir, status_w, uid)
    os.close(status_w)
    status, cpu, killed_for = _wait(pid, job, started)
    _sweep(pid)
    wall = time.monotonic() - started
    with os.fdopen(status_r, "rb") as fh:
        verdict = fh.read().decode("utf-8", "replace")
    output = _tail(os.path.join(workdir, ".output"))
    _remove(workdir)
    result = _verdict(job, status, cpu, verdict, output, killed_for)
    result.update(id=job["id"], cpu_seconds=round(cpu, 4), wall_seconds=round(wall, 4), output=output)
    return result


def main() -> None:
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    global PREIMPORT
    uid = config.get("program_uid") if _real_root() else None
    PREIMPORT = bool(config.get("preimport"))
    if not IS_PID1:
        LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of programs come to us, to be killed
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    base_tmp = tempfile.mkdtemp(prefix="codelupe-sandbox-")
    os.chmod(base_tmp, 0o711)
    # Results go out on a private copy of stdout; the children never see it.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    proto.write(
        json.dumps({"ready": True, "pid": os.getpid(), "uid": os.getuid(), "program_uid": uid, "preimport": PREIMPORT})
        + "\n"
    )
    for line in sys.stdin:
        if line.strip():
            proto.write(json.dumps(run_job(json.loads(line), base_tmp, uid)) + "\n")
    _remove(base_tmp)


if __name__ == "__main__":
    main()
