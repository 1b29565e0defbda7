"""Evaluation: the new adapter, its base model and the champion on every configured benchmark."""

from dataclasses import asdict
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from codelupe_pipeline.assets.metadata import markdown_table
from codelupe_pipeline.assets.training import LORA_ADAPTER, AdapterRef
from codelupe_pipeline.evaluate.benchmarks import HELD_OUT, load_benchmarks
from codelupe_pipeline.evaluate.evaluation import BenchmarkSummary, EvalSettings, EvaluationRun, Evaluator, Subject
from codelupe_pipeline.evaluate.generation import GenerationParams
from codelupe_pipeline.evaluate.heldout import HeldoutParams, build_heldout
from codelupe_pipeline.evaluate.report import (
    EvaluationReport,
    build_report,
    comparison_header,
    comparison_rows,
    plan,
    version_subject,
)
from codelupe_pipeline.evaluate.sandbox import SandboxLimits
from codelupe_pipeline.resources import ComputeResource, EvaluationResource, MlflowResource, StorageResource
from codelupe_pipeline.train.samples import read_snapshot_files

MODEL_EVALUATION = dg.AssetKey("model_evaluation")
TINY_MAX_NEW_TOKENS = 32  # a random-weight model writes noise: do not spend minutes of CPU generating it


class EvaluationConfig(dg.Config):
    """How the benchmarks generate and execute. Every field that changes scores is part of the cache key."""

    benchmarks: list[str] = Field(default=[], description="Only these configured benchmarks (empty = all).")
    task_limit: int = Field(default=0, description="Score only the first N tasks of each benchmark (0 = all).")
    samples_per_task: int = Field(default=1, description="Completions per task (n); pass@k needs n >= k.")
    temperature: float = Field(default=0.0, description="0 = greedy (pass@1); 0.2 with n >= 20 is also usual.")
    top_p: float = Field(default=0.95, description="Nucleus sampling threshold when temperature > 0.")
    max_new_tokens: int = Field(default=0, description="Longest completion (0 = 512; 32 for the tiny profile).")
    batch_size: int = Field(default=32, description="Prompts generated together (transformers backend).")
    seed: int = Field(default=0, description="Sampling seed.")
    backend: str = Field(default="auto", description="auto (vLLM on a GPU when installed), vllm or transformers.")
    quantization: str = Field(default="auto", description="auto (nf4 on CUDA as in training), nf4 or none.")
    cpu_seconds: float = Field(default=5.0, description="CPU-time limit per program in the sandbox.")
    memory_mb: int = Field(default=1024, description="Address-space limit per program in the sandbox.")
    your_stack_tasks: int = Field(default=200, description="Held-out function completions (0 = none).")
    your_stack_max_new_tokens: int = Field(default=0, description="Per held-out completion (0 = 256; 32 tiny).")
    perplexity_max_chars: int = Field(default=400_000, description="Validation text scored for perplexity.")
    compare_with_base: bool = Field(default=True, description="Also score the base model (cached after once).")
    rescore_champion: bool = Field(
        default=True, description="Score the champion under this setup when no cached score matches."
    )


def evaluation_settings(config: EvaluationConfig, tiny: bool, isolation: str, workers: int) -> EvalSettings:
    return EvalSettings(
        generation=GenerationParams(
            max_new_tokens=config.max_new_tokens or (TINY_MAX_NEW_TOKENS if tiny else 512),
            batch_size=config.batch_size,
            temperature=config.temperature,
            top_p=config.top_p,
            samples_per_task=config.samples_per_task,
            seed=config.seed,
        ),
        limits=SandboxLimits(cpu_seconds=config.cpu_seconds, memory_bytes=config.memory_mb << 20),
        task_limit=config.task_limit,
        backend=config.backend,
        quantization=config.quantization,
        isolation=isolation,
        workers=workers or None,
    )


