"""An evaluation run: every configured benchmark for each model that needs scoring, one model load per base.

The models ("subjects") are the candidate adapter, its base model and the current champion. Base model and
champion are scored once per cache key and reused from the results store after that; the candidate is
always scored. For each base model the weights load once, with every adapter that uses them attached.

Executed benchmarks are pipelined: each completion goes to the sandbox as soon as it is generated, so the
CPU executes while the GPU generates. Before a benchmark counts, its canonical solutions run once on this
machine (cached): a task whose own solution fails here (a toolchain quirk, a broken task) is excluded and
reported instead of being counted against the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codelupe_pipeline.evaluate.benchmarks import HELD_OUT, Benchmark
from codelupe_pipeline.evaluate.generation import Backend, GenerationParams, Request, open_backend, perplexity
from codelupe_pipeline.evaluate.heldout import HeldoutSet, score_completion
from codelupe_pipeline.evaluate.languages import toolchain
from codelupe_pipeline.evaluate.passk import mean_pass_at_k
from codelupe_pipeline.evaluate.results import ResultsStore, ScoreRecord, TaskRow
from codelupe_pipeline.evaluate.sandbox import ExecResult, Sandbox, SandboxLimits
from codelupe_pipeline.evaluate.tasks import Task

log = logging.getLogger(__name__)
HARNESS_VERSION = "2"  # bump when scoring changes meaning: every cached score is then recomputed
PASS_AT_K = (1, 10, 100)


def metric_name(benchmark: str, metric: str) -> str:
    """pass@1 of humaneval -> humaneval_pass_at_1 (an MLflow metric and tag name)."""
    return f"{benchmark}_{metric.replace('@', '_at_')}"


@dataclass(frozen=True)
class Subject:
    """A model to score: a base model, with or without a LoRA adapter."""

    key: str  # cache identity: base:<fingerprint> | version:<n> | adapter:<path>
    label: str  # for people: "candidate v7", "base model", "champion v5"
    base_location: str
    adapter_dir: str | None = None
    cacheable: bool = False  # reuse an earlier score under the same cache key


@dataclass(frozen=True)
class EvalSettings:
    """Everything that changes scores (and so every cache key), plus how to run."""

    generation: GenerationParams = field(default_factory=GenerationParams)
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    task_limit: int = 0  # first N tasks of each executed benchmark (0 = all)
    backend: str = "auto"
    quantization: str = "auto"
    isolation: str = "auto"
    workers: int | None = None


@dataclass
class BenchmarkSummary:
    name: str
    version: str
    format: str
    tasks: int  # selected (task limit applied)
    scored: int  # minus tasks that cannot run here or whose canonical solution fails here
    languages: dict[str, int]
    skipped: str | None = None  # why nothing of it ran
    excluded: dict[str, str] = field(default_factory=dict)  # task id -> why
    cache_key: str = ""


@dataclass
class SubjectResult:
    subject: Subject
    metrics: dict[str, float] = field(default_factory=dict)
    tasks: dict[str, list[TaskRow]] = field(default_factory=dict)  # benchmark -> rows (scored in this run)
    cached: list[str] = field(default_factory=list)  # benchmarks reused from the store
    error: str | None = None


@dataclass
class EvaluationRun:
    results: dict[str, SubjectResult]
    benchmarks: list[BenchmarkSummary]
    sandbox: dict[str, object]
    backend: str = ""
    generation_seconds: float = 0.0
    execution_wait_seconds: float = 0.0
    status_counts: dict[str, int] = field(default_factory=dict)

    def scores(self, subject_key: str) -> dict[str, float] | None:
        result = self.results.get(subject_key)
        return None if result is None or result.error else result.metrics


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def model_fingerprint(location: str) -> str:
    """What identifies a base model's weights: for a directory, its config, tokenizer and weight files (their
    sizes and first megabyte); for a hub id, the cached snapshot's commit when there is one."""
    path = Path(location)
    if path.is_dir():
        digest = hashlib.sha256()
        for item in sorted(path.iterdir()):
            if item.suffix in (".json", ".txt", ".model") and item.stat().st_size < 50 << 20:
                digest.update(item.name.encode() + item.read_bytes())
            elif item.suffix in (".safetensors", ".bin"):
                with item.open("rb") as fh:
                    digest.update(f"{item.name}:{item.stat().st_size}".encode() + fh.read(1 << 20))
        return digest.hexdigest()[:20]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(location, "config.json")
        if isinstance(cached, str):
            return f"{location}@{Path(cached).parent.name}"
    except Exception:  # offline, no cache: the id alone
        pass
    return location


