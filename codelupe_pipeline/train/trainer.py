"""LoRA fine-tuning, from a snapshot to an adapter directory, in one readable loop.

On CUDA the base model is loaded in 4-bit NF4 (QLoRA) with gradient checkpointing; on CPU the very same
loop runs in fp32, which is how CI trains the tiny profile.
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from codelupe_pipeline.train.base_model import load_model, load_tokenizer
from codelupe_pipeline.train.samples import (
    Sample,
    batches,
    collate,
    completion_samples,
    read_snapshot_files,
)


@dataclass(frozen=True)
class TrainingParams:
    max_steps: int = 100  # 0 = one epoch over the training samples
    learning_rate: float = 1e-3
    warmup_fraction: float = 0.03
    weight_decay: float = 0.01
    micro_batch_size: int = 8
    grad_accum_steps: int = 1
    seq_len: int = 512
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_grad_norm: float = 1.0
    eval_every: int = 25
    eval_batches: int = 4
    seed: int = 42
    quantization: str = "auto"  # auto = nf4 on CUDA, none on CPU


@dataclass(frozen=True)
class StepLog:
    step: int
    loss: float
    learning_rate: float
    grad_norm: float
    tokens_per_second: float
    eta_seconds: float


@dataclass
class TrainingResult:
    adapter_dir: Path
    steps: int
    train_losses: list[tuple[int, float]] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    train_tokens: int = 0
    tokens_per_second: float = 0.0
    duration_seconds: float = 0.0
    peak_memory_bytes: int = 0
    trainable_params: int = 0
    total_params: int = 0
    train_samples: int = 0
    val_samples: int = 0

    @property
    def initial_val_loss(self) -> float | None:
        return self.val_losses[0][1] if self.val_losses else None

    @property
    def final_val_loss(self) -> float | None:
        return self.val_losses[-1][1] if self.val_losses else None


def lr_at(step: int, params: TrainingParams) -> float:
    """Linear warmup, then cosine decay to 10 % of the peak learning rate."""
    warmup = max(1, int(params.max_steps * params.warmup_fraction))
    if step < warmup:
        return params.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, params.max_steps - warmup)
    return params.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate_loss(model: Any, samples: list[Sample], batch_size: int, pad_id: int, device: str, limit: int) -> float:
    """Mean loss per label token over the first `limit` batches of `samples`."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, min(len(samples), batch_size * limit), batch_size):
        batch = _to(collate(samples[start : start + batch_size], pad_id), device)
        n = int((batch["labels"][:, 1:] != -100).sum())
        total += model(**batch, num_items_in_batch=torch.tensor(n, device=device)).loss.item() * n
        count += n
    model.train()
    return total / max(count, 1)


def _optimizer(model: Any, params: TrainingParams, device: str) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    if device.startswith("cuda"):
        import bitsandbytes as bnb

        # Paged 8-bit AdamW: a quarter of the optimizer memory, paged out under pressure instead of OOM.
        return bnb.optim.PagedAdamW8bit(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)
    return torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)


def _peak_memory(device: str) -> int:
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def train_adapter(
    base_model: str,
    snapshot_data: Path,
    out_dir: Path,
    params: TrainingParams,
    device: str = "cpu",
    on_step: Callable[[StepLog], None] | None = None,
    on_eval: Callable[[int, float], None] | None = None,
) -> TrainingResult:
    """Train a LoRA adapter on the snapshot's train split; save it (and its tokenizer) to `out_dir`."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    torch.manual_seed(params.seed)
    quantization = params.quantization
    if quantization == "auto":
        quantization = "nf4" if device.startswith("cuda") else "none"

    tokenizer = load_tokenizer(base_model)
    model = load_model(base_model, device, quantization)
    if quantization != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    elif device.startswith("cuda"):
        model.gradient_checkpointing_enable()
    model = get_peft_model(
        model,
        LoraConfig(
            r=params.lora_rank,
            lora_alpha=params.lora_alpha,
            lora_dropout=params.lora_dropout,
            target_modules=list(params.lora_target_modules),
            task_type="CAUSAL_LM",
        ),
    )

    train = completion_samples(read_snapshot_files(snapshot_data, "train"), tokenizer, params.seq_len)
    val = completion_samples(read_snapshot_files(snapshot_data, "validation"), tokenizer, params.seq_len)
    if not train:
        raise ValueError(f"snapshot {snapshot_data} has no training samples")
    if not val:  # a single-repository corpus: hold out a fixed slice of samples to watch the loss on
        cut = max(1, len(train) // 20)
        train, val = train[cut:] or train, train[:cut]

    if params.max_steps == 0:
        params = replace(params, max_steps=max(1, len(train) // (params.micro_batch_size * params.grad_accum_steps)))
    pad_id = tokenizer.pad_token_id
    result = TrainingResult(adapter_dir=out_dir, steps=params.max_steps, train_samples=len(train))
    result.val_samples = len(val)
    result.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result.total_params = sum(p.numel() for p in model.parameters())
    optimizer = _optimizer(model, params, device)
    stream = batches(train, params.micro_batch_size, params.seed)

    def eval_now(step: int) -> None:
        loss = evaluate_loss(model, val, params.micro_batch_size, pad_id, device, params.eval_batches)
        result.val_losses.append((step, loss))
        if on_eval:
            on_eval(step, loss)

    model.train()
    eval_now(0)
    started = time.perf_counter()
    for step in range(params.max_steps):
        lr = lr_at(step, params)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro = [_to(collate(next(stream), pad_id), device) for _ in range(params.grad_accum_steps)]
        # Normalise by the label tokens of the whole accumulated batch, not per micro-batch: otherwise
        # short micro-batches weigh as much as long ones (the classic gradient-accumulation loss bug).
        items = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
        n_items = torch.tensor(items, device=device)
        step_loss = 0.0
        for batch in micro:
            loss = model(**batch, num_items_in_batch=n_items).loss
            loss.backward()
            step_loss += loss.detach().item()
            result.train_tokens += int(batch["attention_mask"].sum())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), params.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        elapsed = time.perf_counter() - started
        result.train_losses.append((step + 1, step_loss))
        if on_step:
            tps = result.train_tokens / max(elapsed, 1e-9)
            eta = elapsed / (step + 1) * (params.max_steps - step - 1)
            on_step(StepLog(step + 1, step_loss, lr, grad_norm, tps, eta))
        if (step + 1) % params.eval_every == 0 and step + 1 < params.max_steps:
            eval_now(step + 1)
    eval_now(params.max_steps)

    result.duration_seconds = time.perf_counter() - started
    result.tokens_per_second = result.train_tokens / max(result.duration_seconds, 1e-9)
    result.peak_memory_bytes = _peak_memory(device)
    staging = out_dir.with_name(out_dir.name + ".staging")
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    (staging / "training_params.json").write_text(json.dumps(asdict(params), indent=2))
    staging.rename(out_dir)  # adapters appear whole, and are never overwritten
    return result
