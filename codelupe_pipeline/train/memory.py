"""The memory planner: will this LoRA training fit the GPU, and where does the memory go?

Parameter counts are exact: the profile's architecture is rebuilt on PyTorch's meta device (no memory, no
weights), so quantizable layers, embeddings, MoE experts and LoRA target shapes are counted as transformers
and bitsandbytes will see them. Activation memory is an estimate per token and layer (documented below); the
planner is meant to be compared with measured peaks (`benchmarks/RESULTS.md`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from codelupe_pipeline.train.profiles import ModelProfile

GiB = 2**30
QUANTIZATIONS = ("nf4", "int8", "bf16", "fp32")
OPTIMIZERS = ("paged_adamw_8bit", "adamw_8bit", "adamw")

# Bytes per parameter of the frozen base weights.
#   nf4: 4 bits + blockwise absmax (blocks of 64) that double quantization stores in 8 bits, with one fp32
#   constant per 256 blocks: 0.5 + 1/64 + 4/(64*256) bytes. bitsandbytes quantizes nn.Linear layers only
#   (never lm_head); everything else stays in the compute dtype.
WEIGHT_BYTES = {"nf4": 0.5 + 1 / 64 + 4 / (64 * 256), "int8": 1.0, "bf16": 2.0, "fp32": 4.0}
# Optimizer state per trainable parameter: AdamW's two moments in fp32, or in 8 bits with a fp32 absmax
# per block of 256 (bitsandbytes' blockwise 8-bit optimizers; "paged" moves them to CPU under pressure).
OPTIMIZER_BYTES = {"adamw": 8.0, "adamw_8bit": 2.0 + 8 / 256, "paged_adamw_8bit": 2.0 + 8 / 256}
LORA_BYTES = 4 + 4  # adapters train in fp32 (peft's default): weight + gradient
CUDA_FIXED_OVERHEAD = int(0.75 * GiB)  # CUDA context, cuBLAS and attention workspaces
CPU_FIXED_OVERHEAD = int(0.5 * GiB)  # the interpreter, torch and transformers themselves
FRAGMENTATION = 0.05  # the caching allocator never packs perfectly


@dataclass(frozen=True)
class ArchitectureCounts:
    """Exact parameter counts of a model architecture, from its config alone."""

    total_params: int
    quantizable_params: int  # weights of the nn.Linear layers bitsandbytes replaces (all but lm_head)
    embedding_params: int  # the input embedding table (a lookup, no FLOPs)
    active_params: int  # parameters a token goes through (MoE: only its routed experts)
    lora_shapes: tuple[tuple[str, int, int, int], ...]  # (module, in_features, out_features, how many)
    num_layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    kv_dim: int

    def lora_params(self, rank: int) -> int:
        return sum(rank * (fan_in + fan_out) * n for _, fan_in, fan_out, n in self.lora_shapes)

    def lora_inputs_per_layer(self) -> float:
        """Elements of the LoRA inputs one layer keeps per token (peft's dropout makes each a copy)."""
        return sum(fan_in * n for _, fan_in, _, n in self.lora_shapes) / max(1, self.num_layers)


@functools.lru_cache(maxsize=32)
def _counts(config_json: str, targets: tuple[str, ...]) -> ArchitectureCounts:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    fields = json.loads(config_json)
    model_type = fields.pop("model_type")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # config validation warnings about absent tokenizers are noise here
    try:
        config = AutoConfig.for_model(model_type, **fields)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        hf_logging.set_verbosity(verbosity)
    output = model.get_output_embeddings()
    total = sum(p.numel() for p in model.parameters())
    quantizable = sum(m.weight.numel() for m in model.modules() if type(m) is torch.nn.Linear and m is not output)
    # MoE experts: a token uses num_experts_per_tok of them, so only that share of their weights is active.
    experts = sum(
        sum(p.numel() for p in m.parameters(recurse=False))
        for m in model.modules()
        if type(m).__name__.endswith("Experts")
    )
    n_experts = getattr(config, "n_routed_experts", None) or getattr(config, "num_local_experts", None) or 0
    per_token = getattr(config, "num_experts_per_tok", 0) or 0
    active = total - (int(experts * (1 - per_token / n_experts)) if n_experts else 0)
    shapes: dict[tuple[str, int, int], int] = {}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if type(module) is torch.nn.Linear and leaf in targets and module is not output:
            key = (leaf, module.in_features, module.out_features)
            shapes[key] = shapes.get(key, 0) + 1
    if targets and not shapes:
        raise ValueError(f"none of the LoRA target modules {list(targets)} exists in a {model_type} model")
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ArchitectureCounts(
        total_params=total,
        quantizable_params=quantizable,
        embedding_params=model.get_input_embeddings().weight.numel(),
        active_params=active,
        lora_shapes=tuple((leaf, i, o, n) for (leaf, i, o), n in sorted(shapes.items())),
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        vocab_size=config.vocab_size,
        kv_dim=(getattr(config, "num_key_value_heads", None) or heads) * head_dim,
    )


def architecture_counts(profile: ModelProfile, targets: tuple[str, ...] | None = None) -> ArchitectureCounts:
    """Exact counts for a profile (cached: rebuilding a 34B model on the meta device takes about a second)."""
    config = json.dumps(profile.hf_config(), sort_keys=True, default=str)
    return _counts(config, tuple(targets if targets is not None else profile.lora_target_modules))


@dataclass(frozen=True)
class PlanSettings:
    quantization: str = "nf4"  # nf4, int8, bf16 (CUDA) or fp32 (CPU)
    lora_rank: int = 16
    seq_len: int = 2048
    micro_batch_size: int = 1
    gradient_checkpointing: bool = True
    optimizer: str = "paged_adamw_8bit"
    lora_dropout: float = 0.05
    loss_chunk_tokens: int = 1024  # logits are materialized this many tokens at a time (0 = all at once)
    flash_attention: bool = False  # flash-attention-2 needs no mask; SDPA gets a packed block mask
    lora_targets: tuple[str, ...] | None = None  # None = the profile's

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization {self.quantization!r}: choose from {list(QUANTIZATIONS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}: choose from {list(OPTIMIZERS)}")
        for name in ("lora_rank", "seq_len", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")

    def describe(self) -> str:
        checkpointing = "on" if self.gradient_checkpointing else "off"
        return (
            f"{self.quantization}, LoRA rank {self.lora_rank}, micro-batch {self.micro_batch_size} x "
            f"{self.seq_len} tokens, gradient checkpointing {checkpointing}, {self.optimizer}"
        )


@dataclass(frozen=True)
class MemoryPlan:
    model: str
    settings: PlanSettings
    components: Mapping[str, int]  # weights, adapters, optimizer, activations, overhead (bytes)
    details: Mapping[str, str]  # how each component was counted
    trainable_params: int
    total_params: int

    @property
    def total(self) -> int:
        return sum(self.components.values())

    def rows(self) -> list[tuple[str, float, str]]:
        """(component, GiB, how) rows for a table, the total last."""
        rows = [(name, round(size / GiB, 2), self.details[name]) for name, size in self.components.items()]
        return [*rows, ("total", round(self.total / GiB, 2), self.settings.describe())]

    def summary(self) -> str:
        parts = ", ".join(f"{name} {size / GiB:.1f} GiB" for name, size in self.components.items())
        return f"{self.total / GiB:.1f} GiB ({parts})"


def _compute_bytes(quantization: str) -> int:
    return 4 if quantization == "fp32" else 2


def plan_memory(profile: ModelProfile, settings: PlanSettings) -> MemoryPlan:
    """Estimate the peak memory of one training step with these settings."""
    counts = architecture_counts(profile, settings.lora_targets)
    a = _compute_bytes(settings.quantization)
    q = settings.quantization
    other = counts.total_params - counts.quantizable_params
    weights = counts.quantizable_params * WEIGHT_BYTES[q] + other * a
    lora = counts.lora_params(settings.lora_rank)
    adapters = lora * LORA_BYTES
    optimizer = lora * OPTIMIZER_BYTES[settings.optimizer]

    # Activations per token of one decoder layer, in elements: attention (norm, q/k/v, rotary q/k, output,
    # residual), the gated MLP (norm, gate, up, activation, product, residual), the inputs LoRA keeps.
    h, i, kv, n_layers = counts.hidden_size, counts.intermediate_size, counts.kv_dim, counts.num_layers
    per_token_layer: float = (5 * h + 3 * kv) + (2 * h + 4 * i) + settings.lora_rank * len(counts.lora_shapes)
    if settings.lora_dropout > 0:
        per_token_layer += counts.lora_inputs_per_layer()
    tokens = settings.micro_batch_size * settings.seq_len
    layer = per_token_layer * tokens * a
    if settings.gradient_checkpointing:
        # Each layer's input is kept; one layer at a time is recomputed, with its gradients, in backward.
        activations = n_layers * tokens * h * a + 2 * layer
        how = f"{n_layers} layer inputs kept + 1 layer recomputed ({tokens:,} tokens)"
    else:
        activations = n_layers * layer + layer
        how = f"{n_layers} layers x {per_token_layer / 1e3:.0f}k values/token ({tokens:,} tokens)"
    logit_tokens = min(tokens, settings.loss_chunk_tokens) if settings.loss_chunk_tokens else tokens
    logits = logit_tokens * counts.vocab_size * (a + 4 + 4)  # logits, fp32 upcast, their gradient
    mask = 0 if settings.flash_attention else settings.micro_batch_size * settings.seq_len**2  # bool block mask
    activations += logits + mask + 2 * tokens * h * a  # + hidden-state gradient flowing back
    how += f"; logits of {logit_tokens:,} tokens x {counts.vocab_size:,} vocab"

    cuda = q != "fp32"
    fixed = CUDA_FIXED_OVERHEAD if cuda else CPU_FIXED_OVERHEAD
    overhead = fixed + FRAGMENTATION * (adapters + optimizer + activations)
    weights_how = (
        f"{counts.quantizable_params / 1e9:.2f}B in {q} + {other / 1e9:.2f}B in {'bf16' if a == 2 else 'fp32'}"
        if q in ("nf4", "int8")
        else f"{counts.total_params / 1e9:.2f}B in {q}"
    )
    return MemoryPlan(
        model=profile.name,
        settings=settings,
        components={
            "weights": int(weights),
            "adapters": int(adapters),
            "optimizer": int(optimizer),
            "activations": int(activations),
            "overhead": int(overhead),
        },
        details={
            "weights": weights_how,
            "adapters": f"{lora / 1e6:,.1f}M LoRA parameters (rank {settings.lora_rank}), fp32 weight + gradient",
            "optimizer": f"{settings.optimizer}: {OPTIMIZER_BYTES[settings.optimizer]:.2f} bytes per LoRA parameter",
            "activations": how,
            "overhead": f"{fixed / GiB:.2f} GiB {'CUDA context' if cuda else 'runtime'} + "
            f"{FRAGMENTATION:.0%} allocator fragmentation",
        },
        trainable_params=lora,
        total_params=counts.total_params,
    )


# Where memory can be saved, in the order a person would try: each keeps the effective batch or the model.
def _cheaper(settings: PlanSettings) -> list[tuple[str, PlanSettings]]:
    options = []
    if settings.micro_batch_size > 1:
        options.append(
            ("micro-batch 1 (raise grad_accum_steps to keep the batch)", replace(settings, micro_batch_size=1))
        )
    if not settings.gradient_checkpointing:
        options.append(("gradient checkpointing on", replace(settings, gradient_checkpointing=True)))
    if settings.optimizer == "adamw":
        options.append(("optimizer paged_adamw_8bit", replace(settings, optimizer="paged_adamw_8bit")))
    if settings.quantization in ("bf16", "int8"):
        options.append(("quantization nf4", replace(settings, quantization="nf4")))
    if settings.seq_len > 512:
        options.append((f"seq_len {settings.seq_len // 2}", replace(settings, seq_len=settings.seq_len // 2)))
    if settings.lora_rank > 8:
        options.append((f"LoRA rank {settings.lora_rank // 2}", replace(settings, lora_rank=settings.lora_rank // 2)))
    return options


def suggest(profile: ModelProfile, settings: PlanSettings, budget: int) -> tuple[str, MemoryPlan] | None:
    """The first change (one, then cumulative) that makes the plan fit `budget` bytes, if any."""
    current = settings
    changes: list[str] = []
    for _ in range(8):
        options = _cheaper(current)
        for change, candidate in options:
            plan = plan_memory(profile, candidate)
            if plan.total <= budget:
                return "; ".join([*changes, change]), plan
        if not options:
            return None
        change, current = options[0]
        changes.append(change)
    return None


@dataclass(frozen=True)
class MemoryBudget:
    bytes: int
    source: str  # "NVIDIA GeForce RTX 5090 (detected)", "configured", "system RAM"


class PlanDoesNotFit(RuntimeError):
    """The training plan needs more memory than the device has: nothing was loaded or trained."""


# Above this many parameters, fine-tuning on a CPU is days per epoch: refuse unless the user insists.
CPU_MAX_PARAMS = 2_000_000_000


def check_cpu_sized(profile: ModelProfile, total_params: int, device: str, device_setting: str) -> None:
    """Refuse, saying why and what to do, when `auto` fell back to the CPU for a model only a GPU can train."""
    if device != "cpu" or device_setting != "auto" or total_params <= CPU_MAX_PARAMS:
        return
    raise PlanDoesNotFit(
        f"no CUDA GPU on this machine, so CODELUPE_DEVICE=auto chose the CPU, and {profile.name} "
        f"({total_params / 1e9:.1f}B parameters) is far too large to fine-tune on a CPU. Train it on a GPU box, "
        "use CODELUPE_MODEL=tiny (the CPU profile), or set CODELUPE_DEVICE=cpu to train on the CPU anyway."
    )


def check_fits(profile: ModelProfile, plan: MemoryPlan, budget: MemoryBudget) -> None:
    if plan.total <= budget.bytes:
        return
    message = (
        f"training {profile.name} does not fit: the plan needs {plan.total / GiB:.1f} GiB but {budget.source} "
        f"has {budget.bytes / GiB:.1f} GiB. Plan: {plan.summary()}; settings: {plan.settings.describe()}."
    )
    fix = suggest(profile, plan.settings, budget.bytes)
    message += (
        f" It would fit with {fix[0]}: {fix[1].total / GiB:.1f} GiB."
        if fix
        else " No smaller setting fits: use a smaller model or a larger GPU."
    )
    raise PlanDoesNotFit(message)


def detect_gpu() -> tuple[str, int] | None:
    """(name, total bytes) of the first GPU, read with nvidia-smi so this process never initialises CUDA."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            if out.returncode == 0 and out.stdout.strip():
                name, mib = out.stdout.strip().splitlines()[0].rsplit(",", 1)
                return name.strip(), int(float(mib)) * 2**20
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return props.name, int(props.total_memory)
    return None


def system_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(device: str, configured_gib: float = 0.0) -> MemoryBudget:
    """What the plan must fit: the configured GPU size, else the detected GPU, else (on CPU) the RAM."""
    if configured_gib > 0:
        return MemoryBudget(int(configured_gib * GiB), f"the configured GPU ({configured_gib:g} GiB)")
    if device.startswith("cuda"):
        gpu = detect_gpu()
        if gpu is not None:
            return MemoryBudget(gpu[1], f"the GPU ({gpu[0]}, detected)")
    return MemoryBudget(system_memory(), "this machine's RAM")


def plan_table_rows(plans: Sequence[tuple[MemoryPlan, MemoryBudget | None]]) -> list[tuple[Any, ...]]:
    """One row per plan: model, settings, the five components and the total in GiB, and the verdict."""
    rows = []
    for plan, budget in plans:
        verdict = ""
        if budget is not None:
            margin = (budget.bytes - plan.total) / GiB
            verdict = f"fits ({margin:.1f} GiB spare)" if margin >= 0 else f"does not fit ({-margin:.1f} GiB over)"
        rows.append(
            (
                plan.model,
                plan.settings.describe(),
                *(round(v / GiB, 2) for v in plan.components.values()),
                round(plan.total / GiB, 2),
                verdict,
            )
        )
    return rows


PLAN_ROWS_HEADERS = ("component", "GiB", "how it is counted")  # MemoryPlan.rows(), one plan
PLAN_TABLE_HEADERS = (
    "model", "settings", "weights GiB", "adapters GiB", "optimizer GiB", "activations GiB", "overhead GiB",
    "total GiB", "on the budget",
)  # fmt: skip


# The seed document's memory budgets (RTX 5090, 32 GB, 4-bit NF4): model, LoRA rank, its total in GB.
SEED_CLAIMS = (
    ("qwen2.5-coder-14b", 256, 27.2, "7.0 base + 0.2 LoRA + 7.0 optimizer + 10.0 activations + 3.0 overhead"),
    ("qwen2.5-coder-7b", 256, 18.0, "total only"),
    ("deepseek-coder-v2-lite", 256, 22.0, "total only"),
    ("codellama-34b", 128, 30.0, "total only"),
)


def seed_comparison(budget: MemoryBudget, seq_len: int = 4096) -> list[tuple[Any, ...]]:
    """The planner against the seed's budgets: the original trainer's micro-batch 4, and micro-batch 1."""
    from codelupe_pipeline.train.profiles import PROFILES

    rows = []
    for name, rank, claim, breakdown in SEED_CLAIMS:
        for micro_batch in (1, 4):
            plan = plan_memory(
                PROFILES[name], PlanSettings(lora_rank=rank, seq_len=seq_len, micro_batch_size=micro_batch)
            )
            row = plan_table_rows([(plan, budget)])[0]
            rows.append((name, rank, f"{micro_batch} x {seq_len}", *row[2:], f"{claim:g} GB ({breakdown})", ""))
    return rows


SEED_TABLE_HEADERS = (
    "model", "LoRA rank", "micro-batch x tokens", "weights GiB", "adapters GiB", "optimizer GiB",
    "activations GiB", "overhead GiB", "planned total GiB", "on the budget", "seed's claim", "measured peak GiB",
)  # fmt: skip
