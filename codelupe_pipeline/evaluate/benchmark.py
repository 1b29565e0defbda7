"""A benchmark run: generate completions for each task, execute them in the sandbox, compute pass@k."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from codelupe_pipeline.evaluate.generation import GenerationParams, generate, load_for_inference
from codelupe_pipeline.evaluate.humaneval import PYTHON_STOP_SEQUENCES, Task
from codelupe_pipeline.evaluate.passk import mean_pass_at_k
from codelupe_pipeline.evaluate.sandbox import Sandbox, SandboxLimits


@dataclass
class TaskResult:
    task_id: str
    samples: int
    passed: int
    statuses: list[str]
    first_detail: str
    first_completion: str


@dataclass
class BenchmarkResult:
    benchmark: str
    tasks: list[TaskResult]
    pass_at: dict[str, float]
    isolation: str
    isolation_warning: str | None
    generation_seconds: float = 0.0
    execution_seconds: float = 0.0
    status_counts: dict[str, int] = field(default_factory=dict)

    @property
    def pass_at_1(self) -> float:
        return self.pass_at["pass@1"]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def score(
    benchmark: str,
    tasks: Sequence[Task],
    completions: Sequence[Sequence[str]],
    sandbox: Sandbox,
    limits: SandboxLimits | None = None,
) -> BenchmarkResult:
    """Execute every completion of every task in the sandbox; pass@k for each k all tasks allow."""
    flat = [(t, c) for t, cs in zip(tasks, completions, strict=True) for c in cs]
    started = time.perf_counter()
    results = sandbox.run([t.program(c) for t, c in flat], limits)
    elapsed = time.perf_counter() - started
    per_task: dict[str, TaskResult] = {}
    for (task, completion), result in zip(flat, results, strict=True):
        entry = per_task.setdefault(task.task_id, TaskResult(task.task_id, 0, 0, [], "", completion))
        entry.samples += 1
        entry.passed += int(result.passed)
        entry.statuses.append(result.status)
        if not result.passed and not entry.first_detail:
            entry.first_detail = f"{result.status}: {result.detail}"[:300]
    task_results = [per_task[t.task_id] for t in tasks]
    counts = [(r.samples, r.passed) for r in task_results]
    pass_at = {f"pass@{k}": value for k in (1, 10, 100) if (value := mean_pass_at_k(counts, k)) is not None}
    return BenchmarkResult(
        benchmark=benchmark,
        tasks=task_results,
        pass_at=pass_at,
        isolation=sandbox.isolation.value,
        isolation_warning=sandbox.warning,
        execution_seconds=elapsed,
        status_counts=dict(Counter(s for r in task_results for s in r.statuses)),
    )


def run_benchmark(
    benchmark: str,
    tasks: Sequence[Task],
    base_model: str,
    adapter_dir: str | None,
    device: str,
    generation: GenerationParams,
    limits: SandboxLimits | None = None,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BenchmarkResult:
    """Generate with the model (plus adapter) in this process, then execute in sandbox processes."""
    model, tokenizer = load_for_inference(base_model, adapter_dir, device)
    started = time.perf_counter()
    completions = generate(
        model, tokenizer, [t.prompt for t in tasks], generation, PYTHON_STOP_SEQUENCES, device, on_progress
    )
    generation_seconds = time.perf_counter() - started
    del model
    with Sandbox(workers=workers, limits=limits) as sandbox:
        result = score(benchmark, tasks, completions, sandbox, limits)
    result.generation_seconds = generation_seconds
    return result
