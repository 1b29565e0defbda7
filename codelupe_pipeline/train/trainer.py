"""LoRA fine-tuning, from a snapshot to an adapter directory, in one readable loop.

    samples -> packed rows -> base model (+ 4-bit on CUDA) -> LoRA -> for each step: accumulate micro-batches,
    clip, step, log; evaluate every N steps (best adapter kept, early stopping); checkpoint every N steps
    -> the best adapter, with its tokenizer and job, in `adapter_dir`.

One process per device: run alone it trains on one device; under `torchrun` / `accelerate launch` each
process takes its share of every step's micro-batches and DDP averages the gradients (gloo on CPU, NCCL on
CUDA). The loop is the same on CPU (fp32) and CUDA (QLoRA: NF4 weights, bf16 compute, paged 8-bit AdamW,
gradient checkpointing, flash-attention-2 when installed). Progress leaves as events (plain dicts).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from codelupe_pipeline.train import checkpoints as ckpt
from codelupe_pipeline.train.base_model import (
    attention_implementation,
    load_model,
    load_tokenizer,
    resolve_quantization,
)
from codelupe_pipeline.train.packing import PACKED_SDPA, RowOrder, collate, one_per_row, pack, register_packed_attention
from codelupe_pipeline.train.profiles import FimTokens
from codelupe_pipeline.train.samples import (
    IGNORE_INDEX,
    Sample,
    SampleReport,
    SampleSpec,
    build_samples,
    file_separator,
    read_snapshot_files,
)
from codelupe_pipeline.train.throughput import FlopsModel, measure_peak_flops, peak_memory_bytes

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainingParams:
    max_steps: int = 100  # 0 = `epochs` passes over the training rows
    epochs: float = 1.0
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decay ends at this fraction of the peak
    warmup_fraction: float = 0.03
    weight_decay: float = 0.01
    micro_batch_size: int = 8
    grad_accum_steps: int = 1
    seq_len: int = 512
    sample_formats: tuple[str, ...] = ("completion",)
    packing: bool = True
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_grad_norm: float = 1.0
    eval_every: int = 25
    eval_batches: int = 0  # 0 = the whole validation split
    early_stopping_patience: int = 3  # evaluations without improvement before stopping; 0 = never
    early_stopping_min_delta: float = 0.0
    checkpoint_every: int = 25
    keep_checkpoints: int = 2
    seed: int = 42
    quantization: str = "auto"  # auto (nf4 on CUDA, fp32 on CPU), nf4, int8, bf16, fp32
    optimizer: str = "auto"  # auto (paged_adamw_8bit on CUDA, adamw on CPU), paged_adamw_8bit, adamw_8bit, adamw
    gradient_checkpointing: str = "auto"  # auto (on on CUDA), on, off
    loss_chunk_tokens: int = 1024  # logits of this many tokens at a time (0 = all at once)


@dataclass(frozen=True)
class TrainingJob:
    """Everything one training run needs; written as job.json in its run directory."""

    base_model: str
    snapshot_data: str
    snapshot_version: str
    run_dir: str
    adapter_dir: str
    params: TrainingParams
    device: str = "cpu"
    init_adapter: str | None = None  # continue training this adapter (the champion) instead of a fresh one
    fim: FimTokens | None = None
    chat_template: str | None = None  # the profile's, for a tokenizer that ships none
    flops: FlopsModel | None = None  # for MFU; None = not reported
    peak_flops: float = 0.0  # device FLOP/s for MFU; 0 = measure

    def identity(self) -> dict[str, Any]:
        """What determines the training's result: the run directory is keyed by it."""
        data = asdict(self)
        for where in ("run_dir", "adapter_dir", "flops", "peak_flops", "snapshot_data"):
            data.pop(where)
        data["device"] = self.device.split(":")[0]
        return data

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainingJob:
        data = json.loads(text)
        params = data.pop("params")
        for name in ("sample_formats", "lora_target_modules"):
            params[name] = tuple(params[name])
        data["params"] = TrainingParams(**params)
        data["fim"] = FimTokens(**data["fim"]) if data.get("fim") else None
        data["flops"] = FlopsModel(**data["flops"]) if data.get("flops") else None
        return cls(**data)


def resolve_optimizer(name: str, device: str) -> str:
    return ("paged_adamw_8bit" if device.startswith("cuda") else "adamw") if name == "auto" else name


def resolve_checkpointing(value: str, device: str) -> bool:
    return device.startswith("cuda") if value == "auto" else value == "on"