def _selected(benchmark: Benchmark, task_limit: int) -> list[Task]:
    return benchmark.tasks[:task_limit] if task_limit else list(benchmark.tasks)


def submit(sandbox: Sandbox, task: Task, completion: str) -> Future[ExecResult]:
    """Run the task's program for one completion in the sandbox, in its language's toolchain."""
    program, limits = toolchain(task.language).program(task.program(completion), sandbox.limits)
    return sandbox.submit(program, limits)


@dataclass
class Executed:
    metrics: dict[str, float]
    rows: list[TaskRow]
    status_counts: dict[str, int]
    wait_seconds: float  # how long execution still ran after the last completion arrived


def execute_completions(
    sandbox: Sandbox, benchmark: str, tasks: Sequence[Task], completions: Iterable[tuple[int, str]]
) -> Executed:
    """Execute (task index, completion) pairs as they arrive; per-task rows and pass@k for every k the
    number of samples per task allows."""
    pending: list[list[tuple[str, Future[ExecResult]]]] = [[] for _ in tasks]
    for index, completion in completions:
        pending[index].append((completion, submit(sandbox, tasks[index], completion)))
    waited = time.perf_counter()
    rows, counts = [], Counter[str]()
    for task, samples in zip(tasks, pending, strict=True):
        row = TaskRow(task.task_id, task.language, completion=samples[0][0] if samples else "")
        for _, future in samples:
            outcome = future.result()
            row.samples += 1
            row.passed += int(outcome.passed)
            row.statuses[outcome.status.value] = row.statuses.get(outcome.status.value, 0) + 1
            counts[outcome.status.value] += 1
            if not outcome.passed and not row.first_failure:
                row.first_failure = f"{outcome.status.value}: {outcome.detail}"[:500]
        rows.append(row)
    per_task = [(r.samples, r.passed) for r in rows]
    metrics = {
        metric_name(benchmark, f"pass@{k}"): value
        for k in PASS_AT_K
        if (value := mean_pass_at_k(per_task, k)) is not None
    }
    return Executed(metrics, rows, dict(counts), time.perf_counter() - waited)


