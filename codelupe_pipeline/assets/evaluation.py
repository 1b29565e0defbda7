"""Evaluation: HumanEval pass@k of the new adapter, generated here and executed in the sandbox."""

import json

import dagster as dg
from pydantic import Field

from codelupe_pipeline.assets.metadata import markdown_table
from codelupe_pipeline.assets.training import LORA_ADAPTER, AdapterRef
from codelupe_pipeline.evaluate.benchmark import BenchmarkResult, run_benchmark
from codelupe_pipeline.evaluate.generation import GenerationParams
from codelupe_pipeline.evaluate.humaneval import HUMANEVAL_SHA256, load_humaneval
from codelupe_pipeline.evaluate.sandbox import SandboxLimits
from codelupe_pipeline.resources import ComputeResource, MlflowResource, StorageResource

HUMANEVAL_BENCHMARK = dg.AssetKey("humaneval_benchmark")


class BenchmarkConfig(dg.Config):
    """How the benchmark generates and executes."""

    task_limit: int = Field(default=0, description="Score only the first N tasks (0 = all 164).")
    max_new_tokens: int = Field(default=256, description="Longest completion generated per task.")
    batch_size: int = Field(default=16, description="Prompts generated together.")
    samples_per_task: int = Field(default=1, description="Completions per task (n); pass@k needs n >= k.")
    temperature: float = Field(default=0.0, description="0 = greedy decoding.")
    cpu_seconds: float = Field(default=5.0, description="CPU-time limit per program in the sandbox.")
    memory_mb: int = Field(default=1024, description="Address-space limit per program in the sandbox.")
    workers: int = Field(default=0, description="Parallel sandbox workers (0 = one per CPU core).")


def metric_name(benchmark: str, key: str) -> str:
    """MLflow metric and tag name of a score: pass@1 of humaneval -> humaneval_pass_at_1."""
    return f"{benchmark}_{key.replace('@', '_at_')}"


@dg.asset(
    key=HUMANEVAL_BENCHMARK,
    ins={"lora_adapter": dg.AssetIn(LORA_ADAPTER)},
    group_name="evaluation",
    kinds={"python", "pytorch"},
    pool="gpu",
    code_version="1",
    description=(
        "HumanEval (checked against its published sha256) for the base model plus the new adapter: batched "
        "generation in this process, execution of every program in an isolated sandbox process with CPU, "
        "memory, process and output limits and no network. pass@k by the unbiased estimator."
    ),
)
def humaneval_benchmark(
    context: dg.AssetExecutionContext,
    config: BenchmarkConfig,
    lora_adapter: AdapterRef,
    compute: ComputeResource,
    storage: StorageResource,
    mlflow: MlflowResource,
) -> dg.Output[BenchmarkResult]:
    tasks = load_humaneval()
    if config.task_limit:
        tasks = tasks[: config.task_limit]
    device = compute.resolve()
    context.log.info(f"HumanEval: {len(tasks)} tasks x {config.samples_per_task} samples on {device}")
    result = run_benchmark(
        "humaneval",
        tasks,
        lora_adapter.base_model.location,
        lora_adapter.directory,
        device,
        GenerationParams(
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            temperature=config.temperature,
            samples_per_task=config.samples_per_task,
        ),
        SandboxLimits(cpu_seconds=config.cpu_seconds, memory_bytes=config.memory_mb << 20),
        workers=config.workers or None,
        on_progress=lambda done, total: context.log.info(f"generated {done}/{total}"),
    )
    if result.isolation_warning:
        context.log.warning(result.isolation_warning)

    storage.eval_dir.mkdir(parents=True, exist_ok=True)
    results_file = storage.eval_dir / f"{lora_adapter.snapshot_version}-{context.run_id[:8]}-humaneval.json"
    results_file.write_text(json.dumps(result.as_dict(), indent=2))
    registry = mlflow.registry()
    scores = {metric_name("humaneval", k): v for k, v in result.pass_at.items()}
    registry.log_metrics(lora_adapter.mlflow_run_id, scores)
    registry.log_json(lora_adapter.mlflow_run_id, result.as_dict(), "evaluation/humaneval.json")
    registry.set_version_tags(
        lora_adapter.model_version, {**{k: f"{v:.6f}" for k, v in scores.items()}, "stage": "benchmarked"}
    )

    failing = [t for t in result.tasks if t.passed < t.samples][:15]
    return dg.Output(
        result,
        metadata={
            **{k: round(v, 4) for k, v in result.pass_at.items()},
            "tasks": len(tasks),
            "benchmark_sha256": HUMANEVAL_SHA256,
            "sandbox_isolation": result.isolation,
            "sandbox_warning": result.isolation_warning or "",
            "generation_seconds": round(result.generation_seconds, 1),
            "execution_seconds": round(result.execution_seconds, 2),
            "outcomes": markdown_table(["status", "programs"], sorted(result.status_counts.items())),
            "failing_tasks_sample": markdown_table(
                ["task", "passed/samples", "first failure"],
                [(t.task_id, f"{t.passed}/{t.samples}", t.first_detail) for t in failing],
            ),
            "results_file": dg.MetadataValue.path(str(results_file)),
        },
    )


@dg.asset_check(
    asset=HUMANEVAL_BENCHMARK,
    description="Programs ran under strong isolation (bubblewrap); a degraded sandbox is a warning.",
)
def sandbox_isolated(humaneval_benchmark: BenchmarkResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=humaneval_benchmark.isolation_warning is None,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"isolation": humaneval_benchmark.isolation},
    )
