"""Checkpoints of a training run, and where a run keeps them.

A run directory is keyed by what determines the training: the dataset snapshot version plus a hash of the
base model, the training parameters, the starting adapter and the number of processes
(`<data>/models/checkpoints/<snapshot>-<hash>/`). Materializing again with the same inputs finds it and
resumes. Its layout:

    job.json                 the full job (what the hash covers)
    events.jsonl             every event of every attempt (steps, evaluations, checkpoints)
    train.log                the training processes' stderr
    step-000050/             a checkpoint: LoRA weights, optimizer, scheduler, RNG of every rank, trainer state
    best-000025/             the adapter with the lowest validation loss so far (the trainer state names it)
    complete.json            written when training finished: the result, so a crash after it costs nothing

Every directory is written under a `.partial` name and renamed when whole, so a kill -9 at any moment
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def run_key(snapshot_version: str, identity: Mapping[str, Any]) -> str:
    """`<snapshot>-<hash>`: the same snapshot and the same training identity give the same run directory."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{snapshot_version}-{digest}"


@dataclass
class TrainerState:
    """What the loop needs, besides weights and optimizer, to continue exactly where it stopped."""

    step: int = 0
    train_losses: list[tuple[int, float]] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    best_val_loss: float | None = None
    best_step: int = 0
    evals_without_improvement: int = 0
    tokens: int = 0  # real (non-pad) tokens trained on
    padded_tokens: int = 0  # tokens computed, padding included
    seconds: float = 0.0  # training time over all attempts
    data_fingerprint: str = ""
    stopped_early: bool = False

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1)

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        data = json.loads(text)
        data["train_losses"] = [tuple(x) for x in data["train_losses"]]
        data["val_losses"] = [tuple(x) for x in data["val_losses"]]
        return cls(**data)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numbered(run_dir: Path, prefix: str) -> list[Path]:
    found = [p for p in run_dir.glob(f"{prefix}-*") if p.is_dir() and not p.name.endswith(".partial")]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    for stale in run_dir.glob("*.partial"):  # left by a process killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    found = _numbered(run_dir, "step")
    return found[-1] if found else None


def best_dir(run_dir: Path, step: int) -> Path:
    return run_dir / f"best-{step:06d}"


def keep_best(run_dir: Path, best_step: int, up_to_step: int) -> None:
    """Drop best adapters the trainer state does not point at: older ones, and any from steps after the
    state (written by an attempt killed before its next checkpoint, which the resumed run will redo)."""
    for path in _numbered(run_dir, "best"):
        step = int(path.name.rsplit("-", 1)[1])
        if step != best_step and (step < best_step or step > up_to_step):
            shutil.rmtree(path, ignore_errors=True)


def partial_dir(run_dir: Path, prefix: str, step: int) -> Path:
    path = run_dir / f"{prefix}-{step:06d}.partial"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def publish(partial: Path, keep: int | None = None) -> Path:
    """Rename a finished `.partial` directory into place; keep only the newest `keep` of its kind."""
    final = partial.with_name(partial.name.removesuffix(".partial"))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    prefix = final.name.rsplit("-", 1)[0]
    for old in _numbered(final.parent, prefix)[:-keep] if keep else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_training_state(directory: Path, optimizer: torch.optim.Optimizer, scheduler: Any, state: TrainerState) -> None:
    torch.save(optimizer.state_dict(), directory / "optimizer.pt")
    torch.save(scheduler.state_dict(), directory / "scheduler.pt")
    (directory / "trainer_state.json").write_text(state.to_json())


def load_training_state(directory: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> TrainerState:
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=False))
    return TrainerState.from_json((directory / "trainer_state.json").read_text())


def save_rng(directory: Path, rank: int) -> None:
    torch.save(rng_state(), directory / f"rng-{rank}.pt")


def load_rng(directory: Path, rank: int) -> None:
    set_rng_state(torch.load(directory / f"rng-{rank}.pt", weights_only=False))
