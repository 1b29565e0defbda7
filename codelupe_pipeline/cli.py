"""`codelupe`: run the pipeline once, inspect settings and the champion, open the UIs."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from codelupe_pipeline.instance import prepare_dagster_home
from codelupe_pipeline.settings import CHECKOUT_DIR, Settings

WORKSPACE_YAML = CHECKOUT_DIR / "workspace.yaml"


def _metadata(result: Any, key: str) -> dict[str, Any]:
    """The metadata of the materialization of `key` in an in-process run result, as plain values."""
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() == key:
            return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    return {}


def _ingestion_totals(result: Any) -> dict[str, int]:
    """Current files, files added and failed sources over every source partition the run materialized."""
    totals = {"current": 0, "added": 0, "failed": 0, "sources": 0}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() != "raw_code_files":
            continue
        metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        totals["sources"] += 1
        totals["current"] += int(metadata.get("dagster/row_count", 0))
        totals["added"] += int(metadata.get("files_added", 0))
        totals["failed"] += metadata.get("source_status") == "failed"
    return totals


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    prepare_dagster_home(settings)
    import dagster as dg

    from codelupe_pipeline.automation.jobs import FULL_PIPELINE
    from codelupe_pipeline.automation.run_once import run_pipeline_once
    from codelupe_pipeline.definitions import build_definitions
    from codelupe_pipeline.progress import RunProgress

    defs = build_definitions(settings)
    # On a terminal a progress bar shows the steps and each step's latest log line; the full Dagster log at
    # INFO (every step's messages, no engine events) is for --verbose and for logs that are not a terminal.
    bar = args.progress if args.progress is not None else sys.stderr.isatty()
    log_level = "INFO" if args.verbose or not bar else "WARNING"
    run_config: dict[str, Any] = {"ops": {}, "loggers": {"console": {"config": {"log_level": log_level}}}}
    if args.steps is not None:
        run_config["ops"]["lora_adapter"] = {"config": {"max_steps": args.steps}}
    if args.tasks is not None:
        run_config["ops"]["model_evaluation"] = {"config": {"task_limit": args.tasks}}
    print(f"CodeLupe: data in {settings.data_dir}, model {settings.model}, device {settings.device}")
    started = time.monotonic()
    run_id = str(uuid.uuid4())  # known before the run starts, so the progress bar can follow it
    steps = len(defs.resolve_job_def(FULL_PIPELINE).nodes)
    with dg.DagsterInstance.get() as instance, RunProgress(instance, run_id, steps, disable=not bar):
        run = run_pipeline_once(defs, instance, run_config, run_id=run_id)
    result = run.result
    elapsed = time.monotonic() - started
    raw = _ingestion_totals(result)
    snapshot = _metadata(result, "curated_snapshot")
    adapter = _metadata(result, "lora_adapter")
    evaluation = _metadata(result, "model_evaluation")
    version = _metadata(result, "registered_model_version")
    status = "succeeded" if result.success else "FAILED"
    lines = [f"run:              {result.run_id} ({status}, {elapsed:.0f} s)"]
    if run.discovery is not None:
        found = _metadata(run.discovery, "github_repositories")
        lines.append(
            f"GitHub discovery: {found.get('dagster/row_count', '?')} repositories "
            f"(+{found.get('repositories_new', 0)} new)"
            if run.discovery.success
            else "GitHub discovery: FAILED, kept the repositories found before (see the run's logs)"
        )
    lines.append(
        f"files ingested:   {raw['current']} current in {raw['sources']} sources "
        f"(+{raw['added']} added, {raw['failed']} sources failed)"
    )
    if run.deleted_partitions:
        lines.append(f"sources removed:  {', '.join(run.deleted_partitions)} (rows marked removed, kept for history)")
    if snapshot:
        lines += [
            f"files kept:       {snapshot['dagster/row_count']} "
            f"(train {snapshot['train_rows']}, validation {snapshot['validation_rows']})",
            f"snapshot version: {snapshot['snapshot_version']}",
        ]
    else:
        lines.append("snapshot:         unchanged since the last run: nothing new to train (`codelupe champion`)")
    if adapter:
        lines.append(
            f"training loss:    {_fmt(adapter['train_loss_first'])} -> {_fmt(adapter['train_loss_last'])} "
            f"(validation {_fmt(adapter['val_loss_before'])} -> {_fmt(adapter['val_loss_after'])})"
        )
    if evaluation:
        scores = {k: v for k, v in evaluation.items() if isinstance(v, float) and ("_at_" in k or "your_stack" in k)}
        lines.append(
            f"evaluation:       sandbox {evaluation.get('sandbox_isolation')}, champion {evaluation['champion']}"
        )
        lines += [f"  {name:<32}{_fmt(value)}" for name, value in sorted(scores.items())]
    if version:
        alias = "champion" if version["promoted_to_champion"] else "challenger"
        lines.append(
            f"MLflow model:     {version['model']} version {version['version']} "
            f"({alias}: {version['promotion_reason']})"
        )
    print("\n=== CodeLupe run summary ===\n" + "\n".join(lines))
    print("\nOpen the UIs on this state:  make ui   (Dagster http://127.0.0.1:3000, MLflow http://127.0.0.1:5000)")
    return 0 if result.success else 1


def cmd_config(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    rows = Settings.describe()
    width = max(len(env) for env, _, _ in rows)
    for (env, default, help_), current in zip(rows, vars(settings).values(), strict=True):
        shown = ",".join(current) if isinstance(current, tuple) else str(current)
        print(f"{env:<{width}}  {shown}\n{'':<{width}}  {help_} (default: {default})")
    return 0


def cmd_champion(args: argparse.Namespace) -> int:
    from codelupe_pipeline.registry.mlflow_store import CHALLENGER, CHAMPION, ModelRegistry

    settings = Settings.from_env()
    registry = ModelRegistry(
        settings.resolved_mlflow_tracking_uri, settings.registered_model, settings.mlflow_artifact_root
    )
    versions = registry.versions()
    if not versions:
        print(f"no versions of {settings.registered_model} yet: run `codelupe run` first")
        return 1
    for alias in (CHAMPION, CHALLENGER):
        info = registry.alias(alias)
        if info is None:
            print(f"{alias}: none")
            continue
        print(f"{alias}: {settings.registered_model} v{info.version} (run {info.run_id})")
        lineage = ["dataset_version", "dataset_rows", "base_model", "init", "train_steps", "val_loss", "git_commit",
                   "dagster_run_id"]  # fmt: skip
        scores = sorted(k for k in info.tags if "_at_" in k or k.startswith("your_stack"))
        for key in [*lineage, *scores, "promotion_reason"]:
            if key in info.tags:
                print(f"  {key}: {info.tags[key]}")
    print("history: " + ", ".join(f"v{v.version}{'*' if CHAMPION in v.aliases else ''}" for v in versions))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Benchmark an adapter directory or a model version next to its base model (and the champion)."""
    from codelupe_pipeline.assets.evaluation import EvaluationConfig, evaluation_settings, heldout_params
    from codelupe_pipeline.curate.snapshot import load_snapshot
    from codelupe_pipeline.evaluate.benchmarks import load_benchmarks
    from codelupe_pipeline.evaluate.evaluation import Evaluator, Subject
    from codelupe_pipeline.evaluate.heldout import build_heldout
    from codelupe_pipeline.evaluate.report import (
        adapter_base_model,
        build_report,
        comparison_header,
        comparison_rows,
        plan,
        registered_subject,
    )
    from codelupe_pipeline.evaluate.results import ResultsStore
    from codelupe_pipeline.registry.mlflow_store import ModelRegistry
    from codelupe_pipeline.resources import ComputeResource
    from codelupe_pipeline.train.samples import read_snapshot_files

    settings = Settings.from_env()
    registry = ModelRegistry(
        settings.resolved_mlflow_tracking_uri, settings.registered_model, settings.mlflow_artifact_root
    )
    adapters_cache = settings.eval_dir / "adapters"
    if args.version:
        info = registry.version(args.version) if args.version.isdigit() else registry.alias(args.version)
        if info is None:
            raise ValueError(f"--version {args.version}: no such version or alias of {settings.registered_model}")
        candidate = registered_subject(registry, info, adapters_cache, label="version", cacheable=False)
        candidate = replace(candidate, base_location=args.base or candidate.base_location)
    else:
        adapter = Path(args.adapter).expanduser().resolve()
        if not (adapter / "adapter_config.json").exists():
            raise ValueError(f"--adapter {adapter}: not a LoRA adapter directory (no adapter_config.json)")
        base = args.base or adapter_base_model(adapter)
        if not base:
            raise ValueError(f"--adapter {adapter}: no base model recorded; pass --base")
        candidate = Subject(f"adapter:{adapter}", f"adapter {adapter.name}", base, str(adapter))
    subjects = plan(candidate, registry, adapters_cache, not args.no_base, not args.no_champion)

    snapshot_version = args.snapshot
    if snapshot_version is None and settings.snapshots_dir.exists():
        manifests = sorted(settings.snapshots_dir.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
        snapshot_version = manifests[-1].parent.name if manifests else "none"
    config = EvaluationConfig(
        benchmarks=[b for b in (args.benchmarks or "").split(",") if b],
        task_limit=args.tasks,
        samples_per_task=args.samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        backend=args.backend,
        your_stack_tasks=0 if snapshot_version in (None, "none") else 200,
    )
    tiny = (Path(candidate.base_location) / "codelupe_profile.json").exists()
    heldout = None
    if snapshot_version not in (None, "none"):
        snapshot = load_snapshot(settings.snapshots_dir, str(snapshot_version))
        heldout = build_heldout(read_snapshot_files(snapshot.data_path, "validation"), heldout_params(config, tiny))
    evaluator = Evaluator(
        load_benchmarks(settings.benchmarks_file, config.benchmarks or None),
        heldout,
        evaluation_settings(config, tiny, settings.sandbox_isolation, settings.sandbox_workers),
        ComputeResource(device=settings.device).resolve(),
        ResultsStore(settings.eval_results_path),
        progress=lambda line: print(line, flush=True),
        progress_bars=args.progress if args.progress is not None else sys.stderr.isatty(),
    )
    run = evaluator.evaluate(subjects.subjects)
    report = build_report(run, subjects, candidate.label)
    rows: list[tuple[str, ...]] = [tuple(comparison_header(report, candidate.label))]
    rows += [tuple(str(cell) for cell in row) for row in comparison_rows(report)]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    for summary in run.benchmarks:
        if summary.skipped or summary.excluded:
            print(f"{summary.name}: {summary.skipped or f'{len(summary.excluded)} task(s) excluded'}")
    if report.champion_error:
        print(f"champion not compared: {report.champion_error}")
    if report.isolation_warning:
        print(report.isolation_warning)
    print(f"per-task results: {settings.eval_results_path}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    home = prepare_dagster_home(settings)
    settings.mlflow_artifact_root.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    procs = [
        subprocess.Popen(
            [
                str(bin_dir / "dagster"),
                "dev",
                "-w",
                str(WORKSPACE_YAML),
                "-h",
                args.host,
                "-p",
                str(args.dagster_port),
            ],
            env={**os.environ, "DAGSTER_HOME": str(home)},
        ),
        subprocess.Popen(
            [
                str(bin_dir / "mlflow"),
                "server",
                "--backend-store-uri",
                settings.resolved_mlflow_tracking_uri,
                "--artifacts-destination",
                str(settings.mlflow_artifact_root),
                "--host",
                args.host,
                "--port",
                str(args.mlflow_port),
            ]
        ),
    ]
    print(f"Dagster UI: http://{args.host}:{args.dagster_port}   MLflow UI: http://{args.host}:{args.mlflow_port}")
    print("Ctrl-C stops both.")
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """The VRAM plan of a training setup, against the detected or a given GPU; exit 1 when it does not fit."""
    from codelupe_pipeline.assets.metadata import markdown_text
    from codelupe_pipeline.train.base_model import resolve_quantization
    from codelupe_pipeline.train.memory import (
        PLAN_ROWS_HEADERS,
        PLAN_TABLE_HEADERS,
        SEED_TABLE_HEADERS,
        GiB,
        MemoryBudget,
        PlanSettings,
        memory_budget,
        plan_memory,
        plan_table_rows,
        seed_comparison,
    )
    from codelupe_pipeline.train.profiles import PROFILES, resolve_profile

    settings = Settings.from_env()
    gpu_gb = args.gpu_gb if args.gpu_gb is not None else settings.gpu_memory_gb
    budget = (
        MemoryBudget(int(gpu_gb * GiB), f"a {gpu_gb:g} GiB GPU")
        if gpu_gb
        else memory_budget("cuda" if args.quantization != "fp32" else "cpu")
    )
    if args.compare_seed:
        print(f"Budget: {budget.source}, {budget.bytes / GiB:.1f} GiB\n")
        print(markdown_text(SEED_TABLE_HEADERS, seed_comparison(budget)))
        return 0
    names = list(PROFILES) if args.all else [args.model or settings.model]
    plans = []
    for name in names:
        profile = resolve_profile(name, settings.model_profiles_file)
        plan_settings = PlanSettings(
            quantization=resolve_quantization(args.quantization, "cuda"),
            lora_rank=args.rank or profile.lora_rank,
            seq_len=args.seq_len or profile.seq_len,
            micro_batch_size=args.micro_batch or profile.micro_batch_size,
            gradient_checkpointing=not args.no_gradient_checkpointing,
            optimizer=args.optimizer,
        )
        plans.append((plan_memory(profile, plan_settings), budget))
    print(f"Budget: {budget.source}, {budget.bytes / GiB:.1f} GiB\n")
    print(markdown_text(PLAN_TABLE_HEADERS, plan_table_rows(plans)))
    if len(plans) == 1:
        plan = plans[0][0]
        print("\n" + markdown_text(PLAN_ROWS_HEADERS, plan.rows()))
    return 0 if all(plan.total <= plan_budget.bytes for plan, plan_budget in plans) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codelupe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")

    run = command("run", help="materialize the whole pipeline once, headless, and print a summary")
    run.add_argument("--steps", type=int, help="training steps (default: the model profile's)")
    run.add_argument("--tasks", type=int, help="score only the first N tasks of each benchmark (default: all)")
    run.add_argument("--verbose", "-v", action="store_true", help="print every step's log messages")
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar of the run's steps (default: when stderr is a terminal)",
    )
    run.set_defaults(func=cmd_run)
    evaluate = command(
        "evaluate", help="benchmark an adapter directory or MLflow model version against its base and the champion"
    )
    which = evaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--adapter", help="a LoRA adapter directory")
    which.add_argument("--version", help="a version of the registered model: a number, champion or challenger")
    evaluate.add_argument("--base", help="base model (default: the one the version or adapter records)")
    evaluate.add_argument("--benchmarks", help="comma-separated benchmark names (default: every configured one)")
    evaluate.add_argument("--tasks", type=int, default=0, help="first N tasks of each benchmark (default: all)")
    evaluate.add_argument("--samples", type=int, default=1, help="completions per task, n (default: 1)")
    evaluate.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    evaluate.add_argument("--max-new-tokens", type=int, default=0, help="per completion (default: 512)")
    evaluate.add_argument("--backend", default="auto", help="auto, vllm or transformers")
    evaluate.add_argument("--snapshot", help="snapshot version for the held-out set (default: latest; none: skip)")
    evaluate.add_argument("--no-base", action="store_true", help="do not score the base model")
    evaluate.add_argument("--no-champion", action="store_true", help="do not score the champion")
    evaluate.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar of each generation pass (default: when stderr is a terminal)",
    )
    evaluate.set_defaults(func=cmd_evaluate)
    command("config", help="every setting, its environment variable and current value").set_defaults(func=cmd_config)
    command("champion", help="the current champion and challenger with their lineage").set_defaults(func=cmd_champion)
    plan = command("plan", help="will training fit the GPU? the memory plan, component by component")
    plan.add_argument("--model", help="profile, hub id or local model directory (default: CODELUPE_MODEL)")
    plan.add_argument("--all", action="store_true", help="every built-in profile with its recommended settings")
    plan.add_argument("--quantization", default="nf4", choices=["nf4", "int8", "bf16", "fp32"])
    plan.add_argument("--rank", type=int, help="LoRA rank (default: the profile's)")
    plan.add_argument("--seq-len", type=int, help="tokens per sequence (default: the profile's)")
    plan.add_argument("--micro-batch", type=int, help="sequences per forward pass (default: the profile's)")
    plan.add_argument("--no-gradient-checkpointing", action="store_true")
    plan.add_argument("--optimizer", default="paged_adamw_8bit", choices=["paged_adamw_8bit", "adamw_8bit", "adamw"])
    plan.add_argument("--gpu-gb", type=float, help="plan against a GPU of this many GiB (default: detect)")
    plan.add_argument("--compare-seed", action="store_true", help="the planner against the seed's budgets")
    plan.set_defaults(func=cmd_plan)
    ui = command("ui", help="serve the Dagster UI and the MLflow UI on the same state")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--dagster-port", type=int, default=3000)
    ui.add_argument("--mlflow-port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:  # bad settings or sources file: say what, not a traceback
        print(f"codelupe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
