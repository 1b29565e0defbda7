"""Training: the base model, then a LoRA adapter trained on the curated snapshot and tracked in MLflow."""

import subprocess
from dataclasses import asdict, dataclass

import dagster as dg
from pydantic import Field

from codelupe_pipeline.assets.curation import CURATED_SNAPSHOT
from codelupe_pipeline.assets.metadata import markdown_table
from codelupe_pipeline.curate.snapshot import SnapshotInfo, load_snapshot
from codelupe_pipeline.registry.mlflow_store import CHALLENGER
from codelupe_pipeline.resources import ComputeResource, MlflowResource, ModelResource, StorageResource
from codelupe_pipeline.settings import CHECKOUT_DIR
from codelupe_pipeline.train.base_model import BaseModelRef, build_tiny_model
from codelupe_pipeline.train.samples import read_snapshot_files
from codelupe_pipeline.train.trainer import StepLog, TrainingParams, TrainingResult, train_adapter

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
    val_loss_after: float | None
    model_version: str  # the MLflow model version registered for this adapter (alias `challenger`)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CHECKOUT_DIR, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


@dg.asset(
    key=BASE_MODEL,
    ins={"curated_snapshot": dg.AssetIn(CURATED_SNAPSHOT)},
    group_name="training",
    kinds={"pytorch", "huggingface"},
    code_version="1",
    description=(
        "The base model to fine-tune. For the tiny CPU profile it is built here once per data directory: a "
        "byte-level BPE tokenizer trained on the curated corpus and a random-init Qwen2 model, saved with "
        "save_pretrained. Real profiles resolve to their hub id or a local path."
    ),
)
def base_model(
    context: dg.AssetExecutionContext,
    curated_snapshot: SnapshotInfo,
    model: ModelResource,
    storage: StorageResource,
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
    return dg.Output(
        ref,
        metadata={
            "profile": profile.name,
            "location": ref.location,
            "action": action,
            "approx_parameters": profile.approx_params,
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
        },
    )


class TrainingConfig(dg.Config):
    """LoRA training run settings. Empty fields take the model profile's recommendation."""

    max_steps: int | None = Field(default=None, description="Optimizer steps; 0 = one epoch; empty = profile's.")
    learning_rate: float | None = Field(default=None, description="Peak learning rate (warmup, then cosine).")
    micro_batch_size: int | None = Field(default=None, description="Sequences per forward pass.")
    grad_accum_steps: int | None = Field(default=None, description="Micro-batches per optimizer step.")
    seq_len: int | None = Field(default=None, description="Tokens per training sequence.")
    lora_rank: int | None = Field(default=None, description="LoRA rank r.")
    lora_alpha: int | None = Field(default=None, description="LoRA alpha (scaling = alpha / r).")
    eval_every: int = Field(default=50, description="Validation loss every this many steps.")
    seed: int = Field(default=42, description="Seed for weights init, data order and dropout.")
    quantization: str = Field(default="auto", description="auto (nf4 on CUDA, none on CPU), nf4, int8 or none.")
    snapshot_version: str | None = Field(
        default=None, description="Train on this snapshot version instead of the latest one."
    )


def _params(config: TrainingConfig, model: ModelResource) -> TrainingParams:
    profile = model.profile()

    def pick(value: float | int | None, default: float | int) -> float | int:
        return default if value is None else value

    return TrainingParams(
        max_steps=int(pick(config.max_steps, profile.max_steps)),
        learning_rate=float(pick(config.learning_rate, profile.learning_rate)),
        micro_batch_size=int(pick(config.micro_batch_size, profile.micro_batch_size)),
        grad_accum_steps=int(pick(config.grad_accum_steps, profile.grad_accum_steps)),
        seq_len=int(pick(config.seq_len, profile.seq_len)),
        lora_rank=int(pick(config.lora_rank, profile.lora_rank)),
        lora_alpha=int(pick(config.lora_alpha, profile.lora_alpha)),
        lora_target_modules=profile.lora_target_modules,
        eval_every=config.eval_every,
        seed=config.seed,
        quantization=config.quantization,
    )


def _loss_table(result: TrainingResult, rows: int = 12) -> dg.MetadataValue:
    losses = result.train_losses
    stride = max(1, len(losses) // rows)
    sampled = losses[::stride] + ([losses[-1]] if losses and losses[-1] not in losses[::stride] else [])
    val = dict(result.val_losses)
    return markdown_table(["step", "train loss", "validation loss"], [(s, v, val.get(s, "")) for s, v in sampled])


@dg.asset(
    key=LORA_ADAPTER,
    ins={"curated_snapshot": dg.AssetIn(CURATED_SNAPSHOT), "base_model": dg.AssetIn(BASE_MODEL)},
    group_name="training",
    kinds={"pytorch", "mlflow"},
    pool="gpu",
    code_version="1",
    description=(
        "A LoRA adapter trained on the curated snapshot's train split (QLoRA in 4-bit on CUDA, fp32 on CPU), "
        "logged to MLflow with its parameters, loss curve and artifacts, and registered as a new model version "
        "with the alias `challenger`. Adapters are never overwritten: each lands in its own directory named "
        "after the snapshot and the Dagster run."
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
    params = _params(config, model)
    out_dir = storage.adapters_dir / f"{snapshot.version}-{context.run_id[:8]}"
    registry = mlflow.registry()
    run_id = registry.start_run(
        experiment=f"codelupe/{base_model.profile}",
        run_name=f"snapshot-{snapshot.version}",
        tags={
            "dataset_version": snapshot.version,
            "dagster_run_id": context.run_id,
            "base_model": base_model.location,
            "git_commit": git_commit(),
        },
    )
    registry.log_params(
        run_id,
        {
            **asdict(params),
            "device": device,
            "snapshot_version": snapshot.version,
            "snapshot_rows": snapshot.row_count,
            "base_model": base_model.location,
        },
    )
    log_every = max(1, (params.max_steps or 100) // 20)

    def on_step(s: StepLog) -> None:
        registry.log_metrics(
            run_id,
            {
                "train_loss": s.loss,
                "learning_rate": s.learning_rate,
                "grad_norm": s.grad_norm,
                "tokens_per_second": s.tokens_per_second,
            },
            step=s.step,
        )
        if s.step % log_every == 0 or s.step == 1:
            context.log.info(
                f"step {s.step}: loss {s.loss:.4f}, lr {s.learning_rate:.2e}, {s.tokens_per_second:,.0f} tok/s, "
                f"ETA {s.eta_seconds:.0f} s"
            )

    def on_eval(step: int, loss: float) -> None:
        registry.log_metrics(run_id, {"val_loss": loss}, step=step)
        context.log.info(f"step {step}: validation loss {loss:.4f}")

    context.log.info(f"training on {device}: snapshot {snapshot.version} ({snapshot.row_count:,} rows)")
    try:
        result = train_adapter(base_model.location, snapshot.data_path, out_dir, params, device, on_step, on_eval)
    except BaseException:
        registry.end_run(run_id, "FAILED")
        raise
    registry.log_artifacts(run_id, out_dir, "adapter")
    registry.log_metrics(
        run_id,
        {
            "train_tokens": result.train_tokens,
            "peak_memory_mb": result.peak_memory_bytes / 2**20,
            "train_seconds": result.duration_seconds,
        },
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
            "val_loss": f"{result.final_val_loss:.6f}" if result.final_val_loss is not None else "",
            "stage": "trained, not yet benchmarked",
        },
        description=f"LoRA on {base_model.profile}, dataset snapshot {snapshot.version}",
    )
    registry.set_alias(CHALLENGER, version.version)
    context.log.info(f"registered {registry.model_name} v{version.version} as {CHALLENGER}")
    ref = AdapterRef(
        directory=str(out_dir),
        mlflow_run_id=run_id,
        snapshot_version=snapshot.version,
        snapshot_rows=snapshot.row_count,
        base_model=base_model,
        val_loss_before=result.initial_val_loss,
        val_loss_after=result.final_val_loss,
        model_version=version.version,
    )
    return dg.Output(
        ref,
        metadata={
            "snapshot_version": snapshot.version,
            "snapshot_rows": snapshot.row_count,
            "adapter_path": dg.MetadataValue.path(str(out_dir)),
            "device": device,
            "steps": len(result.train_losses),
            "train_loss_first": result.train_losses[0][1],
            "train_loss_last": result.train_losses[-1][1],
            "val_loss_before": result.initial_val_loss,
            "val_loss_after": result.final_val_loss,
            "tokens_per_second": round(result.tokens_per_second, 1),
            "peak_memory_mb": round(result.peak_memory_bytes / 2**20, 1),
            "trainable_parameters": result.trainable_params,
            "train_samples": result.train_samples,
            "loss_curve": _loss_table(result),
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(registry.run_url(run_id, mlflow.ui_url)),
            "model_version": version.version,
        },
    )
