"""The held-out benchmark from the user's own code: functions found, bodies cut, completions scored."""

from __future__ import annotations

import random

import pytest

from codelupe_pipeline.evaluate.heldout import (
    HeldoutParams,
    build_heldout,
    edit_similarity,
    extract_tasks,
    levenshtein,
    score_completion,
)
from codelupe_pipeline.train.samples import SnapshotFile

PYTHON = '''import math


def area(radius):
    """Area of a circle."""
    squared = radius * radius
    return math.pi * squared


class Shape:
    def scaled(self, factor):
        width = self.width * factor
        height = self.height * factor
        return Shape(width, height)

    def one_liner(self): return 1
'''
RUST = """/// Adds.
pub fn add(a: i64, b: i64) -> i64 {
    let braces = "}{";
    let c = '}';
    a + b
}

impl Foo {
    pub(crate) fn name<'a>(&'a self) -> &'a str {
        if self.x { return "a"; }
        &self.name
    }
}
"""
GO = """package main

func Sum(xs []int) int {
\ttotal := 0
\tfor _, x := range xs { total += x }
\treturn total
}
"""
TYPESCRIPT = """export function greet(name: string): string {
  const s = `hi ${name}`;
  return s;
}
class A {
  private helper(x: number): number {
    if (x > 1) { return x; }
    return -x;
  }
}
"""
DART = """int triple(int x) {
  final y = x * 3;
  return y;
}
"""
FILES = [
    SnapshotFile("repo", "geometry.py", "python", PYTHON),
    SnapshotFile("repo", "src/lib.rs", "rust", RUST),
    SnapshotFile("repo", "sum.go", "go", GO),
    SnapshotFile("repo", "greet.ts", "typescript", TYPESCRIPT),
    SnapshotFile("repo", "triple.dart", "dart", DART),
    SnapshotFile("repo", "schema.sql", "sql", "CREATE TABLE t (x INT);\n"),
]


def tasks_by_id() -> dict:
    return {t.task_id: t for t in extract_tasks(FILES, HeldoutParams(max_per_file=10))}


def test_functions_of_every_language_become_tasks() -> None:
    tasks = tasks_by_id()
    assert tasks["repo/geometry.py:6"].target == "    squared = radius * radius\n    return math.pi * squared"
    assert tasks["repo/geometry.py:6"].prefix.endswith('    """Area of a circle."""\n')  # the docstring prompts
    assert tasks["repo/geometry.py:12"].target.splitlines()[-1] == "        return Shape(width, height)"
    assert tasks["repo/src/lib.rs:3"].target == "    let braces = \"}{\";\n    let c = '}';\n    a + b"
    assert tasks["repo/src/lib.rs:10"].target == '        if self.x { return "a"; }\n        &self.name'
    assert tasks["repo/sum.go:4"].target.endswith("\treturn total")
    assert tasks["repo/greet.ts:2"].target == "  const s = `hi ${name}`;\n  return s;"
    assert tasks["repo/greet.ts:7"].target == "    if (x > 1) { return x; }\n    return -x;"
    assert tasks["repo/triple.dart:2"].target == "  final y = x * 3;\n  return y;"
    assert len(tasks) == 8  # not the one-liner, nothing from SQL


def test_a_completion_is_cut_where_the_function_ends() -> None:
    tasks = tasks_by_id()
    python = tasks["repo/geometry.py:6"]
    body, exact, similarity = score_completion(python, python.target + "\n\n\ndef unrelated():\n    pass\n")
    assert (body, exact, similarity) == (python.target, 1.0, 1.0)
    rust = tasks["repo/src/lib.rs:3"]
    body, exact, _ = score_completion(rust, rust.target + "\n}\n\nfn more() {}\n")
    assert body == rust.target and exact == 1.0
    body, exact, similarity = score_completion(rust, "    a - b\n}\n")
    assert body == "    a - b" and exact == 0.0 and 0 < similarity < 1


def test_prompts_frame_files_as_training_does() -> None:
    task = tasks_by_id()["repo/sum.go:4"]
    assert task.prompt("<|file_sep|>") == "<|file_sep|>sum.go\npackage main\n\nfunc Sum(xs []int) int {\n"
    long_file = SnapshotFile("r", "long.py", "python", "x = 1\n" * 2000 + "def f(a):\n    b = a\n    return b\n")
    (task,) = extract_tasks([long_file], HeldoutParams(context_chars=100))
    assert len(task.prefix) <= 100 and task.prefix.endswith("def f(a):\n") and task.prefix.startswith("x = 1")


def test_selection_is_deterministic_and_bounded() -> None:
    first = [t.task_id for t in extract_tasks(FILES, HeldoutParams(max_tasks=3))]
    again = [t.task_id for t in extract_tasks(list(reversed(FILES)), HeldoutParams(max_tasks=3))]
    assert first == again and len(first) == 3
    assert len(extract_tasks(FILES, HeldoutParams(max_per_file=1))) == 5
    assert extract_tasks(FILES, HeldoutParams(min_body_lines=3, max_body_lines=3)) != []
    assert build_heldout(FILES, HeldoutParams(max_tasks=0)).tasks == []


def test_perplexity_texts_and_version() -> None:
    heldout = build_heldout(FILES, HeldoutParams(perplexity_max_chars=300))
    assert [f.path for f in heldout.files] == ["geometry.py"]  # sorted by repo and path, within the budget
    assert heldout.perplexity_texts("<file_sep>")[0] == "<file_sep>geometry.py\n" + PYTHON
    assert heldout.perplexity_texts("")[0] == PYTHON  # no separator token: files go unframed, as in training
    changed = build_heldout([SnapshotFile("repo", "geometry.py", "python", PYTHON + "\n")], heldout.params)
    assert changed.version != heldout.version
    assert build_heldout(FILES, HeldoutParams(perplexity_max_chars=300)).version == heldout.version


def dynamic_programming(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def test_levenshtein_matches_dynamic_programming() -> None:
    rng = random.Random(7)
    for _ in range(500):
        a = "".join(rng.choice("ab c\n") for _ in range(rng.randint(0, 90)))
        b = "".join(rng.choice("ab c\n") for _ in range(rng.randint(0, 90)))
        assert levenshtein(a, b) == dynamic_programming(a, b), (a, b)
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("same", "same") == 0


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [("", "", 1.0), ("abcd", "abcd", 1.0), ("abcd", "abce", 0.75), ("", "abcd", 0.0), ("kitten", "sitting", 4 / 7)],
)
def test_edit_similarity(prediction: str, target: str, expected: float) -> None:
    assert edit_similarity(prediction, target) == pytest.approx(expected)
