"""The sandbox: canonical solutions pass, wrong ones fail, hostile programs end within their limits while the
host stays intact - under bubblewrap, in the degraded modes, and as an unprivileged user."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codelupe_pipeline.evaluate.benchmarks import HUMANEVAL_SHA256, humaneval_path, load_benchmarks
from codelupe_pipeline.evaluate.evaluation import execute_completions
from codelupe_pipeline.evaluate.sandbox import (
    PROGRAM_UIDS,
    Isolation,
    Outcome,
    Sandbox,
    SandboxLimits,
    available_cpus,
    detect_isolation,
)
from codelupe_pipeline.evaluate.tasks import file_sha256
from codelupe_pipeline.settings import CHECKOUT_DIR

LIMITS = SandboxLimits(cpu_seconds=1, memory_bytes=512 << 20, max_processes=12, wall_seconds=8)
SECRET = "codelupe-test-secret-4f1d"
SERVER_MARKER = "The sandbox's worker server"  # in every sandbox server's command line

# Each hostile program and the outcomes that mean "contained". {host_pid}, {sentinel}, {port} are filled in.
HOSTILE = {
    "infinite_loop_catching_everything": (
        "import signal\nsignal.signal(signal.SIGXCPU, lambda *a: None)\n"
        "while True:\n    try:\n        pass\n    except BaseException:\n        pass\n",
        {Outcome.TIMED_OUT},
    ),
    "fork_bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except BaseException:\n        pass\n",
        {Outcome.TIMED_OUT},
    ),
    "escaping_children": (  # children in a session of their own, outliving the program
        "import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(600)\n"
        "raise SystemExit(1)\n",
        {Outcome.FAILED},
    ),
    "allocate_50_gb": ("x = bytearray(50 * 1024 ** 3)\n", {Outcome.MEMORY_EXCEEDED}),
    "write_outside_the_temp_dir": (
        "import sys\nfor target in ({sentinel!r} + '/new.txt', sys.prefix + '/pwned.txt', '/etc/pwned'):\n"
        "    open(target, 'w').write('pwned')\n",
        {Outcome.FAILED},
    ),
    "delete_files": (
        "import os, shutil\nos.remove({sentinel!r} + '/keep.txt')\nshutil.rmtree({sentinel!r})\n",
        {Outcome.FAILED},
    ),
    "open_a_socket": (
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'pwned')\n",
        {Outcome.FAILED},
    ),
    "read_the_parents_environment": (
        "import glob, os\nfound = [repr(dict(os.environ))]\n"
        "for path in ['/proc/self/environ', '/proc/%d/environ' % os.getppid(), '/proc/{host_pid}/environ',"
        " *glob.glob('/proc/*/environ')]:\n"
        "    try:\n        found.append(open(path, 'rb').read().decode('utf-8', 'replace'))\n"
        "    except OSError:\n        pass\n"
        "print('\\n'.join(found))\nassert any({secret!r} in text for text in found)\n",
        {Outcome.FAILED},
    ),
    "kill_the_parent": (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill({host_pid}, signal.SIGKILL)\n",
        {Outcome.FAILED},
    ),
    "ctypes_segfault": ("import ctypes\nctypes.string_at(0)\n", {Outcome.CRASHED}),
    "print_1_gb": ("import sys\nfor _ in range(16384):\n    sys.stdout.write('x' * 65536)\n", {Outcome.FAILED}),
}
# What each degraded mode cannot promise (documented in its warning): the outcome it may end with instead.
NOT_PROMISED = {
    Isolation.NONE: {"open_a_socket": Outcome.PASSED},
}
NOT_PROMISED_UNPRIVILEGED = {"write_outside_the_temp_dir", "delete_files", "kill_the_parent"}

# The host: a process with a secret in its environment and a listening socket that runs every hostile program
# and reports. It must survive to report, with the sentinel files untouched.
HOST_SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys
    from codelupe_pipeline.evaluate.sandbox import Sandbox, SandboxLimits
    spec = json.loads(sys.argv[1])
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    limits = SandboxLimits(**spec["limits"])
    results = {}
    with Sandbox(workers=2, limits=limits, isolation=spec["isolation"]) as box:
        names = list(spec["programs"])
        sources = [spec["programs"][n].format(host_pid=os.getpid(), port=port, sentinel=spec["sentinel"],
                                              secret=spec["secret"]) for n in names]
        for name, result in zip(names, box.run(sources)):
            results[name] = {"status": result.status.value, "detail": result.detail, "output": result.output,
                             "cpu": result.cpu_seconds, "wall": result.wall_seconds}
        results["_describe"] = box.describe()
    server.settimeout(0.2)
    try:
        server.accept()
        results["_socket_reached"] = True
    except OSError:
        results["_socket_reached"] = False
    print(json.dumps(results))
    """
)