class Evaluator:
    """Scores subjects on the executed benchmarks and the held-out set, pipelining generation and execution."""

    def __init__(
        self,
        benchmarks: Sequence[Benchmark],
        heldout: HeldoutSet | None,
        settings: EvalSettings,
        device: str,
        store: ResultsStore,
        dagster_run_id: str = "",
        progress: Callable[[str], None] | None = None,
        progress_bars: bool = False,  # a terminal bar per generation pass (the CLI on a terminal)
    ) -> None:
        self.benchmarks = list(benchmarks)
        self.heldout = heldout if heldout is not None and (heldout.tasks or heldout.files) else None
        self.settings = settings
        self.device = device
        self.store = store
        self.dagster_run_id = dagster_run_id
        self.progress = progress or log.info
        self.progress_bars = progress_bars
        self.run = EvaluationRun({}, [], {})

    # Planning
    def _exec_cache_key(self, benchmark: Benchmark, excluded: dict[str, str]) -> str:
        return _digest(
            {
                "harness": HARNESS_VERSION,
                "benchmark": benchmark.name,
                "version": benchmark.version,
                "task_limit": self.settings.task_limit,
                "generation": self.settings.generation.identity(),
                "cpu_seconds": self.settings.limits.cpu_seconds,
                "memory_bytes": self.settings.limits.memory_bytes,
                "toolchains": {lang: tc.version for lang, tc in benchmark.toolchains.items()},
                "excluded": sorted(excluded),
            }
        )

    def _heldout_cache_key(self) -> str:
        assert self.heldout is not None
        params = self.heldout.params
        return _digest(
            {
                "harness": HARNESS_VERSION,
                "benchmark": HELD_OUT,
                "version": self.heldout.version,
                "max_new_tokens": params.max_new_tokens,
                "window": params.perplexity_window,
            }
        )

    def _self_test(self, sandbox: Sandbox, benchmark: Benchmark, tasks: list[Task]) -> dict[str, str]:
        """Task id -> why its canonical solution fails on this machine (cached per benchmark and machine setup)."""
        checkable = [t for t in benchmark.runnable_tasks if t.canonical_solution is not None]
        if not checkable:
            return {}
        key = _digest(
            {
                "harness": HARNESS_VERSION,
                "version": benchmark.version,
                "limits": asdict(self.settings.limits),
                "isolation": sandbox.isolation.value,
                "toolchains": {lang: tc.version for lang, tc in benchmark.toolchains.items()},
            }
        )
        broken = self.store.self_test(key)
        if broken is None:
            started = time.perf_counter()
            results = [submit(sandbox, t, t.canonical_solution or "") for t in checkable]
            broken = {
                t.task_id: f"{r.status}: {r.detail}"[:300]
                for t, r in zip(checkable, (f.result() for f in results), strict=True)
                if not r.passed
            }
            self.store.save_self_test(key, benchmark.name, benchmark.version, broken, len(checkable))
            self.progress(
                f"{benchmark.name}: canonical solutions checked in {time.perf_counter() - started:.1f} s, "
                f"{len(checkable) - len(broken)}/{len(checkable)} pass on this machine"
            )
        selected = {t.task_id for t in tasks}
        return {task_id: why for task_id, why in broken.items() if task_id in selected}

    def _summaries(self, sandbox: Sandbox) -> list[tuple[BenchmarkSummary, list[Task]]]:
        planned = []
        for benchmark in self.benchmarks:
            tasks = _selected(benchmark, self.settings.task_limit)
            excluded = {t.task_id: benchmark.missing[t.language] for t in tasks if t.language in benchmark.missing}
            runnable = [t for t in tasks if t.task_id not in excluded]
            if runnable:
                excluded.update(self._self_test(sandbox, benchmark, runnable))
            scored = [t for t in runnable if t.task_id not in excluded]
            summary = BenchmarkSummary(
                benchmark.name,
                benchmark.version,
                benchmark.format,
                len(tasks),
                len(scored),
                dict(Counter(t.language for t in tasks)),
                None if scored else (benchmark.skip_reason or "every selected task's canonical solution fails here"),
                excluded,
                self._exec_cache_key(benchmark, excluded),
            )
            planned.append((summary, scored))
        if self.heldout is not None:
            summary = BenchmarkSummary(
                HELD_OUT,
                self.heldout.version,
                "held-out",
                len(self.heldout.tasks),
                len(self.heldout.tasks),
                dict(Counter(t.language for t in self.heldout.tasks)),
                cache_key=self._heldout_cache_key(),
            )
            planned.append((summary, []))
        return planned

    # Running
    def evaluate(self, subjects: Sequence[Subject]) -> EvaluationRun:
        self.run = EvaluationRun({}, [], {})
        limits = self.settings.limits
        readable = sorted({p for b in self.benchmarks for tc in b.toolchains.values() for p in tc.readable_paths})
        # The sandbox starts before any model loads: its workers come from a process without CUDA state.
        with Sandbox(self.settings.workers, limits, self.settings.isolation, readable) as sandbox:
            sandbox.start()
            self.run.sandbox = sandbox.describe()
            planned = self._summaries(sandbox)
            self.run.benchmarks = [summary for summary, _ in planned]
            todo: dict[str, list[tuple[BenchmarkSummary, list[Task]]]] = {}
            for subject in subjects:
                result = self.run.results[subject.key] = SubjectResult(subject)
                for summary, tasks in planned:
                    if summary.skipped:
                        continue
                    cached = self.store.cached(subject.key, summary.cache_key) if subject.cacheable else None
                    if cached is not None:
                        result.metrics.update(cached)
                        result.cached.append(summary.name)
                    else:
                        todo.setdefault(subject.key, []).append((summary, tasks))
            by_base: dict[str, list[Subject]] = {}
            for subject in subjects:
                if subject.key in todo:
                    by_base.setdefault(subject.base_location, []).append(subject)
            for base, group in by_base.items():
                self._evaluate_group(sandbox, base, group, todo)
        return self.run

    def _evaluate_group(
        self,
        sandbox: Sandbox,
        base: str,
        group: list[Subject],
        todo: dict[str, list[tuple[BenchmarkSummary, list[Task]]]],
    ) -> None:
        names: dict[str, str | None] = {s.key: f"adapter{i}" if s.adapter_dir else None for i, s in enumerate(group)}
        adapters = {f"adapter{i}": s.adapter_dir for i, s in enumerate(group) if s.adapter_dir}
        self.progress(f"loading {base} with {len(adapters)} adapter(s) on {self.device}")
        try:
            backend = open_backend(self.settings.backend, base, adapters, self.device, self.settings.quantization)
        except Exception as exc:
            for subject in group:
                self._fail(subject, f"could not load {base}: {type(exc).__name__}: {exc}")
            return
        self.run.backend = backend.name
        try:
            for subject in group:
                name = names[subject.key]
                if name in backend.failed_adapters:
                    self._fail(subject, f"could not load its adapter: {backend.failed_adapters[name]}")
                    continue
                try:
                    for summary, tasks in todo[subject.key]:
                        self._score(sandbox, backend, subject, names[subject.key], summary, tasks)
                except Exception as exc:
                    self._fail(subject, f"{type(exc).__name__}: {exc}")
        finally:
            backend.close()

    def _fail(self, subject: Subject, error: str) -> None:
        if not subject.cacheable:  # the candidate itself: the evaluation cannot stand without it
            raise RuntimeError(f"{subject.label}: {error}")
        log.warning(f"{subject.label} could not be scored: {error}")
        self.run.results[subject.key].error = error

    def _score(
        self,
        sandbox: Sandbox,
        backend: Backend,
        subject: Subject,
        adapter: str | None,
        summary: BenchmarkSummary,
        tasks: list[Task],
    ) -> None:
        started = time.perf_counter()
        if summary.name == HELD_OUT:
            metrics, rows = self._score_heldout(backend, adapter)
        else:
            metrics, rows = self._score_executed(sandbox, backend, adapter, summary.name, tasks)
        seconds = time.perf_counter() - started
        result = self.run.results[subject.key]
        result.metrics.update(metrics)
        result.tasks[summary.name] = rows
        self.store.save(
            ScoreRecord(
                subject.key,
                subject.label,
                subject.base_location,
                subject.adapter_dir or "",
                summary.name,
                summary.version,
                summary.cache_key,
                {"generation": self.settings.generation.identity(), "limits": asdict(self.settings.limits)},
                metrics,
                rows,
                seconds,
                sandbox.isolation.value,
                self.dagster_run_id,
            )
        )
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
        self.progress(f"{subject.label} on {summary.name}: {shown} ({seconds:.1f} s)")

    def _generate(
        self, backend: Backend, requests: list[Request], params: GenerationParams, adapter: str | None
    ) -> Iterator[tuple[int, str]]:
        from tqdm import tqdm

        started = time.perf_counter()
        total = len(requests) * params.samples_per_task
        with tqdm(total=total, unit="completion", desc="generating", disable=not self.progress_bars) as bar:
            for item in backend.generate(requests, params, adapter):
                bar.update(1)
                yield item
        self.run.generation_seconds += time.perf_counter() - started

    def _score_executed(
        self, sandbox: Sandbox, backend: Backend, adapter: str | None, name: str, tasks: list[Task]
    ) -> tuple[dict[str, float], list[TaskRow]]:
        requests = [Request(t.prompt, t.stop_sequences) for t in tasks]
        completions = self._generate(backend, requests, self.settings.generation, adapter)
        executed = execute_completions(sandbox, name, tasks, completions)
        self.run.execution_wait_seconds += executed.wait_seconds
        for outcome, count in executed.status_counts.items():
            self.run.status_counts[outcome] = self.run.status_counts.get(outcome, 0) + count
        return executed.metrics, executed.rows

    def _score_heldout(self, backend: Backend, adapter: str | None) -> tuple[dict[str, float], list[TaskRow]]:
        assert self.heldout is not None
        heldout = self.heldout
        separator = backend.file_separator
        rows = []
        metrics: dict[str, float] = {}
        if heldout.tasks:
            params = GenerationParams(
                max_new_tokens=heldout.params.max_new_tokens, batch_size=self.settings.generation.batch_size
            )
            requests = [Request(t.prompt(separator), ()) for t in heldout.tasks]
            completions = dict(self._generate(backend, requests, params, adapter))
            for index, task in enumerate(heldout.tasks):
                body, exact, similarity = score_completion(task, completions[index])
                rows.append(TaskRow(task.task_id, task.language, 1, int(exact), exact, similarity, completion=body))
            metrics[metric_name(HELD_OUT, "exact_match")] = sum(r.exact_match or 0 for r in rows) / len(rows)
            metrics[metric_name(HELD_OUT, "edit_similarity")] = sum(r.edit_similarity or 0 for r in rows) / len(rows)
        if heldout.files:
            nll, tokens = backend.token_nll(
                heldout.perplexity_texts(separator), heldout.params.perplexity_window, adapter
            )
            if (ppl := perplexity(nll, tokens)) is not None:
                metrics[metric_name(HELD_OUT, "perplexity")] = ppl
        return metrics, rows
