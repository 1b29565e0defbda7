"""Model profiles: the seed's five code models plus a tiny CPU model, with the numbers training needs.

Architecture numbers come from each model's published `config.json`. A profile is chosen by name
(`CODELUPE_MODEL=qwen2.5-coder-7b`); any hub id or local model directory works too, as a profile derived
from its own config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ATTENTION_AND_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class FimTokens:
    prefix: str
    suffix: str
    middle: str


@dataclass(frozen=True)
class ModelProfile:
    name: str
    hub_id: str | None  # None: built locally (the tiny profile)
    architecture: str  # transformers model_type
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    lora_target_modules: tuple[str, ...]
    lora_rank: int
    lora_alpha: int
    seq_len: int
    learning_rate: float = 1e-4
    micro_batch_size: int = 1
    grad_accum_steps: int = 16
    max_steps: int = 0  # 0 = one epoch over the training samples
    chat_template: str | None = CHATML_TEMPLATE
    fim: FimTokens | None = None
    eos_token: str = "<|endoftext|>"
    license: str = "Apache-2.0"
    total_params_b: float | None = None  # published size, where the formula below misses (MoE)
    note: str = ""

    @property
    def approx_params(self) -> int:
        """Parameter count of a dense decoder with GQA and a gated MLP (MoE profiles give theirs)."""
        if self.total_params_b:
            return int(self.total_params_b * 1e9)
        head_dim = self.hidden_size // self.num_heads
        attn = self.hidden_size * head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)
        mlp = 3 * self.hidden_size * self.intermediate_size
        embeddings = 2 * self.vocab_size * self.hidden_size
        return self.num_layers * (attn + mlp) + embeddings


QWEN_FIM = FimTokens("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")

# Special tokens of Qwen2.5-Coder; the tiny model's tokenizer carries the same ones, so prompts and FIM
# samples are built the same way for the tiny model and the real one.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)  # fmt: skip

PROFILES: dict[str, ModelProfile] = {
    p.name: p
    for p in (
        ModelProfile(
            name="tiny",
            hub_id=None,
            architecture="qwen2",
            num_layers=4,
            hidden_size=128,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=352,
            vocab_size=4096,
            max_position_embeddings=2048,
            lora_target_modules=ATTENTION_AND_MLP,
            lora_rank=16,
            lora_alpha=32,
            seq_len=512,
            learning_rate=2e-3,
            micro_batch_size=8,
            grad_accum_steps=1,
            max_steps=150,
            fim=QWEN_FIM,
            note="Qwen2 architecture, random weights, BPE tokenizer trained on the curated corpus; CPU-sized.",
        ),
        ModelProfile(
            name="qwen2.5-coder-7b",
            hub_id="Qwen/Qwen2.5-Coder-7B-Instruct",
            architecture="qwen2",
            num_layers=28,
            hidden_size=3584,
            num_heads=28,
            num_kv_heads=4,
            intermediate_size=18944,
            vocab_size=152064,
            max_position_embeddings=32768,
            lora_target_modules=ATTENTION_AND_MLP,
            lora_rank=256,
            lora_alpha=512,
            seq_len=4096,
            fim=QWEN_FIM,
            total_params_b=7.62,
            note="Seed: 87.5% HumanEval, ~18 GB in 4-bit with LoRA-256.",
        ),
        ModelProfile(
            name="qwen2.5-coder-14b",
            hub_id="Qwen/Qwen2.5-Coder-14B-Instruct",
            architecture="qwen2",
            num_layers=48,
            hidden_size=5120,
            num_heads=40,
            num_kv_heads=8,
            intermediate_size=13824,
            vocab_size=152064,
            max_position_embeddings=32768,
            lora_target_modules=ATTENTION_AND_MLP,
            lora_rank=256,
            lora_alpha=512,
            seq_len=4096,
            fim=QWEN_FIM,
            total_params_b=14.77,
            note="The seed's choice: 88.4% HumanEval, 27.2 GB in 4-bit with LoRA-256 on a 32 GB RTX 5090.",
        ),
        ModelProfile(
            name="deepseek-coder-v2-lite",
            hub_id="deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct",
            architecture="deepseek_v2",
            num_layers=27,
            hidden_size=2048,
            num_heads=16,
            num_kv_heads=16,
            intermediate_size=10944,
            vocab_size=102400,
            max_position_embeddings=163840,
            lora_target_modules=("q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"),
            lora_rank=128,
            lora_alpha=256,
            seq_len=4096,
            chat_template=None,  # the tokenizer's own template
            fim=FimTokens("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
            eos_token="<｜end▁of▁sentence｜>",
            license="DeepSeek",
            total_params_b=15.7,
            note="MoE: 64 routed experts + 2 shared, 6 active (2.4B active parameters). Seed: ~22 GB.",
        ),
        ModelProfile(
            name="codellama-34b",
            hub_id="codellama/CodeLlama-34b-Instruct-hf",
            architecture="llama",
            num_layers=48,
            hidden_size=8192,
            num_heads=64,
            num_kv_heads=8,
            intermediate_size=22016,
            vocab_size=32000,
            max_position_embeddings=16384,
            lora_target_modules=ATTENTION_AND_MLP,
            lora_rank=128,
            lora_alpha=256,
            seq_len=4096,
            chat_template=None,
            fim=FimTokens("▁<PRE>", "▁<SUF>", "▁<MID>"),
            eos_token="</s>",
            license="Llama-2",
            total_params_b=33.7,
            note="Seed: 48.8% HumanEval, ~30 GB with LoRA-128 (risky on 32 GB).",
        ),
        ModelProfile(
            name="starcoder2-15b",
            hub_id="bigcode/starcoder2-15b",
            architecture="starcoder2",
            num_layers=40,
            hidden_size=6144,
            num_heads=48,
            num_kv_heads=4,
            intermediate_size=24576,
            vocab_size=49152,
            max_position_embeddings=16384,
            lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"),
            lora_rank=128,
            lora_alpha=256,
            seq_len=4096,
            chat_template=None,
            fim=FimTokens("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
            license="BigCode-OpenRAIL-M",
            total_params_b=15.96,
            note="Base model only (no instruct version). Seed: 72.3% HumanEval.",
        ),
    )
}


def profile_from_config(name_or_path: str, config: dict[str, object]) -> ModelProfile:
    """A profile for any model, from its config.json (a hub model not listed above, or a local directory)."""

    def num(key: str, default: int = 0) -> int:
        value = config.get(key, default)
        return int(value) if isinstance(value, int | float | str) else default

    heads = num("num_attention_heads", 1)
    return ModelProfile(
        name=name_or_path,
        hub_id=name_or_path,
        architecture=str(config.get("model_type", "unknown")),
        num_layers=num("num_hidden_layers"),
        hidden_size=num("hidden_size"),
        num_heads=heads,
        num_kv_heads=num("num_key_value_heads", heads),
        intermediate_size=num("intermediate_size"),
        vocab_size=num("vocab_size"),
        max_position_embeddings=num("max_position_embeddings", 2048),
        lora_target_modules=ATTENTION_AND_MLP,
        lora_rank=64,
        lora_alpha=128,
        seq_len=min(2048, num("max_position_embeddings", 2048)),
        chat_template=None,
    )


def resolve_profile(model: str) -> ModelProfile:
    """A profile by name; a local model directory; or a hub id (read from its cached config when offline)."""
    if model in PROFILES:
        return PROFILES[model]
    for profile in PROFILES.values():
        if profile.hub_id == model:
            return profile
    path = Path(model).expanduser()
    if (path / "config.json").exists():
        profile = profile_from_config(str(path.resolve()), json.loads((path / "config.json").read_text()))
        return replace(profile, hub_id=str(path.resolve()))
    if "/" in model and not path.exists():
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model)  # needs the hub, or the local Hugging Face cache
        return profile_from_config(model, config.to_dict())
    known = ", ".join(PROFILES)
    raise ValueError(f"unknown model {model!r}: use one of the profiles ({known}), a hub id or a local path")
