"""Training: the base model, then a LoRA adapter trained on the curated snapshot and tracked in MLflow."""

import base64
import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from codelupe_pipeline.assets.curation import CURATED_SNAPSHOT
from codelupe_pipeline.assets.metadata import markdown_table
from codelupe_pipeline.curate.snapshot import SnapshotInfo, load_snapshot
from codelupe_pipeline.registry.mlflow_store import CHALLENGER, CHAMPION, ModelRegistry
from codelupe_pipeline.resources import ComputeResource, MlflowResource, ModelResource, StorageResource
from codelupe_pipeline.settings import CHECKOUT_DIR
from codelupe_pipeline.train.base_model import (
    BaseModelRef,
    attention_implementation,
    build_tiny_model,
    resolve_quantization,
)
from codelupe_pipeline.train.checkpoints import latest_checkpoint, run_key
from codelupe_pipeline.train.launcher import TrainingFailed, launch
from codelupe_pipeline.train.memory import (
    PLAN_ROWS_HEADERS,
    GiB,
    MemoryBudget,
    MemoryPlan,
    PlanDoesNotFit,
    PlanSettings,
    architecture_counts,
    check_cpu_sized,
    check_fits,
    memory_budget,
    plan_memory,
)
from codelupe_pipeline.train.profiles import ModelProfile, check_formats
from codelupe_pipeline.train.report import loss_curve_png
from codelupe_pipeline.train.samples import read_snapshot_files
from codelupe_pipeline.train.throughput import FlopsModel
from codelupe_pipeline.train.trainer import (
    TrainingJob,
    TrainingParams,
    resolve_checkpointing,
    resolve_optimizer,
)

BASE_MODEL = dg.AssetKey("base_model")
LORA_ADAPTER = dg.AssetKey("lora_adapter")


@dataclass(frozen=True)
class AdapterRef:
    """What training hands to evaluation and the registry."""

    directory: str
    mlflow_run_id: str
    snapshot_version: str
    snapshot_rows: int
    base_model: BaseModelRef
    val_loss_before: float | None
    val_loss_after: float | None  # of the adapter handed over: the best validation loss of the run
    model_version: str  # the MLflow model version registered for this adapter (alias `challenger`)
    train_steps: int = 0
    best_step: int = 0
    resumed_from_step: int = 0
    init: str = "fresh"  # or "champion vN": the adapter training continued from


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CHECKOUT_DIR, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def plan_settings(params: TrainingParams, device: str) -> PlanSettings:
    return PlanSettings(
        quantization=resolve_quantization(params.quantization, device),
        lora_rank=params.lora_rank,
        seq_len=params.seq_len,
        micro_batch_size=params.micro_batch_size,
        gradient_checkpointing=resolve_checkpointing(params.gradient_checkpointing, device),
        optimizer=resolve_optimizer(params.optimizer, device),
        lora_dropout=params.lora_dropout,
        loss_chunk_tokens=params.loss_chunk_tokens,
        flash_attention=attention_implementation(device) == "flash_attention_2",
        lora_targets=params.lora_target_modules,
    )


def plan_table(plan: MemoryPlan, budget: MemoryBudget) -> dg.MetadataValue:
    spare = (budget.bytes - plan.total) / GiB
    verdict = f"fits, {spare:.1f} GiB spare" if spare >= 0 else f"DOES NOT FIT: {-spare:.1f} GiB over"
    rows = [*plan.rows(), ("budget", round(budget.bytes / GiB, 2), f"{budget.source}: {verdict}")]
    return markdown_table(PLAN_ROWS_HEADERS, rows)