def lr_multiplier(step: int, total: int, params: TrainingParams) -> float:
    """Linear warmup, then cosine decay to `min_lr_ratio` of the peak learning rate."""
    warmup = max(1, int(total * params.warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return params.min_lr_ratio + (1 - params.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes (one, or several under torchrun)."""

    rank: int
    world: int
    device: str

    @classmethod
    def start(cls, device: str) -> Processes:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(0, 1, device)
        if device.startswith("cuda"):
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        torch_dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return cls(torch_dist.get_rank(), world, device)

    def sum(self, *values: float) -> list[float]:
        """Sum each value over all processes."""
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            torch_dist.barrier()

    def close(self) -> None:
        if self.world > 1 and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- data
@dataclass
class TrainingData:
    train: list[Sample]
    rows: list[list[int]]
    validation: list[Sample]
    validation_rows: list[list[int]]
    report: SampleReport
    validation_report: SampleReport
    validation_note: str
    fingerprint: str  # of every training token: a checkpoint only resumes onto the same samples
    pad_id: int
    micro_batch_size: int

    def batch(self, rows: list[list[int]], samples: list[Sample], which: list[int]) -> dict[str, torch.Tensor]:
        return collate([[samples[i] for i in rows[r]] for r in which], self.pad_id)

    @property
    def packing_efficiency(self) -> float:
        """Non-pad tokens / tokens computed if every row were filled to the longest row."""
        width = max(sum(len(self.train[i]) for i in row) for row in self.rows)
        return self.report.tokens / max(1, len(self.rows) * width)


def prepare_data(job: TrainingJob, tokenizer: Any) -> TrainingData:
    params = job.params
    train_files = read_snapshot_files(Path(job.snapshot_data), "train")
    validation_files = read_snapshot_files(Path(job.snapshot_data), "validation")
    note = "the snapshot's validation split"
    if not validation_files and len(train_files) >= 2:
        # A corpus from one repository has no validation split: hold out every 20th file (whole files, no leak).
        validation_files = train_files[::20]
        train_files = [f for i, f in enumerate(train_files) if i % 20]
        note = f"{len(validation_files)} files held out of the train split (the snapshot has no validation split)"
    separator = file_separator(tokenizer.get_vocab())
    spec = SampleSpec(params.sample_formats, params.seq_len, params.seed, job.fim, separator)
    train, report = build_samples(train_files, tokenizer, spec)
    validation, validation_report = build_samples(validation_files, tokenizer, spec)
    if not train:
        raise ValueError(
            f"snapshot {job.snapshot_data} gave no training samples from {report.files} files "
            f"(skipped: {dict(report.skipped_files)})"
        )
    if not validation:
        validation, validation_report, note = train[:: max(1, len(train) // 8)], report, "train samples (no others)"
    arrange = (lambda lengths: pack(lengths, params.seq_len)) if params.packing else one_per_row
    digest = hashlib.sha256()
    for sample in train:
        digest.update(sample.ids.tobytes() + sample.prompt_len.to_bytes(4, "little"))
    return TrainingData(
        train=train,
        rows=arrange([len(s) for s in train]),
        validation=validation,
        validation_rows=arrange([len(s) for s in validation]),
        report=report,
        validation_report=validation_report,
        validation_note=note,
        fingerprint=digest.hexdigest(),
        pad_id=tokenizer.pad_token_id,
        micro_batch_size=params.micro_batch_size,
    )


# ---------------------------------------------------------------------------------------------- model
class CausalLMLoss(torch.nn.Module):
    """Summed cross-entropy of the label tokens, computing logits only for them, a chunk at a time.

    The decoder runs on packed rows without an attention mask and with `use_cache=False`, which is what
    makes transformers mask across samples (see packing.py). Logits of a 150k vocabulary are the largest
    activation of a step; they are made for label tokens only and recomputed in backward per chunk.
    """

    def __init__(self, model: Any, chunk_tokens: int, flatten_rows: bool) -> None:
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens
        self.flatten_rows = flatten_rows  # flash-attention-2 finds packed samples only in a single row
        causal_lm = model.get_base_model()
        if causal_lm.config._attn_implementation == "sdpa":  # each sample's own causal attention (packing.py)
            register_packed_attention()
            causal_lm.set_attn_implementation(PACKED_SDPA)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.flatten_rows:
            input_ids, position_ids, labels = (t.reshape(1, -1) for t in (input_ids, position_ids, labels))
        causal_lm = self.model.get_base_model()
        hidden = causal_lm.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False)[0]
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        hidden, targets = hidden[:, :-1][keep], targets[keep]
        head = causal_lm.get_output_embeddings()

        def chunk_loss(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(head(h).float(), t, reduction="sum")

        size = self.chunk_tokens or max(1, len(targets))
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, len(targets), size):
            total = total + checkpoint(
                chunk_loss, hidden[start : start + size], targets[start : start + size], use_reentrant=False
            )
        return total


def build_model(job: TrainingJob, device: str) -> Any:
    """The base model (quantized on CUDA), frozen, with a LoRA adapter: fresh, or the one to continue."""
    from peft import LoraConfig, PeftModel, get_peft_model

    params = job.params
    model = load_model(job.base_model, device, params.quantization)
    # Freeze the base ourselves instead of peft's prepare_model_for_kbit_training, which casts every
    # non-quantized weight (embeddings, lm_head, MoE experts) to fp32: gigabytes for nothing.
    for parameter in model.parameters():
        parameter.requires_grad = False
    if resolve_checkpointing(params.gradient_checkpointing, device):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if job.init_adapter:
        return PeftModel.from_pretrained(model, job.init_adapter, is_trainable=True)
    config = LoraConfig(
        r=params.lora_rank,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=list(params.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def make_optimizer(trainable: list[torch.nn.Parameter], params: TrainingParams, device: str) -> torch.optim.Optimizer:
    name = resolve_optimizer(params.optimizer, device)
    if name == "adamw":
        return torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)
    import bitsandbytes as bnb

    # 8-bit AdamW: a quarter of the optimizer memory; the paged one moves to CPU under pressure instead of OOM.
    optimizer_class = bnb.optim.PagedAdamW8bit if name == "paged_adamw_8bit" else bnb.optim.AdamW8bit
    return optimizer_class(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: batch[k].to(device) for k in ("input_ids", "position_ids", "labels")}


def _batches(data: TrainingData, limit: int) -> Iterator[dict[str, torch.Tensor]]:
    """Validation micro-batches, always in the same order."""
    rows, size = data.validation_rows, data.micro_batch_size
    count = math.ceil(len(rows) / size)
    for index in range(min(count, limit) if limit else count):
        yield data.batch(rows, data.validation, list(range(index * size, min(len(rows), (index + 1) * size))))


@torch.no_grad()
def validation_loss(loss_fn: CausalLMLoss, data: TrainingData, processes: Processes, limit: int) -> float:
    """Mean loss per label token over the validation rows, each process taking every world-th batch."""
    loss_fn.eval()
    total, count = 0.0, 0.0
    for index, batch in enumerate(_batches(data, limit)):
        if index % processes.world == processes.rank:
            total += float(loss_fn(**_to(batch, processes.device)))
            count += float(batch["loss_tokens"])
    total, count = processes.sum(total, count)
    loss_fn.train()
    return total / max(count, 1.0)


# ---------------------------------------------------------------------------------------------- the loop
@dataclass
class _Clock:
    """Throughput of this attempt (a resumed run restarts it, so tokens/s reflects the current process)."""

    started: float = field(default_factory=time.perf_counter)
    tokens: int = 0
    flops: float = 0.0

    @property
    def seconds(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)


def train(job: TrainingJob, emit: Emit) -> dict[str, Any]:
    """Train (or resume) the job's adapter; emit events on the first process; return the result."""
    processes = Processes.start(job.device)
    try:
        return _train(job, processes, emit if processes.rank == 0 else (lambda event: None))
    finally:
        processes.close()


def _train(job: TrainingJob, processes: Processes, emit: Emit) -> dict[str, Any]:
    params, device, rank, world = job.params, processes.device, processes.rank, processes.world
    run_dir = Path(job.run_dir)
    complete = run_dir / "complete.json"
    tokenizer = load_tokenizer(job.base_model, job.chat_template)
    if complete.exists():  # finished before; the process that was to use the result died: hand it over again
        result = {**json.loads(complete.read_text()), "adapter_dir": job.adapter_dir}
        if rank == 0:
            _export(job, tokenizer, result)
        emit({"event": "done", **result, "reused": True})
        return dict(result)

    peak_flops, peak_basis = (job.peak_flops, "configured") if job.peak_flops else measure_peak_flops(device)
    _seed(params.seed)  # the same seed on every process: the same fresh LoRA weights everywhere
    data = prepare_data(job, tokenizer)
    emit({"event": "samples", **_data_summary(data)})

    model = build_model(job, device)
    flatten = attention_implementation(device) == "flash_attention_2"
    loss_fn = CausalLMLoss(model, params.loss_chunk_tokens, flatten).to(device)
    loss_fn.train()
    step_fn: torch.nn.Module = loss_fn
    if world > 1:
        step_fn = torch.nn.parallel.DistributedDataParallel(
            loss_fn, device_ids=[device] if device.startswith("cuda") else None
        )
    trainable = [p for p in model.parameters() if p.requires_grad]
    lora_params = sum(p.numel() for p in trainable)
    optimizer = make_optimizer(trainable, params, device)
    order = RowOrder(len(data.rows), params.micro_batch_size, params.seed)
    per_step = params.grad_accum_steps * world
    steps = params.max_steps or max(1, math.ceil(params.epochs * order.batches_per_epoch / per_step))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, steps, params))

    state = _restore(run_dir, model, optimizer, scheduler, data.fingerprint, processes, params.seed)
    resumed_from, seconds_before = state.step, state.seconds
    emit(
        {
            "event": "start",
            "pid": os.getpid(),
            "steps": steps,
            "resumed_from_step": resumed_from,
            "trainable_params": lora_params,
            "device": device,
            "processes": world,
            "quantization": resolve_quantization(params.quantization, device),
            "optimizer": resolve_optimizer(params.optimizer, device),
            "attention": attention_implementation(device),
            "gradient_checkpointing": resolve_checkpointing(params.gradient_checkpointing, device),
            "peak_flops": peak_flops,
            "peak_flops_basis": peak_basis,
        }
    )

    def evaluate(step: int) -> None:
        loss = validation_loss(loss_fn, data, processes, params.eval_batches)
        state.val_losses.append((step, loss))
        improved = state.best_val_loss is None or loss < state.best_val_loss - params.early_stopping_min_delta
        if improved:
            state.best_val_loss, state.best_step, state.evals_without_improvement = loss, step, 0
            if rank == 0:  # kept until a checkpoint records a better one (see save_checkpoint)
                model.save_pretrained(str(ckpt.partial_dir(run_dir, "best", step)))
                ckpt.publish(run_dir / f"best-{step:06d}.partial")
        else:
            state.evals_without_improvement += 1
        emit({"event": "eval", "step": step, "val_loss": loss, "best": improved})

    def save_checkpoint(step: int) -> None:
        partial = run_dir / f"step-{step:06d}.partial"
        if rank == 0:
            ckpt.partial_dir(run_dir, "step", step)
        processes.barrier()
        ckpt.save_rng(partial, rank)
        processes.barrier()
        if rank == 0:
            model.save_pretrained(str(partial))
            ckpt.save_training_state(partial, optimizer, scheduler, state)
            ckpt.publish(partial, params.keep_checkpoints)
            ckpt.keep_best(run_dir, state.best_step, state.step)
        processes.barrier()
        emit({"event": "checkpoint", "step": step, "path": str(run_dir / partial.name.removesuffix(".partial"))})

    if state.step == 0:
        evaluate(0)  # the loss before training: what the adapter is measured against
    clock = _Clock()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(state.step, steps):
        first = step * per_step
        micro = [
            data.batch(data.rows, data.train, order.rows(first + a * world + rank))
            for a in range(params.grad_accum_steps)
        ]
        tokens, padded, span, loss_tokens = processes.sum(
            sum(int(b["tokens"]) for b in micro),
            sum(b["input_ids"].numel() for b in micro),
            sum(int(b["attention_span"]) for b in micro),
            sum(int(b["loss_tokens"]) for b in micro),
        )
        # Normalise by the label tokens of the whole step (all micro-batches, all processes), not per
        # micro-batch: otherwise short micro-batches weigh as much as long ones (the gradient-accumulation
        # loss bug). DDP averages gradients over processes, hence the factor `world`.
        # Summed on the device, read once per step: a float() per micro-batch would stall the GPU queue.
        summed = torch.zeros((), device=device)
        for a, batch in enumerate(micro):
            last = a == len(micro) - 1
            no_sync = step_fn.no_sync() if world > 1 and not last else contextlib.nullcontext()  # type: ignore[operator]
            with no_sync:
                loss = step_fn(**_to(batch, device)) * (world / loss_tokens)
                loss.backward()
            summed += loss.detach()
        (step_loss,) = processes.sum(float(summed) / world)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, params.max_grad_norm))
        learning_rate = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        state.step = step + 1
        state.train_losses.append((state.step, step_loss))
        state.tokens += int(tokens)
        state.padded_tokens += int(padded)
        clock.tokens += int(tokens)
        if job.flops is not None:
            clock.flops += job.flops.step_flops(lora_params, int(tokens), int(span))
        done_this_attempt = state.step - resumed_from
        emit(
            {
                "event": "step",
                "step": state.step,
                "steps": steps,
                "loss": step_loss,
                "learning_rate": learning_rate,
                "grad_norm": grad_norm,
                "tokens_per_second": clock.tokens / clock.seconds,
                "non_pad_fraction": tokens / max(padded, 1),
                "mfu": clock.flops / clock.seconds / (peak_flops * world) if job.flops else None,
                "peak_memory_bytes": peak_memory_bytes(device),
                "eta_seconds": clock.seconds / done_this_attempt * (steps - state.step),
            }
        )
        stop = False
        if state.step % params.eval_every == 0 or state.step == steps:
            evaluate(state.step)
            patience = params.early_stopping_patience
            if patience and state.evals_without_improvement >= patience and state.step < steps:
                state.stopped_early = stop = True
                emit({"event": "early_stop", "step": state.step, "best_step": state.best_step, "patience": patience})
        if state.step % params.checkpoint_every == 0 or stop or state.step == steps:
            state.seconds = seconds_before + clock.seconds
            save_checkpoint(state.step)
        if stop:
            break

    result = {
        "adapter_dir": job.adapter_dir,
        "steps": state.step,
        "planned_steps": steps,
        "stopped_early": state.stopped_early,
        "best_step": state.best_step,
        "val_loss_before": state.val_losses[0][1],
        "val_loss_after": state.best_val_loss,
        "train_losses": state.train_losses,
        "val_losses": state.val_losses,
        "tokens": state.tokens,
        "non_pad_fraction": state.tokens / max(state.padded_tokens, 1),
        "tokens_per_second": clock.tokens / clock.seconds,
        "train_seconds": state.seconds,
        "mfu": clock.flops / clock.seconds / (peak_flops * world) if job.flops else None,
        "peak_flops": peak_flops,
        "peak_flops_basis": peak_basis,
        "peak_memory_bytes": peak_memory_bytes(device),
        "trainable_params": lora_params,
        "resumed_from_step": resumed_from,
        "processes": world,
        **_data_summary(data),
    }
    if rank == 0:
        complete.write_text(json.dumps(result))
        _export(job, tokenizer, result)
    processes.barrier()
    emit({"event": "done", **result})
    return result


