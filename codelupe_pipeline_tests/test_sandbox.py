"""The sandbox executes HumanEval's canonical solutions as passing and wrong ones as failing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from codelupe_pipeline.evaluate.benchmark import score
from codelupe_pipeline.evaluate.humaneval import HUMANEVAL_SHA256, file_sha256, humaneval_path, load_humaneval
from codelupe_pipeline.evaluate.sandbox import Isolation, Sandbox, SandboxLimits, detect_isolation
from codelupe_pipeline.settings import CHECKOUT_DIR


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, limits=SandboxLimits(cpu_seconds=3, wall_seconds=10)) as box:
        yield box


def test_humaneval_file_is_the_published_one() -> None:
    assert file_sha256(humaneval_path()) == HUMANEVAL_SHA256
    tasks = load_humaneval()
    assert len(tasks) == 164 and tasks[0].task_id == "HumanEval/0"


def test_canonical_solutions_pass_and_wrong_ones_fail(sandbox: Sandbox) -> None:
    tasks = load_humaneval()[:8]
    good = score("humaneval", tasks, [[t.canonical_solution] for t in tasks], sandbox)
    assert good.pass_at_1 == 1.0
    assert all(t.passed == 1 for t in good.tasks)

    wrong = score("humaneval", tasks, [["    return None\n"] for _ in tasks], sandbox)
    assert wrong.pass_at_1 == 0.0
    assert wrong.status_counts == {"failed": len(tasks)}
    assert all(t.first_detail.startswith("failed: ") for t in wrong.tasks)


def test_isolation_is_reported(sandbox: Sandbox) -> None:
    assert sandbox.isolation == detect_isolation()
    if sandbox.isolation != Isolation.BUBBLEWRAP:
        assert sandbox.warning and "bubblewrap" in sandbox.warning
    else:
        assert sandbox.warning is None


def test_limits_hold(sandbox: Sandbox) -> None:
    loop = sandbox.run_one("while True:\n    try:\n        pass\n    except BaseException:\n        pass\n")
    assert loop.status == "timed_out" and loop.cpu_seconds >= 2.5, loop
    memory = sandbox.run_one("x = bytearray(50 * 1024 ** 3)\n")
    assert memory.status == "memory_exceeded"
    exited = sandbox.run_one("import sys\nsys.exit(0)\nassert False\n")
    assert exited.status == "failed"  # leaving before the tests ran is not a pass


def test_works_when_the_interpreter_lives_under_tmp(tmp_path: Path) -> None:
    """bubblewrap hides /tmp and $HOME; a virtual environment there must stay reachable (regression)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    script = (
        f"import sys; sys.path.insert(0, {str(CHECKOUT_DIR)!r})\n"
        "from codelupe_pipeline.evaluate.sandbox import Sandbox\n"
        "with Sandbox(workers=1) as box:\n"
        "    print(box.run_one('print(6 * 7)').output.strip())\n"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("42")
