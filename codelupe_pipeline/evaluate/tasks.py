"""Benchmark tasks and the file formats they come in.

Every format becomes the same `Task`: a prompt the model completes, and test code appended after the
completion; the program that runs is `prompt + completion + test`.

Formats (detected from the first row's fields, or named in the benchmarks file):
- humaneval: task_id, prompt, entry_point, canonical_solution, test (HumanEval, and HumanEval+ as published
  on the Hugging Face hub, whose `test` holds the extra inputs).
- evalplus: EvalPlus's own release files (base_input, plus_input, atol, no `test`): differential testing
  against the canonical solution, as EvalPlus does.
- multipl-e: name, language, prompt, tests, stop_tokens (MultiPL-E's translations to Rust, Go, TypeScript,
  JavaScript, Dart, ...).
- mbpp: task_id, text or prompt, code, test_list (MBPP and its sanitized subset), prompted the way the
  BigCode evaluation harness does: the description and one test in a docstring.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from codelupe_pipeline.evaluate.languages import DEFAULT_STOPS, canonical_language

FORMATS = ("humaneval", "evalplus", "multipl-e", "mbpp")
MBPP_STOPS = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")


class BenchmarkFileError(ValueError):
    pass


@dataclass(frozen=True)
class Task:
    task_id: str
    language: str
    prompt: str
    test: str  # appended after the completion: the tests and the call that runs them
    canonical_solution: str | None
    stop_sequences: tuple[str, ...]

    def program(self, completion: str) -> str:
        return f"{self.prompt}{completion}\n{self.test}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a .jsonl or .jsonl.gz file; a JSON array file works too."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkFileError(f"{path}: cannot read: {exc}") from exc
    if text.lstrip().startswith("["):
        try:
            yield from enumerate(json.loads(text), start=1)
        except json.JSONDecodeError as exc:
            raise BenchmarkFileError(f"{path}: not valid JSON: {exc}") from exc
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchmarkFileError(f"{path}:{number}: not valid JSON: {exc}") from exc


def detect_format(row: dict) -> str | None:
    if "tests" in row and "stop_tokens" in row:
        return "multipl-e"
    if "test_list" in row:
        return "mbpp"
    if "base_input" in row and not row.get("test"):
        return "evalplus"
    if {"prompt", "entry_point", "test"} <= row.keys():
        return "humaneval"
    return None


def _need(row: dict, fields: tuple[str, ...], where: str) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise BenchmarkFileError(f"{where}: missing field(s) {', '.join(missing)}")


def _humaneval(row: dict, where: str, language: str | None) -> Task:
    _need(row, ("task_id", "prompt", "entry_point", "test"), where)
    lang = canonical_language(row.get("language") or language or "python")
    test = f"\n{row['test']}\n\ncheck({row['entry_point']})\n"
    stops = tuple(row.get("stop_tokens") or DEFAULT_STOPS.get(lang, ()))
    return Task(str(row["task_id"]), lang, row["prompt"], test, row.get("canonical_solution"), stops)


# EvalPlus compares each output with the canonical solution's, floats within atol (1e-6 when it is 0).
_EVALPLUS_CHECK = """
import copy as _copy, json as _json, math as _math
_reference_ns = {{}}
exec({reference!r}, _reference_ns)
_reference = _reference_ns[{entry_point!r}]
_INPUTS = _json.loads({inputs!r})
_ATOL = {atol!r} or 1e-6

def _same(out, exp):
    if isinstance(exp, float) or isinstance(out, float):
        try:
            return _math.isclose(out, exp, rel_tol=1e-7, abs_tol=_ATOL) or (out != out and exp != exp)
        except TypeError:
            return False
    if isinstance(exp, (list, tuple)) and isinstance(out, (list, tuple)):
        return len(out) == len(exp) and all(_same(o, e) for o, e in zip(out, exp))
    return type(out) is type(exp) and out == exp if isinstance(exp, bool) else out == exp

def check(candidate):
    for args in _INPUTS:
        expected = _reference(*_copy.deepcopy(args))
        actual = candidate(*_copy.deepcopy(args))
        assert _same(actual, expected), f"input {{args!r}}: expected {{expected!r}}, got {{actual!r}}"
"""


def _evalplus(row: dict, where: str, language: str | None) -> Task:
    _need(row, ("task_id", "prompt", "entry_point", "canonical_solution", "base_input"), where)
    inputs = list(row["base_input"]) + list(row.get("plus_input") or [])
    check = _EVALPLUS_CHECK.format(
        reference=row["prompt"] + row["canonical_solution"],
        entry_point=row["entry_point"],
        inputs=json.dumps(inputs),
        atol=float(row.get("atol") or 0),
    )
    return _humaneval({**row, "test": check}, where, language)


def _multipl_e(row: dict, where: str, language: str | None) -> Task:
    _need(row, ("name", "prompt", "tests"), where)
    lang = canonical_language(row.get("language") or language or "")
    if not lang:
        raise BenchmarkFileError(f"{where}: no language (set `language:` for this benchmark)")
    stops = tuple(row.get("stop_tokens") or DEFAULT_STOPS.get(lang, ()))
    return Task(str(row["name"]), lang, row["prompt"], row["tests"], row.get("canonical_solution"), stops)


def _mbpp(row: dict, where: str, language: str | None) -> Task:
    _need(row, ("task_id", "code", "test_list"), where)
    description = row.get("text") or row.get("prompt")
    if not description or not row["test_list"]:
        raise BenchmarkFileError(f"{where}: an MBPP task needs a description (text or prompt) and test_list")
    prompt = f'"""\n{description}\n{row["test_list"][0]}\n"""\n'
    setup = "\n".join([*row.get("test_imports", []), row.get("test_setup_code") or ""]).strip()
    test = f"\n{setup}\n" + "\n".join(row["test_list"]) + "\n"
    return Task(f"mbpp/{row['task_id']}", "python", prompt, test, row["code"], MBPP_STOPS)


_READERS = {"humaneval": _humaneval, "evalplus": _evalplus, "multipl-e": _multipl_e, "mbpp": _mbpp}


def load_tasks(path: Path, fmt: str | None = None, language: str | None = None) -> tuple[str, list[Task]]:
    """(format, tasks) of a benchmark file; errors name the file, the line and the field."""
    if fmt is not None and fmt not in _READERS:
        raise BenchmarkFileError(f"{path}: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    tasks: list[Task] = []
    for number, row in read_rows(path):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise BenchmarkFileError(f"{where}: a task must be a JSON object")
        if fmt is None:
            fmt = detect_format(row)
            if fmt is None:
                raise BenchmarkFileError(
                    f"{where}: unrecognised task format (fields: {', '.join(sorted(row))}); "
                    f"name it with `format:` ({', '.join(FORMATS)})"
                )
        tasks.append(_READERS[fmt](row, where, language))
    if not tasks:
        raise BenchmarkFileError(f"{path}: no tasks")
    ids = [t.task_id for t in tasks]
    if len(set(ids)) != len(ids):
        raise BenchmarkFileError(f"{path}: duplicate task ids")
    return fmt or "humaneval", tasks
