"""Benchmarks are configuration: a file in a task format, executed in its language's toolchain or skipped."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from codelupe_pipeline.evaluate.benchmarks import (
    HUMANEVAL_SHA256,
    benchmark_texts,
    humaneval_path,
    load_benchmark_specs,
    load_benchmarks,
)
from codelupe_pipeline.evaluate.evaluation import execute_completions
from codelupe_pipeline.evaluate.languages import ToolchainMissing, toolchain
from codelupe_pipeline.evaluate.sandbox import Sandbox, SandboxLimits
from codelupe_pipeline.evaluate.tasks import BenchmarkFileError, load_tasks

ADD_PY = {
    "task_id": "local/0",
    "prompt": 'def add(a, b):\n    """Sum of a and b."""\n',
    "entry_point": "add",
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n",
}
EVALPLUS = {  # EvalPlus's own release format: inputs, no test
    "task_id": "HumanEval/2",
    "prompt": "def truncate_number(number: float) -> float:\n",
    "entry_point": "truncate_number",
    "canonical_solution": "    return number % 1.0\n",
    "base_input": [[3.5], [1.33]],
    "plus_input": [[123.456], [0.0]],
    "atol": 1e-6,
}
MBPP = {
    "task_id": 2,
    "text": "Write a function to find the shared elements from the given two lists.",
    "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n",
    "test_list": [
        "assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))",
        "assert set(similar_elements((1, 2, 3, 4), (5, 4, 3, 7))) == set((3, 4))",
    ],
    "test_setup_code": "",
}
JS = {
    "name": "HumanEval_53_add",
    "language": "js",
    "prompt": "//Add two numbers x and y\nfunction add(x, y){\n",
    "tests": "}\n\nconst assert = require('node:assert');\n\nfunction test() {\n  let candidate = add;\n"
    "  assert.deepEqual(candidate(0, 1),1);\n  assert.deepEqual(candidate(5, 7),12);\n}\n\ntest();",
    "stop_tokens": ["\nfunction ", "\n/*", "\n//", "\nconsole.log"],
}
RUST = {
    "name": "HumanEval_53_add",
    "language": "rs",
    "prompt": "/// Add two numbers x and y\nfn add(x: isize, y: isize) -> isize {\n",
    "tests": "}\n\nfn main() {\n    let candidate = add;\n    assert_eq!(candidate(0, 1), 1);\n"
    "    assert_eq!(candidate(5, 7), 12);\n}\n",
    "stop_tokens": ["\n}"],
}
COBOL = {**JS, "language": "cobol"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "benchmarks.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    readable = []
    for language in ("javascript", "rust"):
        try:
            readable += toolchain(language).readable_paths
        except ToolchainMissing:
            pass
    with Sandbox(workers=2, limits=SandboxLimits(cpu_seconds=5), readable_paths=readable) as box:
        yield box


def test_without_a_file_humaneval_alone(tmp_path: Path) -> None:
    (spec,) = load_benchmark_specs(tmp_path / "missing.yaml")
    assert spec.name == "humaneval" and spec.sha256 == HUMANEVAL_SHA256


def test_config_errors_name_the_file_and_entry(tmp_path: Path) -> None:
    cases = {
        "benchmarks: [": "not valid YAML",
        "benchmarks: []": "non-empty `benchmarks:` list",
        "benchmarks:\n  - path: x.jsonl": "needs a `name`",
        "benchmarks:\n  - name: Has-Dash\n    path: x.jsonl": "lowercase letters",
        "benchmarks:\n  - name: your_stack\n    path: x.jsonl": "reserved",
        "benchmarks:\n  - name: mbpp": "needs a `path`",
        "benchmarks:\n  - name: a\n    path: x\n  - name: a\n    path: y": "listed twice",
        "benchmarks:\n  - name: a\n    path: x\n    colour: red": "unknown key(s) colour",
        "benchmarks:\n  - name: a\n    path: x\n    format: csv": "unknown format 'csv'",
    }
    for text, message in cases.items():
        path = write_config(tmp_path, text)
        with pytest.raises(BenchmarkFileError, match=re.escape(message)) as raised:
            load_benchmark_specs(path)
        assert str(path) in str(raised.value)


def test_task_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ADD_PY) + "\n{not json\n")
    with pytest.raises(BenchmarkFileError, match=r"bad.jsonl:2: not valid JSON"):
        load_tasks(bad)
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"task_id": "x", "prompt": "p", "entry_point": "f"}])
    with pytest.raises(BenchmarkFileError, match="unrecognised task format"):
        load_tasks(missing)
    with pytest.raises(BenchmarkFileError, match="missing field"):
        load_tasks(missing, "humaneval")
    duplicate = write_jsonl(tmp_path / "dup.jsonl", [ADD_PY, ADD_PY])
    with pytest.raises(BenchmarkFileError, match="duplicate task ids"):
        load_tasks(duplicate)


def test_a_changed_file_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "HumanEval.jsonl.gz"
    shutil.copy(humaneval_path(), copy)
    config = write_config(
        tmp_path, f"benchmarks:\n  - name: he_copy\n    path: {copy}\n    sha256: {HUMANEVAL_SHA256}\n"
    )
    (copy_bench,) = load_benchmarks(config)
    assert len(copy_bench.tasks) == 164 and copy_bench.version == HUMANEVAL_SHA256
    with gzip.open(copy, "at") as fh:
        fh.write(json.dumps({**ADD_PY, "task_id": "HumanEval/999"}) + "\n")
    (refused,) = load_benchmarks(config)  # kept, empty, with the reason: the other benchmarks still run
    assert refused.tasks == [] and refused.skip_reason and "expected " + HUMANEVAL_SHA256 in refused.skip_reason
    with pytest.raises(BenchmarkFileError, match="expected " + HUMANEVAL_SHA256):
        benchmark_texts(config)  # decontamination cannot be promised against a file that changed


def test_formats_are_detected_and_their_canonical_solutions_pass(tmp_path: Path, sandbox: Sandbox) -> None:
    write_jsonl(tmp_path / "local.jsonl", [ADD_PY])
    write_jsonl(tmp_path / "plus.jsonl", [EVALPLUS])
    write_jsonl(tmp_path / "mbpp.jsonl", [MBPP])
    config = write_config(
        tmp_path,
        "benchmarks:\n  - name: humaneval\n  - name: local\n    path: local.jsonl\n"
        "  - name: plus\n    path: plus.jsonl\n  - name: mbpp\n    path: mbpp.jsonl\n",
    )
    benchmarks = {b.name: b for b in load_benchmarks(config)}
    assert {n: b.format for n, b in benchmarks.items()} == {
        "humaneval": "humaneval", "local": "humaneval", "plus": "evalplus", "mbpp": "mbpp",
    }  # fmt: skip
    assert benchmarks["mbpp"].tasks[0].prompt.startswith('"""\nWrite a function to find the shared elements')
    for name in ("local", "plus", "mbpp"):
        tasks = benchmarks[name].tasks
        good = execute_completions(sandbox, name, tasks, [(0, tasks[0].canonical_solution or "")])
        assert good.metrics == {f"{name}_pass_at_1": 1.0}, good.rows[0].first_failure
    wrong = {
        "local": "    return a - b\n",
        "plus": "    return round(number % 1.0, 1)\n",
        "mbpp": "def similar_elements(a, b):\n    return ()\n",
    }
    for name, completion in wrong.items():
        bad = execute_completions(sandbox, name, benchmarks[name].tasks, [(0, completion)])
        assert bad.metrics == {f"{name}_pass_at_1": 0.0}
    # EvalPlus's differential test says which input failed, and tolerates float noise within atol.
    plus = benchmarks["plus"].tasks
    assert "input [1.33]" in execute_completions(sandbox, "p", plus, [(0, wrong["plus"])]).rows[0].first_failure
    noisy = "    return number % 1.0 + 1e-9\n"
    assert execute_completions(sandbox, "p", plus, [(0, noisy)]).metrics == {"p_pass_at_1": 1.0}