def heldout_params(config: EvaluationConfig, tiny: bool) -> HeldoutParams:
    return HeldoutParams(
        max_tasks=config.your_stack_tasks,
        max_new_tokens=config.your_stack_max_new_tokens or (TINY_MAX_NEW_TOKENS if tiny else 256),
        perplexity_max_chars=config.perplexity_max_chars,
    )


def _benchmark_note(benchmark: BenchmarkSummary) -> str:
    if benchmark.skipped:
        return f"skipped: {benchmark.skipped}"
    if benchmark.excluded:
        return f"{len(benchmark.excluded)} excluded: " + "; ".join(list(benchmark.excluded.values())[:2])
    return ""


def run_metadata(run: EvaluationRun, candidate_key: str, report: EvaluationReport) -> dict[str, Any]:
    """What a person reads in the UI: scores against base and champion, benchmarks, outcomes, failures."""
    candidate = run.results[candidate_key]
    failing = [
        (f"{name}/{row.task_id}", f"{row.passed}/{row.samples}", row.first_failure[:160])
        for name, rows in candidate.tasks.items()
        for row in rows
        if row.samples and row.passed < row.samples
    ][:15]
    return {
        **dict(sorted(report.candidate_scores.items())),
        "comparison": markdown_table(
            comparison_header(report),
            comparison_rows(report),
        ),
        "champion": report.champion_label if report.champion_version else "none yet",
        "champion_error": report.champion_error or "",
        "benchmarks": markdown_table(
            ["benchmark", "format", "tasks", "scored", "languages", "skipped or excluded"],
            [
                (
                    b.name,
                    b.format,
                    b.tasks,
                    b.scored,
                    ", ".join(f"{k} {v}" for k, v in sorted(b.languages.items())),
                    _benchmark_note(b),
                )
                for b in run.benchmarks
            ],
        ),
        "benchmarks_skipped": sum(1 for b in run.benchmarks if b.skipped),
        "outcomes": markdown_table(["outcome", "programs"], sorted(run.status_counts.items())),
        "failing_tasks_sample": markdown_table(["task", "passed/samples", "first failure"], failing),
        "sandbox_isolation": report.isolation,
        "sandbox_warning": report.isolation_warning,
        "sandbox_workers": int(str(run.sandbox.get("workers", 0))),
        "generation_backend": run.backend or "(everything cached)",
        "generation_seconds": round(run.generation_seconds, 1),
        "execution_wait_seconds": round(run.execution_wait_seconds, 2),
        "reused_from_cache": ", ".join(
            f"{r.subject.label}: {', '.join(r.cached)}" for r in run.results.values() if r.cached
        ),
    }


def _task_table(run: EvaluationRun, candidate: Subject) -> dict[str, list[object]]:
    rows = [(name, row) for name, rows in run.results[candidate.key].tasks.items() for row in rows]
    return {
        "benchmark": [name for name, _ in rows],
        "task_id": [row.task_id for _, row in rows],
        "language": [row.language for _, row in rows],
        "samples": [row.samples for _, row in rows],
        "passed": [row.passed for _, row in rows],
        "exact_match": [row.exact_match for _, row in rows],
        "edit_similarity": [row.edit_similarity for _, row in rows],
        "outcomes": [", ".join(f"{k} {v}" for k, v in sorted(row.statuses.items())) for _, row in rows],
        "first_failure": [row.first_failure for _, row in rows],
        "completion": [row.completion[:2000] for _, row in rows],
    }