@pytest.fixture
def sentinel() -> Iterator[Path]:
    """A directory the programs can see, with a file they must not touch. It lives in the interpreter's
    prefix: the sandbox always shows that (read-only), even when the checkout is under the hidden /tmp."""
    directory = Path(tempfile.mkdtemp(prefix=".sandbox-sentinel-", dir=sys.prefix))
    directory.chmod(0o755)
    (directory / "keep.txt").write_text("keep me")
    (directory / "keep.txt").chmod(0o644)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _sandbox_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
            cmdline = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        if PROGRAM_UIDS[0] <= uid < PROGRAM_UIDS[1] or SERVER_MARKER in cmdline:
            found.append(f"{entry.name} uid={uid}")
    return found


def run_host(isolation: str, sentinel: Path, python: str = sys.executable, user: list[str] | None = None) -> dict:
    """Run every hostile program from a host process; check the host side: it survived, sentinel intact,
    no process left behind."""
    spec = {
        "isolation": isolation,
        "programs": {name: source for name, (source, _) in HOSTILE.items()},
        "sentinel": str(sentinel),
        "secret": SECRET,
        "limits": {"cpu_seconds": 1, "memory_bytes": 512 << 20, "max_processes": 12, "wall_seconds": 8},
    }
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(CHECKOUT_DIR), "HOME": "/nonexistent", "SECRET_TOKEN": SECRET}
    before = set(_sandbox_processes())
    done = subprocess.run(
        [*(user or []), python, "-c", HOST_SCRIPT, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd="/",
    )
    assert done.returncode == 0, f"the host did not survive: {done.returncode}\n{done.stderr[-3000:]}"
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert (sentinel / "keep.txt").read_text() == "keep me"
    assert sorted(p.name for p in sentinel.iterdir()) == ["keep.txt"]
    assert not Path(sys.prefix, "pwned.txt").exists() and not Path("/etc/pwned").exists()
    deadline = time.monotonic() + 5
    while set(_sandbox_processes()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(_sandbox_processes()) - before, "processes left behind"
    return results


def assert_contained(results: dict, isolation: Isolation, unprivileged: bool = False) -> None:
    for name, (_, expected) in HOSTILE.items():
        result = results[name]
        allowed = set(expected)
        if name in NOT_PROMISED.get(isolation, {}):
            allowed.add(NOT_PROMISED[isolation][name])
        if unprivileged and isolation != Isolation.BUBBLEWRAP and name in NOT_PROMISED_UNPRIVILEGED:
            continue
        assert Outcome(result["status"]) in allowed, f"{name}: {result['status']} ({result['detail']})"
        assert result["wall"] < 12, f"{name} ran {result['wall']} s"
        assert SECRET not in result["output"], f"{name} saw the host's secret"
    loop = results["infinite_loop_catching_everything"]
    assert 0.9 <= loop["cpu"] <= 3.0  # CPU time decides, the hard limit (+1 s) or the tree check ends it
    assert "memory" in results["allocate_50_gb"]["detail"]
    assert "output limit" in results["print_1_gb"]["detail"]
    assert "SIGSEGV" in results["ctypes_segfault"]["detail"]
    if isolation != Isolation.NONE:
        assert not results["_socket_reached"]


@pytest.mark.skipif(detect_isolation() != Isolation.BUBBLEWRAP, reason="bubblewrap is not usable here")
def test_hostile_programs_are_contained_under_bubblewrap(sentinel: Path) -> None:
    results = run_host("bubblewrap", sentinel)
    assert results["_describe"]["isolation"] == "bubblewrap" and results["_describe"]["warning"] == ""
    assert_contained(results, Isolation.BUBBLEWRAP)
    assert "Read-only file system" in results["write_outside_the_temp_dir"]["detail"]


@pytest.mark.parametrize("isolation", [Isolation.UNSHARE, Isolation.NONE])
def test_degraded_modes_still_hold_their_limits_and_say_so(isolation: Isolation, sentinel: Path) -> None:
    if isolation == Isolation.UNSHARE and detect_isolation() == Isolation.NONE:
        pytest.skip("unshare is not usable here")
    if isolation == Isolation.NONE and os.getuid() != 0:
        pytest.skip("without isolation an unprivileged program can kill its host: nothing to contain")
    results = run_host(isolation.value, sentinel)
    warning = results["_describe"]["warning"]
    assert ("DEGRADED" if isolation == Isolation.UNSHARE else "NOT ISOLATED") in warning
    assert_contained(results, isolation)


@pytest.mark.slow
@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_unprivileged_user_gets_the_same_protection(sentinel: Path) -> None:
    """bubblewrap in an unprivileged user namespace: the programs keep the user's uid, so the server must be
    PID 1 (unkillable from inside) and the namespace must hold the rest. ~10 s."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    readable = python and subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", "import enum; enum.StrEnum"],
        capture_output=True,
        cwd="/",
    )
    if not readable or readable.returncode != 0 or not os.access(CHECKOUT_DIR, os.R_OK):
        pytest.skip("no Python >= 3.11 that an unprivileged user can run")
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*user, "bwrap", "--unshare-user", "--ro-bind", "/", "/", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unprivileged user namespaces are disabled here")
    results = run_host("bubblewrap", sentinel, python=str(python), user=user)
    assert_contained(results, Isolation.BUBBLEWRAP, unprivileged=True)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, limits=SandboxLimits(cpu_seconds=3, wall_seconds=10)) as box:
        yield box


def test_humaneval_file_is_the_published_one() -> None:
    assert file_sha256(humaneval_path()) == HUMANEVAL_SHA256
    (humaneval,) = load_benchmarks(None)
    assert len(humaneval.tasks) == 164 and humaneval.tasks[0].task_id == "HumanEval/0"


def test_every_canonical_solution_passes_and_corrupted_ones_fail(sandbox: Sandbox) -> None:
    (humaneval,) = load_benchmarks(None)
    tasks = humaneval.tasks
    good = execute_completions(sandbox, "humaneval", tasks, [(i, t.canonical_solution) for i, t in enumerate(tasks)])
    assert good.metrics == {"humaneval_pass_at_1": 1.0}
    assert [r.task_id for r in good.rows if r.passed != 1] == []

    # Corrupted: every canonical solution returning None before it computes anything.
    bad = execute_completions(
        sandbox, "humaneval", tasks, [(i, f"    return None\n{t.canonical_solution}") for i, t in enumerate(tasks)]
    )
    assert bad.metrics == {"humaneval_pass_at_1": 0.0}
    assert bad.status_counts == {"failed": 164}
    assert all(r.first_failure.startswith("failed: ") for r in bad.rows)


def test_a_result_says_what_happened(sandbox: Sandbox) -> None:
    failed = sandbox.run_one("def f(x):\n    return x + 1\n\nassert f(1) == 3, 'off by one'\n")
    assert failed.status == Outcome.FAILED
    assert failed.detail == "AssertionError: off by one at line 4: assert f(1) == 3, 'off by one'"
    syntax = sandbox.run_one("def f(:\n")
    assert syntax.status == Outcome.FAILED and syntax.detail.startswith("SyntaxError")
    exited = sandbox.run_one("import sys\nsys.exit(0)\nassert False\n")
    assert exited.status == Outcome.FAILED  # leaving before the tests ran is not a pass
    printed = sandbox.run_one("print('hello from the sandbox')\n")
    assert printed.passed and printed.output == "hello from the sandbox\n"


def test_cpu_time_decides_not_wall_clock() -> None:
    with Sandbox(workers=2, limits=SandboxLimits(cpu_seconds=1, wall_seconds=6)) as box:
        sleeper, spinner = box.run(["import time\ntime.sleep(1.5)\n", "while True:\n    pass\n"])
    assert sleeper.passed and sleeper.wall_seconds >= 1.5 and sleeper.cpu_seconds < 0.5
    assert spinner.status == Outcome.TIMED_OUT and 0.9 <= spinner.cpu_seconds < 2.5


def test_isolation_is_reported_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="codelupe_pipeline.evaluate.sandbox"),
        Sandbox(isolation="none") as box,
    ):
        assert box.run_one("print(1)").passed
        assert box.describe()["isolation"] == "none"
    assert any("SANDBOX NOT ISOLATED" in r.message for r in caplog.records)
    assert box.warning and "bubblewrap" in box.warning


def test_workers_are_sized_to_the_machine() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    with Sandbox() as box:
        assert box.workers == available_cpus()


@pytest.mark.skipif(os.getuid() != 0, reason="without a PID namespace, only a uid switch protects the worker")
def test_even_without_isolation_a_program_cannot_kill_its_worker() -> None:
    with Sandbox(workers=1, isolation="none") as box:
        # The server is root and each program runs as a uid of its own: the same worker answers next.
        first = box.run_one("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
        assert first.status == Outcome.FAILED and "not permitted" in first.detail
        assert box.run_one("print(2)").passed


def test_works_when_the_interpreter_lives_under_tmp(tmp_path: Path) -> None:
    """bubblewrap hides /tmp and $HOME; a virtual environment there must stay reachable (regression)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    script = (
        f"import sys; sys.path.insert(0, {str(CHECKOUT_DIR)!r})\n"
        "from codelupe_pipeline.evaluate.sandbox import Sandbox\n"
        "with Sandbox(workers=1) as box:\n"
        "    print(box.run_one('import textwrap; print(6 * 7)').output.strip())\n"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("42")


def test_a_listening_socket_on_the_host_is_unreachable(sandbox: Sandbox) -> None:
    if sandbox.isolation == Isolation.NONE:
        pytest.skip("no network namespace without isolation")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = sandbox.run_one(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
    assert result.status == Outcome.FAILED and ("unreachable" in result.detail or "refused" in result.detail)
