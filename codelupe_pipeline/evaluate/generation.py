"""Batched code generation with a base model plus an optional LoRA adapter (transformers backend)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from codelupe_pipeline.train.base_model import load_model, load_tokenizer


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 256
    batch_size: int = 16
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.95
    samples_per_task: int = 1
    seed: int = 0


def truncate_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def load_for_inference(base_model: str, adapter_dir: str | None, device: str) -> tuple[Any, Any]:
    model = load_model(base_model, device)
    if adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    tokenizer = load_tokenizer(adapter_dir or base_model)
    tokenizer.padding_side = "left"  # generation continues the prompt's end
    return model, tokenizer


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    params: GenerationParams,
    stops: Sequence[str],
    device: str,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[list[str]]:
    """`samples_per_task` completions per prompt, batched across prompts (longest first, to waste no padding)."""
    torch.manual_seed(params.seed)
    jobs = [(i, s) for i in range(len(prompts)) for s in range(params.samples_per_task)]
    jobs.sort(key=lambda job: -len(prompts[job[0]]))
    out: list[list[str]] = [[] for _ in prompts]
    for start in range(0, len(jobs), params.batch_size):
        chunk = jobs[start : start + params.batch_size]
        encoded = tokenizer([prompts[i] for i, _ in chunk], return_tensors="pt", padding=True).to(device)
        sampling = params.temperature > 0
        generated = model.generate(
            **encoded,
            max_new_tokens=params.max_new_tokens,
            do_sample=sampling,
            temperature=params.temperature if sampling else None,
            top_p=params.top_p if sampling else None,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            stop_strings=list(stops) or None,
            tokenizer=tokenizer,
        )
        new_tokens = generated[:, encoded["input_ids"].shape[1] :]
        for (task_index, _), text in zip(
            chunk, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True
        ):
            out[task_index].append(truncate_at_stop(text, stops))
        if on_batch:
            on_batch(min(start + params.batch_size, len(jobs)), len(jobs))
    return out