@pytest.mark.parametrize(
    ("row", "language", "right", "wrong"),
    [(JS, "javascript", "  return x + y;\n", "  return x - y;\n"), (RUST, "rust", "    x + y\n", "    x - y\n")],
)
def test_multipl_e_tasks_run_in_their_toolchain(
    tmp_path: Path, sandbox: Sandbox, row: dict, language: str, right: str, wrong: str
) -> None:
    try:
        toolchain(language)
    except ToolchainMissing as exc:
        pytest.skip(str(exc))
    write_jsonl(tmp_path / "tasks.jsonl", [row])
    config = write_config(tmp_path, "benchmarks:\n  - name: multi\n    path: tasks.jsonl\n")
    (benchmark,) = load_benchmarks(config)
    assert benchmark.format == "multipl-e" and benchmark.languages == {language: 1}
    task = benchmark.tasks[0]
    assert task.stop_sequences == tuple(row["stop_tokens"])
    assert execute_completions(sandbox, "multi", [task], [(0, right)]).metrics == {"multi_pass_at_1": 1.0}
    bad = execute_completions(sandbox, "multi", [task], [(0, wrong)])
    assert bad.metrics == {"multi_pass_at_1": 0.0} and bad.rows[0].first_failure.startswith("failed: exit status")
    broken = execute_completions(sandbox, "multi", [task], [(0, "  return x +\n")])
    assert broken.rows[0].first_failure.startswith("failed:")


def test_a_language_without_toolchain_is_skipped_with_the_reason(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "cobol.jsonl", [COBOL])
    config = write_config(tmp_path, "benchmarks:\n  - name: cobol\n    path: cobol.jsonl\n")
    (benchmark,) = load_benchmarks(config)
    assert benchmark.runnable_tasks == []
    assert (
        benchmark.skip_reason
        == "cobol: no runner for language 'cobol' (supported: python, javascript, typescript, rust, go, dart)"
    )
    # Still text to decontaminate against: configured is configured, runnable here or not.
    texts = benchmark_texts(config)
    assert [(t.benchmark, t.task_id) for t in texts] == [("cobol", "HumanEval_53_add")]


def test_benchmark_texts_cover_every_configured_benchmark(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "mbpp.jsonl", [MBPP])
    config = write_config(tmp_path, "benchmarks:\n  - name: humaneval\n  - name: mbpp\n    path: mbpp.jsonl\n")
    texts = benchmark_texts(config)
    assert len(texts) == 165
    first = texts[0]
    assert first.benchmark == "humaneval" and first.prompt.startswith("from typing import List")
    assert "for idx, elem in enumerate(numbers)" in first.solution
    assert texts[-1].solution == MBPP["code"]
    assert len(benchmark_texts()) == 164  # no file: HumanEval


def test_only_named_benchmarks(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "mbpp.jsonl", [MBPP])
    config = write_config(tmp_path, "benchmarks:\n  - name: humaneval\n  - name: mbpp\n    path: mbpp.jsonl\n")
    assert [b.name for b in load_benchmarks(config, ["mbpp"])] == ["mbpp"]
    with pytest.raises(BenchmarkFileError, match="unknown benchmark"):
        load_benchmarks(config, ["nope"])
