"""The training loop on the tiny profile, on CPU: seeded and deterministic, early stopping with the best
adapter kept, continuing an adapter, the 4-bit QLoRA path, kill -9 and resume, and two DDP processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from codelupe_pipeline.train.checkpoints import latest_checkpoint
from codelupe_pipeline.train.launcher import PACKAGE_ROOT, launch
from codelupe_pipeline.train.memory import architecture_counts
from codelupe_pipeline.train.profiles import PROFILES
from codelupe_pipeline.train.run import EVENT_PREFIX
from codelupe_pipeline.train.throughput import FlopsModel
from codelupe_pipeline.train.trainer import TrainingJob, TrainingParams, build_model, train
from codelupe_pipeline_tests.training_snapshot import TrainingFixture, build_training_fixture

TINY = PROFILES["tiny"]


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> TrainingFixture:
    return build_training_fixture(tmp_path_factory.mktemp("training"))


def make_job(fixture: TrainingFixture, where: Path, init_adapter: str | None = None, **changes: Any) -> TrainingJob:
    counts = architecture_counts(TINY)
    params = TrainingParams(
        max_steps=6, learning_rate=3e-3, micro_batch_size=4, seq_len=128, eval_every=3, eval_batches=3,
        checkpoint_every=3, sample_formats=("completion", "fim"), lora_rank=8, lora_alpha=16,
        lora_target_modules=TINY.lora_target_modules,
    )  # fmt: skip
    return TrainingJob(
        base_model=str(fixture.base_model),
        snapshot_data=str(fixture.snapshot),
        snapshot_version="test",
        run_dir=str(where / "run"),
        adapter_dir=str(where / "adapter"),
        params=replace(params, **changes),
        init_adapter=init_adapter,
        fim=TINY.fim,
        flops=FlopsModel(counts.active_params - counts.embedding_params, counts.num_layers, counts.hidden_size),
        peak_flops=1e11,  # a stated CPU peak: these tests do not measure it
    )


def run_in_process(job: TrainingJob) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    result = train(job, events.append)
    return result, events


def weights(adapter_dir: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def test_same_snapshot_and_seed_give_the_same_loss_curve(fixture: TrainingFixture, tmp_path: Path) -> None:
    job = make_job(fixture, tmp_path / "a", max_steps=4)
    first, events = run_in_process(job)
    again, _ = run_in_process(make_job(fixture, tmp_path / "b", max_steps=4))
    other, _ = run_in_process(make_job(fixture, tmp_path / "c", max_steps=4, seed=43))
    assert first["train_losses"] == again["train_losses"] and first["val_losses"] == again["val_losses"]
    assert first["train_losses"] != other["train_losses"]
    assert_same_weights(weights(first["adapter_dir"]), weights(again["adapter_dir"]), atol=0)
    # What a run records per step: loss, lr (warmup then cosine), grad norm, throughput, padding, MFU, memory.
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    assert all(0 < e["non_pad_fraction"] <= 1 and e["tokens_per_second"] > 0 and e["mfu"] > 0 for e in steps)
    assert all(e["peak_memory_bytes"] > 0 and e["grad_norm"] > 0 for e in steps)
    assert steps[0]["learning_rate"] == pytest.approx(3e-3) and steps[-1]["learning_rate"] < 3e-3
    assert first["val_loss_after"] < first["val_loss_before"]
    adapter = Path(first["adapter_dir"])
    assert {"adapter_config.json", "tokenizer.json", "training_job.json"} <= {p.name for p in adapter.iterdir()}
    assert TrainingJob.from_json((adapter / "training_job.json").read_text()).params.seed == 42
    # Run again after it finished (the process that was to register it died): the result is handed over again.
    handed, handed_events = run_in_process(replace(job, adapter_dir=str(tmp_path / "a" / "again")))
    assert handed_events[-1]["reused"] and [tuple(x) for x in handed["train_losses"]] == first["train_losses"]
    assert_same_weights(weights(tmp_path / "a" / "again"), weights(first["adapter_dir"]), atol=0)


def test_early_stopping_keeps_the_best_adapter(fixture: TrainingFixture, tmp_path: Path) -> None:
    # No gain counts below min_delta: the first evaluation stays the best, and after `patience` more the run
    # stops. The adapter handed over is that best one, not the last weights trained.
    job = make_job(
        fixture, tmp_path, max_steps=12, eval_every=1, early_stopping_patience=2, early_stopping_min_delta=5.0
    )
    result, events = run_in_process(job)
    assert result["stopped_early"] and result["steps"] == 2
    assert [e["step"] for e in events if e["event"] == "early_stop"] == [2]
    assert result["best_step"] == 0 and result["val_loss_after"] == result["val_loss_before"]
    assert_same_weights(weights(result["adapter_dir"]), weights(Path(job.run_dir) / "best-000000"), atol=0)
    last = weights(Path(job.run_dir) / "step-000002")
    assert any(not torch.equal(last[k], v) for k, v in weights(result["adapter_dir"]).items())


def test_continuing_an_adapter_starts_where_it_ended(fixture: TrainingFixture, tmp_path: Path) -> None:
    first, _ = run_in_process(make_job(fixture, tmp_path / "first", max_steps=3))
    job = make_job(fixture, tmp_path / "next", max_steps=2, init_adapter=first["adapter_dir"])
    second, _ = run_in_process(job)
    assert second["val_loss_before"] == pytest.approx(first["val_loss_after"], rel=1e-6)
    assert second["val_loss_after"] <= second["val_loss_before"]


def test_the_4bit_qlora_path_runs_on_cpu(fixture: TrainingFixture, tmp_path: Path) -> None:
    """bitsandbytes 0.50 quantizes to NF4 on CPU: the CUDA path (NF4, 8-bit AdamW, checkpointing) on CPU."""
    import bitsandbytes as bnb

    job = make_job(
        fixture, tmp_path, max_steps=2, eval_every=2, eval_batches=1, quantization="nf4",
        optimizer="paged_adamw_8bit", gradient_checkpointing="on",
    )  # fmt: skip
    model = build_model(job, "cpu")
    q_proj = model.get_base_model().model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit) and q_proj.base_layer.weight.quant_type == "nf4"
    assert q_proj.base_layer.weight.quant_state.nested  # double quantization
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    result, events = run_in_process(job)
    start = next(e for e in events if e["event"] == "start")
    assert (start["quantization"], start["optimizer"], start["gradient_checkpointing"]) == (
        "nf4",
        "paged_adamw_8bit",
        True,
    )
    assert result["val_loss_after"] < result["val_loss_before"]


def assert_same_curve(a: dict[str, Any], b: dict[str, Any], rtol: float) -> None:
    for curve in ("train_losses", "val_losses"):
        np.testing.assert_allclose(np.array(a[curve]), np.array(b[curve]), rtol=rtol, err_msg=curve)


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")))),
    }


@pytest.mark.slow  # about 40 s: two trainer processes and one in-process run
def test_kill_9_then_resume_gives_the_uninterrupted_adapter(fixture: TrainingFixture, tmp_path: Path) -> None:
    job = make_job(fixture, tmp_path / "killed", max_steps=6, checkpoint_every=3, eval_every=2)
    reference, _ = run_in_process(
        replace(job, run_dir=str(tmp_path / "ref" / "run"), adapter_dir=str(tmp_path / "ref" / "a"))
    )

    Path(job.run_dir).mkdir(parents=True)
    job_file = Path(job.run_dir) / "job.json"
    job_file.write_text(job.to_json())
    proc = subprocess.Popen(
        [sys.executable, "-m", "codelupe_pipeline.train.run", str(job_file)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # kill -9 in the middle of step 5, after the checkpoint at step 3
        event = json.loads(line[len(EVENT_PREFIX) :]) if line.startswith(EVENT_PREFIX) else {}
        if event.get("event") == "step" and event["step"] == 4:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    checkpoint = latest_checkpoint(Path(job.run_dir))
    assert checkpoint is not None and checkpoint.name == "step-000003"
    assert not (Path(job.run_dir) / "complete.json").exists()

    events: list[dict[str, Any]] = []
    resumed = launch(job, events.append)
    assert resumed["resumed_from_step"] == 3
    assert [e["step"] for e in events if e["event"] == "step"] == [4, 5, 6]
    # The loss curve continues where it stopped: the same curve, the same adapter as never stopping.
    assert_same_curve(resumed, reference, rtol=1e-6)
    assert_same_weights(weights(resumed["adapter_dir"]), weights(reference["adapter_dir"]), atol=1e-6)
    history = [json.loads(line) for line in (Path(job.run_dir) / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in history if e["event"] == "step"] == [1, 2, 3, 4, 4, 5, 6]


@pytest.mark.slow  # about 30 s: two gloo processes under torchrun
def test_two_ddp_processes_equal_one_process_accumulating_two(fixture: TrainingFixture, tmp_path: Path) -> None:
    """Each process takes its share of a step's micro-batches; DDP averages the gradients."""
    ddp = make_job(fixture, tmp_path / "ddp", max_steps=3, grad_accum_steps=1, lora_dropout=0.0, eval_every=3)
    single = make_job(fixture, tmp_path / "single", max_steps=3, grad_accum_steps=2, lora_dropout=0.0, eval_every=3)
    reference, _ = run_in_process(single)
    events: list[dict[str, Any]] = []
    result = launch(ddp, events.append, processes=2)
    assert result["processes"] == 2
    assert next(e for e in events if e["event"] == "start")["processes"] == 2
    assert_same_curve(result, reference, rtol=1e-4)
    assert_same_weights(weights(result["adapter_dir"]), weights(reference["adapter_dir"]), atol=1e-4)