@dg.asset(
    key=BASE_MODEL,
    ins={"curated_snapshot": dg.AssetIn(CURATED_SNAPSHOT)},
    group_name="training",
    kinds={"pytorch", "huggingface"},
    code_version="2",
    description=(
        "The base model to fine-tune. For the tiny CPU profile it is built here once per data directory: a "
        "byte-level BPE tokenizer trained on the curated corpus and a random-init Qwen2 model, saved with "
        "save_pretrained. Real profiles resolve to their hub id or a local path. Its metadata shows the "
        "memory plan of the profile's recommended training settings on this machine's GPU."
    ),
)
def base_model(
    context: dg.AssetExecutionContext,
    curated_snapshot: SnapshotInfo,
    model: ModelResource,
    storage: StorageResource,
    compute: ComputeResource,
) -> dg.Output[BaseModelRef]:
    profile = model.profile()
    if profile.hub_id is None:
        location = storage.base_models_dir / profile.name
        built = not (location / "config.json").exists()
        if built:
            texts = (f.content for f in read_snapshot_files(curated_snapshot.data_path, "train"))
            build_tiny_model(profile, texts, location)
            context.log.info(f"built the {profile.name} base model at {location}")
        ref = BaseModelRef(profile.name, str(location), built_locally=True)
        action = "built" if built else "reused"
    else:
        ref = BaseModelRef(profile.name, profile.hub_id, built_locally=False)
        action = "referenced"
    device = compute.resolve()
    plan = plan_memory(profile, plan_settings(training_params(TrainingConfig(), profile), device))
    counts = architecture_counts(profile)
    return dg.Output(
        ref,
        metadata={
            "profile": profile.name,
            "location": ref.location,
            "action": action,
            "parameters": counts.total_params,
            "active_parameters": counts.active_params,
            "architecture": markdown_table(
                ["type", "layers", "hidden", "heads", "kv heads", "intermediate", "vocab"],
                [
                    (
                        profile.architecture,
                        profile.num_layers,
                        profile.hidden_size,
                        profile.num_heads,
                        profile.num_kv_heads,
                        profile.intermediate_size,
                        profile.vocab_size,
                    )
                ],
            ),
            "training_formats": ", ".join(profile.sample_formats),
            "fim_tokens": " ".join(asdict(profile.fim).values()) if profile.fim else "none",
            "chat_format": profile.chat_format,
            "memory_plan": plan_table(plan, memory_budget(device, compute.gpu_memory_gb)),
        },
    )