@dg.asset(
    key=MODEL_EVALUATION,
    ins={"lora_adapter": dg.AssetIn(LORA_ADAPTER)},
    group_name="evaluation",
    kinds={"python", "pytorch", "duckdb"},
    pool="gpu",
    # Benchmarks every new adapter, however its training was launched; a failed training updates nothing
    # and so triggers nothing.
    automation_condition=dg.AutomationCondition.eager(),
    code_version="2",
    description=(
        "Every configured benchmark (HumanEval, checked against its sha256, and any local benchmark file) "
        "executed in the sandbox, plus the held-out functions and perplexity of your own validation "
        "repositories, for the new adapter, its base model and the current champion under one setup. "
        "pass@k by the unbiased estimator; per-task results in <data_dir>/eval/results.duckdb and MLflow."
    ),
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    lora_adapter: AdapterRef,
    compute: ComputeResource,
    storage: StorageResource,
    mlflow: MlflowResource,
    evaluation: EvaluationResource,
) -> dg.Output[EvaluationReport]:
    device = compute.resolve()
    base = lora_adapter.base_model
    tiny = base.profile == "tiny"
    benchmarks = load_benchmarks(Path(evaluation.benchmarks_file), config.benchmarks or None)
    snapshot = storage.snapshots_dir / lora_adapter.snapshot_version / "data.parquet"
    heldout = None
    if snapshot.exists():
        heldout = build_heldout(read_snapshot_files(snapshot, "validation"), heldout_params(config, tiny))
    else:
        context.log.warning(f"snapshot {snapshot} is gone: no held-out ({HELD_OUT}) scores this time")
    registry = mlflow.registry()

    version = lora_adapter.model_version
    candidate = version_subject(version, "candidate", base.location, lora_adapter.directory, cacheable=False)
    subjects = plan(
        candidate, registry, storage.eval_dir / "adapters", config.compare_with_base, config.rescore_champion
    )
    evaluator = Evaluator(
        benchmarks,
        heldout,
        evaluation_settings(config, tiny, evaluation.sandbox_isolation, evaluation.sandbox_workers),
        device,
        evaluation.results(),
        dagster_run_id=context.run_id,
        progress=context.log.info,
    )
    run = evaluator.evaluate(subjects.subjects)
    if run.sandbox.get("warning"):
        context.log.warning(str(run.sandbox["warning"]))
    report = build_report(run, subjects, version)

    registry.log_metrics(lora_adapter.mlflow_run_id, report.candidate_scores)
    if report.base_scores:
        registry.log_metrics(lora_adapter.mlflow_run_id, {f"base_{k}": v for k, v in report.base_scores.items()})
    registry.log_table(lora_adapter.mlflow_run_id, _task_table(run, candidate), "evaluation/task_results.json")
    registry.log_json(
        lora_adapter.mlflow_run_id,
        {"report": asdict(report), "sandbox": run.sandbox},
        "evaluation/summary.json",
    )
    registry.set_version_tags(
        version,
        {
            **{k: f"{v:.6f}" for k, v in report.candidate_scores.items()},
            "eval_cache_keys": ",".join(f"{k}={v}" for k, v in sorted(report.cache_keys.items())),
            "sandbox_isolation": report.isolation,
            "stage": "benchmarked",
        },
    )
    held_out = next((b for b in run.benchmarks if b.name == HELD_OUT), None)
    return dg.Output(
        report,
        metadata={
            **run_metadata(run, candidate.key, report),
            "your_stack_tasks": held_out.tasks if held_out else 0,
            "results_db": dg.MetadataValue.path(evaluation.results_path),
        },
    )


@dg.asset_check(
    asset=MODEL_EVALUATION,
    description="Programs ran under strong isolation (bubblewrap); a degraded sandbox is a warning.",
)
def sandbox_isolated(model_evaluation: EvaluationReport) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=model_evaluation.isolation == "bubblewrap",
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"isolation": model_evaluation.isolation, "warning": model_evaluation.isolation_warning},
    )


@dg.asset_check(
    asset=MODEL_EVALUATION,
    description="Every configured benchmark ran here, and every selected task's canonical solution passes here.",
)
def benchmarks_complete(model_evaluation: EvaluationReport) -> dg.AssetCheckResult:
    skipped = {b.name: b.skipped for b in model_evaluation.benchmarks if b.skipped}
    excluded = {b.name: len(b.excluded) for b in model_evaluation.benchmarks if b.excluded and not b.skipped}
    return dg.AssetCheckResult(
        passed=not skipped and not excluded,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"skipped": str(skipped or ""), "tasks_excluded": str(excluded or "")},
    )
