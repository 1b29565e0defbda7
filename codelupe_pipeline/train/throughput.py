"""Training throughput: model FLOPs per step, the device's peak, and MFU.

FLOPs per trained token of LoRA training ~= 4 * N_frozen + 6 * N_lora + 12 * L * H * T_eff:
frozen weights need the forward and the input gradient (4 per parameter), LoRA weights also their own
gradient (6), attention 12 * layers * hidden per token per attended position. N_frozen counts the
parameters a token goes through (MoE: its routed experts only), without the input embedding lookup.
T_eff is the attention span of a token: with packing, a token attends only within its own sample, so
summed over tokens the attention term is 12 * L * H * sum(sample_length^2). Padding counts nothing.
Recomputation by gradient checkpointing is not counted (model FLOPs, not hardware FLOPs).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FlopsModel:
    frozen_params: int  # active, non-embedding parameters of the base model
    num_layers: int
    hidden_size: int

    def step_flops(self, lora_params: int, tokens: int, attention_span: int) -> float:
        dense = (4 * self.frozen_params + 6 * lora_params) * tokens
        return float(dense + 12 * self.num_layers * self.hidden_size * attention_span)


def measure_peak_flops(device: str) -> tuple[float, str]:
    """Dense matmul FLOP/s of this device in the training compute type, and how it was measured."""
    cuda = device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    n = 8192 if cuda else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):  # warm up kernels and caches
        a @ b
    if cuda:
        torch.cuda.synchronize(device)
    repeats = 20 if cuda else 4
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    flops = 2 * n**3 * repeats / seconds
    if cuda:
        where = f"{torch.cuda.get_device_name(device)}, measured bf16 {n}x{n} matmul"
    else:
        where = f"CPU ({torch.get_num_threads()} threads of {os.cpu_count()} cores), measured fp32 {n}x{n} matmul"
    return flops, where


def peak_memory_bytes(device: str) -> int:
    """Peak memory of this process: allocated CUDA memory, or the resident set size on CPU."""
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