class TrainingConfig(dg.Config):
    """LoRA training run settings. Empty fields take the model profile's recommendation."""

    max_steps: int | None = Field(default=None, description="Optimizer steps; 0 = `epochs` passes; empty = profile's.")
    epochs: float = Field(default=1.0, description="Passes over the training rows when max_steps is 0.")
    learning_rate: float | None = Field(default=None, description="Peak learning rate (warmup, then cosine).")
    micro_batch_size: int | None = Field(default=None, description="Packed sequences per forward pass.")
    grad_accum_steps: int | None = Field(default=None, description="Micro-batches per optimizer step.")
    seq_len: int | None = Field(default=None, description="Tokens per training sequence.")
    lora_rank: int | None = Field(default=None, description="LoRA rank r.")
    lora_alpha: int | None = Field(default=None, description="LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = Field(default=0.05, description="Dropout on the LoRA inputs.")
    sample_formats: list[str] = Field(
        default=[], description="Sample formats: completion, fim, instruction; empty = the profile's."
    )
    packing: bool = Field(default=True, description="Pack several samples per sequence (no attention across).")
    eval_every: int = Field(default=50, description="Validation loss every this many steps (and at the end).")
    eval_batches: int = Field(default=0, description="Validation micro-batches per evaluation; 0 = all.")
    early_stopping_patience: int = Field(
        default=3, description="Stop after this many evaluations without improvement; 0 = never."
    )
    checkpoint_every: int = Field(default=50, description="Checkpoint every this many steps (resume point).")
    seed: int = Field(default=42, description="Seed for LoRA init, sample formats, data order and dropout.")
    quantization: str = Field(default="auto", description="auto (nf4 on CUDA, fp32 on CPU), nf4, int8, bf16, fp32.")
    optimizer: str = Field(
        default="auto",
        description="auto (paged_adamw_8bit on CUDA, adamw on CPU), paged_adamw_8bit, adamw_8bit, adamw.",
    )
    gradient_checkpointing: str = Field(default="auto", description="auto (on with CUDA), on or off.")
    init: str = Field(
        default="fresh", description="fresh: a new adapter on the base model; champion: continue the champion's."
    )
    resume: bool = Field(
        default=True, description="Resume an interrupted run with the same snapshot and settings; false = restart."
    )
    keep_checkpoints: bool = Field(default=False, description="Keep the run's checkpoints after it succeeded.")
    peak_tflops: float = Field(default=0.0, description="Device peak TFLOP/s for MFU; 0 = measure a matmul.")
    snapshot_version: str | None = Field(
        default=None, description="Train on this snapshot version instead of the latest one."
    )


def training_params(
    config: TrainingConfig, profile: ModelProfile, adapter_config: dict[str, Any] | None = None
) -> TrainingParams:
    """Run config over the profile's recommendation; an adapter to continue fixes the LoRA shape."""

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    formats = tuple(config.sample_formats) or profile.sample_formats
    check_formats(profile, formats)
    rank = int(pick(config.lora_rank, profile.lora_rank))
    alpha = int(pick(config.lora_alpha, profile.lora_alpha))
    targets = profile.lora_target_modules
    if adapter_config:  # continuing an adapter: its shape, whatever the config says
        rank, alpha = int(adapter_config["r"]), int(adapter_config["lora_alpha"])
        targets = tuple(sorted(adapter_config["target_modules"]))
    return TrainingParams(
        max_steps=int(pick(config.max_steps, profile.max_steps)),
        epochs=config.epochs,
        learning_rate=float(pick(config.learning_rate, profile.learning_rate)),
        micro_batch_size=int(pick(config.micro_batch_size, profile.micro_batch_size)),
        grad_accum_steps=int(pick(config.grad_accum_steps, profile.grad_accum_steps)),
        seq_len=int(pick(config.seq_len, profile.seq_len)),
        sample_formats=formats,
        packing=config.packing,
        lora_dropout=config.lora_dropout,
        eval_every=config.eval_every,
        eval_batches=config.eval_batches,
        early_stopping_patience=config.early_stopping_patience,
        checkpoint_every=config.checkpoint_every,
        seed=config.seed,
        quantization=config.quantization,
        optimizer=config.optimizer,
        gradient_checkpointing=config.gradient_checkpointing,
        lora_rank=rank,
        lora_alpha=alpha,
        lora_target_modules=targets,
    )


def champion_adapter(
    registry: ModelRegistry, base_model: BaseModelRef, work_dir: Path
) -> tuple[str, str, dict[str, Any]] | None:
    """(label, directory, adapter_config) of the champion to continue from; None when there is none yet."""
    champion = registry.alias(CHAMPION)
    if champion is None:
        return None
    if champion.tags.get("base_model") != base_model.location:
        raise dg.Failure(
            f"cannot continue champion v{champion.version}: it was trained on {champion.tags.get('base_model')!r}, "
            f"the base model is now {base_model.location!r}. Use init: fresh."
        )
    directory = Path(champion.tags.get("adapter_dir", ""))
    if not (directory / "adapter_config.json").exists():
        directory = registry.download_adapter(champion.version, work_dir / f"champion-v{champion.version}")
    return f"champion v{champion.version}", str(directory), json.loads((directory / "adapter_config.json").read_text())


def _loss_table(result: dict[str, Any], rows: int = 12) -> dg.MetadataValue:
    losses = [tuple(x) for x in result["train_losses"]]
    stride = max(1, len(losses) // rows)
    sampled = losses[::stride] + ([losses[-1]] if losses and losses[-1] not in losses[::stride] else [])
    val = {int(s): v for s, v in result["val_losses"]}
    return markdown_table(["step", "train loss", "validation loss"], [(s, v, val.get(int(s), "")) for s, v in sampled])


def _samples_table(result: dict[str, Any]) -> dg.MetadataValue:
    rows: list[tuple[str, str, object]] = []
    for split in ("sample_report", "validation_report"):
        report = result[split]
        name = "train" if split == "sample_report" else "validation"
        rows += [(name, "files", report["files"]), (name, "samples", report["samples"])]
        rows += [(name, "loss tokens / tokens", f"{report['loss_tokens']:,} / {report['tokens']:,}")]
        rows += [(name, f"format: {k}", v) for k, v in sorted(report["by_format"].items())]
        rows += [(name, f"target starts at: {k}", v) for k, v in sorted(report["by_boundary"].items())]
        rows += [(name, f"file skipped: {k}", v) for k, v in sorted(report["skipped_files"].items())]
    return markdown_table(["split", "what", "count"], rows)


class _Progress:
    """Training events -> the Dagster run log and the MLflow run."""

    def __init__(self, context: dg.AssetExecutionContext, registry: ModelRegistry, run_id: str) -> None:
        self.context, self.registry, self.run_id = context, registry, run_id
        self.log_every = 1

    def __call__(self, event: dict[str, Any]) -> None:
        kind, log = event["event"], self.context.log
        if kind == "samples":
            log.info(
                f"{event['train_samples']:,} training samples in {event['train_rows']:,} packed rows "
                f"({event['packing_efficiency']:.1%} of the sequence budget holds tokens); validation: "
                f"{event['validation_samples']:,} samples from {event['validation_note']}"
            )
        elif kind == "start":
            self.log_every = max(1, event["steps"] // 20)
            resumed = event["resumed_from_step"]
            log.info(
                f"training {event['steps']} steps on {event['device']} x{event['processes']} "
                f"({event['quantization']}, {event['optimizer']}, {event['attention']}, gradient checkpointing "
                f"{'on' if event['gradient_checkpointing'] else 'off'}), "
                f"{event['trainable_params']:,} LoRA parameters" + (f"; resumed at step {resumed}" if resumed else "")
            )
            self.registry.log_params(
                self.run_id, {"trainable_params": event["trainable_params"], "device": event["device"]}
            )
        elif kind == "step":
            metrics = {
                "train_loss": event["loss"],
                "learning_rate": event["learning_rate"],
                "grad_norm": event["grad_norm"],
                "tokens_per_second": event["tokens_per_second"],
                "non_pad_fraction": event["non_pad_fraction"],
                "peak_memory_mb": event["peak_memory_bytes"] / 2**20,
            }
            if event["mfu"] is not None:
                metrics["mfu"] = event["mfu"]
            self.registry.log_metrics(self.run_id, metrics, step=event["step"])
            if event["step"] % self.log_every == 0 or event["step"] in (1, event["steps"]):
                log.info(
                    f"step {event['step']}/{event['steps']}: loss {event['loss']:.4f}, "
                    f"lr {event['learning_rate']:.2e}, {event['tokens_per_second']:,.0f} tok/s, "
                    f"ETA {event['eta_seconds']:.0f} s"
                )
        elif kind == "eval":
            self.registry.log_metrics(self.run_id, {"val_loss": event["val_loss"]}, step=event["step"])
            log.info(
                f"step {event['step']}: validation loss {event['val_loss']:.4f}" + (" (best)" if event["best"] else "")
            )
        elif kind == "early_stop":
            log.info(
                f"early stop at step {event['step']}: no better validation loss for {event['patience']} "
                f"evaluations; the adapter is the best one, from step {event['best_step']}"
            )
        elif kind == "checkpoint":
            log.debug(f"checkpoint at step {event['step']}: {event['path']}")


@dg.asset(
    key=LORA_ADAPTER,
    ins={"curated_snapshot": dg.AssetIn(CURATED_SNAPSHOT), "base_model": dg.AssetIn(BASE_MODEL)},
    group_name="training",
    kinds={"pytorch", "mlflow"},
    pool="gpu",
    code_version="2",
    description=(
        "A LoRA adapter trained on the curated snapshot (QLoRA in 4-bit on CUDA, fp32 on CPU; packed "
        "completion / fill-in-the-middle / instruction samples, loss on the targets only). Refuses to start "
        "when the memory plan does not fit the GPU. Checkpoints under models/checkpoints/<snapshot>-<hash>; "
        "materializing again with the same snapshot and settings resumes there. Logged to MLflow (params, "
        "per-step metrics, adapter, tokenizer, config, loss curve) and registered as a new model version "
        "with the alias `challenger`. Adapters are never overwritten: each lands in its own directory."
    ),
)
def lora_adapter(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    curated_snapshot: SnapshotInfo,
    base_model: BaseModelRef,
    model: ModelResource,
    compute: ComputeResource,
    storage: StorageResource,
    mlflow: MlflowResource,
) -> dg.Output[AdapterRef]:
    snapshot = (
        load_snapshot(storage.snapshots_dir, config.snapshot_version) if config.snapshot_version else curated_snapshot
    )
    device = compute.resolve()
    profile = model.profile()
    registry = mlflow.registry()
    checkpoints_dir = storage.adapters_dir.parent / "checkpoints"

    init_label, init_dir, adapter_config = "fresh", None, None
    if config.init == "champion":
        found = champion_adapter(registry, base_model, storage.adapters_dir.parent / "downloads")
        if found is None:
            context.log.info("init: champion requested, but there is no champion yet: training a fresh adapter")
        else:
            init_label, init_dir, adapter_config = found
    elif config.init != "fresh":
        raise dg.Failure(f"init {config.init!r}: use fresh or champion")
    try:
        params = training_params(config, profile, adapter_config)
        settings = plan_settings(params, device)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc

    # The memory plan, shown before any weight is loaded; refuse a plan that cannot fit.
    plan = plan_memory(profile, settings)
    budget = memory_budget(device, compute.gpu_memory_gb)
    counts = architecture_counts(profile, params.lora_target_modules)
    context.log_event(dg.AssetObservation(asset_key=LORA_ADAPTER, metadata={"memory_plan": plan_table(plan, budget)}))
    context.log.info(f"memory plan: {plan.summary()}; budget: {budget.bytes / GiB:.1f} GiB ({budget.source})")
    try:
        check_cpu_sized(profile, counts.total_params, device, compute.device)
        check_fits(profile, plan, budget)
    except PlanDoesNotFit as exc:
        raise dg.Failure(description=str(exc), metadata={"memory_plan": plan_table(plan, budget)}) from exc

    job = TrainingJob(
        base_model=base_model.location,
        snapshot_data=str(snapshot.data_path),
        snapshot_version=snapshot.version,
        run_dir="",
        adapter_dir=str(storage.adapters_dir / f"{snapshot.version}-{context.run_id[:8]}"),
        params=params,
        device=device,
        init_adapter=init_dir,
        fim=profile.fim,
        chat_template=profile.chat_template,
        flops=FlopsModel(counts.active_params - counts.embedding_params, counts.num_layers, counts.hidden_size),
        peak_flops=config.peak_tflops * 1e12,
    )
    key = run_key(snapshot.version, {**job.identity(), "init": init_label, "processes": compute.train_processes})
    run_dir = checkpoints_dir / key
    if not config.resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    job = replace(job, run_dir=str(run_dir))
    latest = latest_checkpoint(run_dir) if run_dir.exists() else None
    context.log.info(
        f"run directory {run_dir}: "
        + (f"resuming from {latest.name}" if latest else "a fresh run (materialize again to resume if it stops)")
    )

    # One MLflow run per training, also across restarts: a resumed run continues its own curve.
    run_id_file = run_dir / "mlflow_run_id"
    run_id = run_id_file.read_text().strip() if run_id_file.exists() else ""
    if not (run_id and registry.reopen_run(run_id)):
        run_id = registry.start_run(
            experiment=f"codelupe/{base_model.profile}",
            run_name=f"snapshot-{snapshot.version}",
            tags={
                "dataset_version": snapshot.version,
                "dagster_run_id": context.run_id,
                "base_model": base_model.location,
                "git_commit": git_commit(),
                "init": init_label,
                "run_dir": str(run_dir),
            },
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        run_id_file.write_text(run_id)
        registry.log_params(
            run_id,
            {
                **asdict(params),
                "snapshot_version": snapshot.version,
                "snapshot_rows": snapshot.row_count,
                "base_model": base_model.location,
                "profile": profile.name,
                "processes": compute.train_processes,
                "init": init_label,
                "planned_memory_gib": round(plan.total / GiB, 2),
            },
        )
    else:
        registry.client.set_tag(run_id, "resumed_by_dagster_run", context.run_id)

    context.log.info(f"training on {device}: snapshot {snapshot.version} ({snapshot.row_count:,} rows)")
    try:
        result = launch(job, _Progress(context, registry, run_id), processes=compute.train_processes)
    except TrainingFailed as exc:
        registry.end_run(run_id, "FAILED")
        raise dg.Failure(
            description=str(exc)[:4000],
            metadata={
                "run_dir": dg.MetadataValue.path(str(run_dir)),
                "log": dg.MetadataValue.path(str(run_dir / "train.log")),
            },
        ) from exc

    adapter_dir = Path(result["adapter_dir"])
    curve = loss_curve_png(
        result["train_losses"],
        result["val_losses"],
        f"{profile.name} on snapshot {snapshot.version}",
        resumed_at=result["resumed_from_step"],
        best_step=result["best_step"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        curve_file = Path(tmp) / "loss_curve.png"
        curve_file.write_bytes(curve)
        registry.log_file(run_id, curve_file, "training")
    registry.log_artifacts(run_id, adapter_dir, "adapter")  # weights, tokenizer, training_job.json
    registry.log_file(run_id, run_dir / "job.json", "training")
    registry.log_metrics(
        run_id,
        {
            "val_loss_best": result["val_loss_after"],
            "best_step": result["best_step"],
            "train_tokens": result["tokens"],
            "train_seconds": result["train_seconds"],
            "non_pad_fraction_mean": result["non_pad_fraction"],
            "peak_memory_mb": result["peak_memory_bytes"] / 2**20,
            **({"mfu_mean": result["mfu"]} if result["mfu"] is not None else {}),
        },
        step=result["steps"],
    )
    registry.end_run(run_id)
    # Every trained adapter becomes a model version at once (alias `challenger`); the benchmark adds its
    # scores and the promotion gate decides whether it also becomes `champion`.
    version = registry.register(
        run_id,
        tags={
            "dataset_version": snapshot.version,
            "dataset_rows": str(snapshot.row_count),
            "base_model": base_model.location,
            "base_model_profile": base_model.profile,
            "dagster_run_id": context.run_id,
            "git_commit": git_commit(),
            "val_loss": f"{result['val_loss_after']:.6f}",
            "adapter_dir": str(adapter_dir),
            "init": init_label,
            "train_steps": str(result["steps"]),
            "best_step": str(result["best_step"]),
            "stage": "trained, not yet benchmarked",
        },
        description=f"LoRA on {base_model.profile}, dataset snapshot {snapshot.version}",
    )
    registry.set_alias(CHALLENGER, version.version)
    context.log.info(f"registered {registry.model_name} v{version.version} as {CHALLENGER}")
    if not config.keep_checkpoints:
        shutil.rmtree(run_dir, ignore_errors=True)  # the adapter lives on in adapters/ and in MLflow

    train_losses = result["train_losses"]
    ref = AdapterRef(
        directory=str(adapter_dir),
        mlflow_run_id=run_id,
        snapshot_version=snapshot.version,
        snapshot_rows=snapshot.row_count,
        base_model=base_model,
        val_loss_before=result["val_loss_before"],
        val_loss_after=result["val_loss_after"],
        model_version=version.version,
        train_steps=result["steps"],
        best_step=result["best_step"],
        resumed_from_step=result["resumed_from_step"],
        init=init_label,
    )
    return dg.Output(
        ref,
        metadata={
            "snapshot_version": snapshot.version,
            "snapshot_rows": snapshot.row_count,
            "adapter_path": dg.MetadataValue.path(str(adapter_dir)),
            "device": device,
            "processes": result["processes"],
            "init": init_label,
            "steps": result["steps"],
            "planned_steps": result["planned_steps"],
            "stopped_early": result["stopped_early"],
            "best_step": result["best_step"],
            "resumed_from_step": result["resumed_from_step"],
            "train_loss_first": train_losses[0][1],
            "train_loss_last": train_losses[-1][1],
            "val_loss_before": result["val_loss_before"],
            "val_loss_after": result["val_loss_after"],
            "tokens_per_second": round(result["tokens_per_second"], 1),
            "non_pad_fraction": round(result["non_pad_fraction"], 4),
            "mfu": round(result["mfu"], 5) if result["mfu"] is not None else "",
            "mfu_basis": f"{result['peak_flops'] / 1e12:.3f} TFLOP/s peak: {result['peak_flops_basis']}",
            "peak_memory_mb": round(result["peak_memory_bytes"] / 2**20, 1),
            "planned_memory_gib": round(plan.total / GiB, 2),
            "memory_plan": plan_table(plan, budget),
            "trainable_parameters": result["trainable_params"],
            "train_samples": result["train_samples"],
            "validation": result["validation_note"],
            "samples": _samples_table(result),
            "loss_curve": _loss_table(result),
            "loss_curve_plot": dg.MetadataValue.md(
                f"![loss curve](data:image/png;base64,{base64.b64encode(curve).decode()})"
            ),
            "run_dir": dg.MetadataValue.path(str(run_dir)),
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(registry.run_url(run_id, mlflow.ui_url)),
            "model_version": version.version,
        },
    )
