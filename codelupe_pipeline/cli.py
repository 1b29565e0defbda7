"""`codelupe`: run the pipeline once, inspect settings and the champion, open the UIs."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
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

    from codelupe_pipeline.automation.run_once import run_pipeline_once
    from codelupe_pipeline.definitions import build_definitions

    defs = build_definitions(settings)
    # Dagster's console logger at INFO: step progress without every engine event.
    run_config: dict[str, Any] = {"ops": {}, "loggers": {"console": {"config": {"log_level": "INFO"}}}}
    if args.steps is not None:
        run_config["ops"]["lora_adapter"] = {"config": {"max_steps": args.steps}}
    if args.tasks is not None:
        run_config["ops"]["humaneval_benchmark"] = {"config": {"task_limit": args.tasks}}
    print(f"CodeLupe: data in {settings.data_dir}, model {settings.model}, device {settings.device}")
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        run = run_pipeline_once(defs, instance, run_config)
    result = run.result
    elapsed = time.monotonic() - started
    raw = _ingestion_totals(result)
    snapshot = _metadata(result, "curated_snapshot")
    adapter = _metadata(result, "lora_adapter")
    bench = _metadata(result, "humaneval_benchmark")
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
    if bench:
        lines.append(
            f"HumanEval pass@1: {_fmt(bench.get('pass@1'))} over {bench.get('tasks')} tasks "
            f"(sandbox: {bench.get('sandbox_isolation')})"
        )
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
        for key in (
            "dataset_version",
            "dataset_rows",
            "base_model",
            "humaneval_pass_at_1",
            "promotion_reason",
        ):
            print(f"  {key}: {info.tags.get(key, '')}")
    print("history: " + ", ".join(f"v{v.version}{'*' if CHAMPION in v.aliases else ''}" for v in versions))
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


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows])


def cmd_plan(args: argparse.Namespace) -> int:
    """The VRAM plan of a training setup, against the detected or a given GPU; exit 1 when it does not fit."""
    from codelupe_pipeline.train.base_model import resolve_quantization
    from codelupe_pipeline.train.memory import (
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
        print(_markdown(SEED_TABLE_HEADERS, seed_comparison(budget)))
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
    print(_markdown(PLAN_TABLE_HEADERS, plan_table_rows(plans)))
    if len(plans) == 1:
        plan = plans[0][0]
        print("\n" + _markdown(("component", "GiB", "how it is counted"), plan.rows()))
    return 0 if all(plan.total <= plan_budget.bytes for plan, plan_budget in plans) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codelupe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the whole pipeline once, headless, and print a summary")
    run.add_argument("--steps", type=int, help="training steps (default: the model profile's)")
    run.add_argument("--tasks", type=int, help="score only the first N HumanEval tasks (default: all 164)")
    run.set_defaults(func=cmd_run)
    sub.add_parser("config", help="every setting, its environment variable and current value").set_defaults(
        func=cmd_config
    )
    sub.add_parser("champion", help="the current champion and challenger with their lineage").set_defaults(
        func=cmd_champion
    )
    plan = sub.add_parser("plan", help="will training fit the GPU? the memory plan, component by component")
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
    ui = sub.add_parser("ui", help="serve the Dagster UI and the MLflow UI on the same state")
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