def _restore(
    run_dir: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    fingerprint: str,
    processes: Processes,
    seed: int,
) -> ckpt.TrainerState:
    """The state of the last checkpoint, loaded into model, optimizer, scheduler and RNG; or a fresh state."""
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        torch.manual_seed(seed + processes.rank)  # after the LoRA init: each process its own dropout masks
        return ckpt.TrainerState(data_fingerprint=fingerprint)
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = ckpt.load_training_state(latest, optimizer, scheduler)
    if state.data_fingerprint != fingerprint:
        raise ValueError(
            f"checkpoint {latest} was made on other samples than this snapshot gives now (did the sample code "
            "change?): materialize with resume: false to start over"
        )
    set_peft_model_state_dict(model, load_file(str(latest / ckpt.ADAPTER_WEIGHTS), device=processes.device))
    ckpt.load_rng(latest, processes.rank)
    if processes.rank == 0:
        ckpt.keep_best(run_dir, state.best_step, state.step)
    return state


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _data_summary(data: TrainingData) -> dict[str, Any]:
    def report(r: SampleReport) -> dict[str, Any]:
        return {
            "files": r.files,
            "samples": r.samples,
            "tokens": r.tokens,
            "loss_tokens": r.loss_tokens,
            "by_format": dict(r.by_format),
            "by_boundary": dict(r.by_boundary),
            "skipped_files": dict(r.skipped_files),
        }

    return {
        "train_samples": len(data.train),
        "train_rows": len(data.rows),
        "validation_samples": len(data.validation),
        "validation_note": data.validation_note,
        "packing_efficiency": data.packing_efficiency,
        "sample_report": report(data.report),
        "validation_report": report(data.validation_report),
    }


def _export(job: TrainingJob, tokenizer: Any, result: dict[str, Any]) -> None:
    """The best adapter, its tokenizer and the job, into `adapter_dir`: whole or not at all, never overwritten."""
    best = ckpt.best_dir(Path(job.run_dir), result["best_step"])
    target = Path(job.adapter_dir)
    if target.exists():
        raise FileExistsError(f"adapter directory {target} exists: adapters are never overwritten")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(best, staging)
    tokenizer.save_pretrained(str(staging))
    (staging / "training_job.json").write_text(job.to_json())
    (staging / "training_result.json").write_text(
        json.dumps({k: v for k, v in result.items() if "losses" not in k}, indent=2)
    )
    staging.rename(target)
