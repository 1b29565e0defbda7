"""Model profiles: the seed's five code models plus a tiny CPU model, with the numbers training needs.

Architecture numbers come from each model's published `config.json` (they rebuild the exact architecture on
PyTorch's meta device, so the memory planner counts real parameters, not a formula). A profile is chosen by
name (`CODELUPE_MODEL=qwen2.5-coder-7b`); a profiles file adds or adjusts profiles; any local model directory
or hub id works too, as a profile derived from its own `config.json`.

Recommended LoRA rank, sequence length and micro-batch are the largest the VRAM planner fits on the reference
GPU (RTX 5090, 32 GB) in 4-bit with gradient checkpointing: `codelupe plan --compare-seed` shows the numbers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# DeepSeek-Coder-V2-Instruct's format ("User: ...\n\nAssistant: ...<eos>"); its tokenizer ships the original.
DEEPSEEK_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# Llama-2 / CodeLlama-Instruct: "[INST] user [/INST] assistant </s>"; its tokenizer ships the original.
LLAMA2_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

ATTENTION_AND_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SAMPLE_FORMATS = ("completion", "fim", "instruction")


@dataclass(frozen=True)
class FimTokens:
    """Fill-in-the-middle special tokens, used in prefix-suffix-middle order: P pre S suf M mid <eos>."""

    prefix: str
    suffix: str
    middle: str


@dataclass(frozen=True)
class ModelProfile:
    name: str
    hub_id: str | None  # None: built locally (the tiny profile); else a hub id or a local directory
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
    chat_format: str = "chatml"  # chatml, deepseek, llama2 or none (a base model)
    chat_template: str | None = CHATML_TEMPLATE  # used when the tokenizer ships none
    fim: FimTokens | None = None
    sample_formats: tuple[str, ...] = ("completion",)  # what to train on when the run config says nothing
    eos_token: str = "<|endoftext|>"
    tie_word_embeddings: bool = False
    config_extra: Mapping[str, Any] = field(default_factory=dict)  # more config.json fields (MoE, MLA, ...)
    license: str = "Apache-2.0"
    total_params_b: float | None = None  # the published size, checked against the rebuilt architecture
    note: str = ""

    def hf_config(self) -> dict[str, Any]:
        """The model's config.json fields that fix its architecture (and so its parameter count)."""
        return {
            "model_type": self.architecture,
            "num_hidden_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            **self.config_extra,
        }


QWEN_FIM = FimTokens("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")

# Special tokens of Qwen2.5-Coder; the tiny model's tokenizer carries the same ones, so prompts and FIM
# samples are built the same way for the tiny model and the real one.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)  # fmt: skip

_QWEN = {
    "architecture": "qwen2",
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "lora_target_modules": ATTENTION_AND_MLP,
    "fim": QWEN_FIM,
    "sample_formats": ("completion", "fim"),
    "config_extra": {"rope_theta": 1000000.0},
}

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
            intermediate_size=384,  # a multiple of 64: bitsandbytes' CPU 4-bit kernels need whole blocks per row
            vocab_size=4096,
            max_position_embeddings=2048,
            lora_target_modules=ATTENTION_AND_MLP,
            lora_rank=16,
            lora_alpha=32,
            seq_len=256,  # `make run` trains 150 steps of 8 x 256 tokens: about 2 minutes on 2 CPU cores
            learning_rate=2e-3,
            micro_batch_size=8,
            grad_accum_steps=1,
            max_steps=150,
            fim=QWEN_FIM,
            sample_formats=("completion", "fim"),
            tie_word_embeddings=True,
            note="Qwen2 architecture, random weights, BPE tokenizer trained on the curated corpus; CPU-sized.",
        ),
        ModelProfile(
            name="qwen2.5-coder-7b",
            hub_id="Qwen/Qwen2.5-Coder-7B-Instruct",
            num_layers=28,
            hidden_size=3584,
            num_heads=28,
            num_kv_heads=4,
            intermediate_size=18944,
            lora_rank=256,
            lora_alpha=512,
            seq_len=4096,
            micro_batch_size=2,
            grad_accum_steps=8,
            total_params_b=7.62,
            note="Seed: 87.5% HumanEval, ~18 GB in 4-bit with LoRA-256.",
            **_QWEN,  # type: ignore[arg-type]
        ),
        ModelProfile(
            name="qwen2.5-coder-14b",
            hub_id="Qwen/Qwen2.5-Coder-14B-Instruct",
            num_layers=48,
            hidden_size=5120,
            num_heads=40,
            num_kv_heads=8,
            intermediate_size=13824,
            lora_rank=256,
            lora_alpha=512,
            seq_len=4096,
            micro_batch_size=1,
            grad_accum_steps=16,
            total_params_b=14.77,
            note="The seed's choice: 88.4% HumanEval; the seed budgets 27.2 GB in 4-bit with LoRA-256.",
            **_QWEN,  # type: ignore[arg-type]
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
            # Multi-head latent attention: LoRA on its projections; the 64 experts per layer are 3-D tensors.
            lora_target_modules=("q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"),
            lora_rank=128,
            lora_alpha=256,
            seq_len=2048,  # its bf16 experts leave little room on 32 GB (see the note)
            chat_format="deepseek",
            chat_template=DEEPSEEK_TEMPLATE,
            fim=FimTokens("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
            sample_formats=("completion", "fim"),
            eos_token="<｜end▁of▁sentence｜>",
            config_extra={
                "moe_intermediate_size": 1408,
                "n_routed_experts": 64,
                "n_shared_experts": 2,
                "num_experts_per_tok": 6,
                "first_k_dense_replace": 1,
                "kv_lora_rank": 512,
                "q_lora_rank": None,
                "qk_nope_head_dim": 128,
                "qk_rope_head_dim": 64,
                "v_head_dim": 128,
                "bos_token_id": 100000,
                "eos_token_id": 100001,
            },
            license="DeepSeek",
            total_params_b=15.7,
            note=(
                "MoE: 64 routed experts + 2 shared, 6 active (2.4B active parameters). bitsandbytes quantizes "
                "only nn.Linear layers, and transformers 5 stores the experts as 3-D tensors, so 14.4B of the "
                "15.7B parameters stay in bf16: about 30 GB of weights, not the seed's ~22 GB in total."
            ),
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
            seq_len=2048,
            chat_format="llama2",
            chat_template=LLAMA2_TEMPLATE,
            fim=None,  # Code Llama trained infilling only for its 7B and 13B models
            sample_formats=("completion", "instruction"),
            eos_token="</s>",
            config_extra={"rope_theta": 1000000.0, "bos_token_id": 1, "eos_token_id": 2},
            license="Llama-2",
            total_params_b=33.7,
            note="Seed: 48.8% HumanEval, ~30 GB with LoRA-128 (risky on 32 GB). No FIM at 34B.",
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
            chat_format="none",
            chat_template=None,
            fim=FimTokens("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
            sample_formats=("completion", "fim"),
            config_extra={"sliding_window": 4096, "use_bias": True, "bos_token_id": 0, "eos_token_id": 0},
            license="BigCode-OpenRAIL-M",
            total_params_b=15.96,
            note="Base model only (no instruct version, so no instruction format). Seed: 72.3% HumanEval.",
        ),
    )
}

# The numbers a profiles file may set; the rest of ModelProfile is derived.
_LIST_FIELDS = {"lora_target_modules", "sample_formats"}


def profile_from_config(name_or_path: str, config: Mapping[str, Any]) -> ModelProfile:
    """A profile for any model, from its config.json (a hub model not listed above, or a local directory)."""

    def num(key: str, default: int = 0) -> int:
        value = config.get(key, default)
        return int(value) if isinstance(value, int | float | str) else default

    heads = num("num_attention_heads", 1)
    known = {
        "model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
        "intermediate_size", "vocab_size", "max_position_embeddings", "tie_word_embeddings",
        # not architecture: loading details that would change how the meta-device copy is built
        "architectures", "auto_map", "quantization_config", "torch_dtype", "dtype", "transformers_version",
    }  # fmt: skip
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
        chat_format="tokenizer",
        chat_template=None,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        config_extra={k: v for k, v in config.items() if k not in known},  # MoE, latent attention, biases...
    )


def load_profiles_file(path: Path) -> dict[str, ModelProfile]:
    """Profiles a user adds (or adjusts) in a YAML file: `profiles: [{name, base?, hub_id?, ...fields}]`.

    `base` starts from a built-in profile; without it, `hub_id` must be a local model directory whose
    config.json gives the architecture. Every other key overrides the ModelProfile field of that name.
    """
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"profiles file {path}: not valid YAML: {exc}") from exc
    entries = data.get("profiles") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"profiles file {path}: expected a top-level 'profiles:' list")
    names = {f.name for f in dataclasses.fields(ModelProfile)}
    found: dict[str, ModelProfile] = {}
    for index, entry in enumerate(entries):
        where = f"profiles file {path}, entry {index + 1}"
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ValueError(f"{where}: every profile needs a name")
        entry = dict(entry)
        where = f"{where} ({entry['name']!r})"
        base_name = entry.pop("base", None)
        unknown = set(entry) - names
        if unknown:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}; known: {sorted(names)}")
        if base_name is not None:
            base = found.get(base_name) or PROFILES.get(base_name)
            if base is None:
                raise ValueError(f"{where}: base {base_name!r} is not a profile ({', '.join(PROFILES)})")
        elif entry.get("hub_id") and (Path(str(entry["hub_id"])).expanduser() / "config.json").exists():
            local = Path(str(entry["hub_id"])).expanduser().resolve()
            base = profile_from_config(str(local), json.loads((local / "config.json").read_text()))
        else:
            raise ValueError(f"{where}: give `base:` (a built-in profile) or a `hub_id:` local model directory")
        if isinstance(entry.get("fim"), dict):
            entry["fim"] = FimTokens(**entry["fim"])
        for key in _LIST_FIELDS & set(entry):
            entry[key] = tuple(entry[key])
        try:
            found[entry["name"]] = replace(base, **entry)
        except TypeError as exc:
            raise ValueError(f"{where}: {exc}") from exc
    return found


def resolve_profile(model: str, profiles_file: Path | None = None) -> ModelProfile:
    """A profile by name (the profiles file first); a local model directory; or a hub id (cached config)."""
    profiles = {**PROFILES, **(load_profiles_file(profiles_file) if profiles_file else {})}
    if model in profiles:
        return profiles[model]
    for profile in profiles.values():
        if profile.hub_id == model:
            return profile
    path = Path(model).expanduser()
    if (path / "config.json").exists():
        return profile_from_config(str(path.resolve()), json.loads((path / "config.json").read_text()))
    if "/" in model and not path.exists():
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model)  # needs the hub, or the local Hugging Face cache
        return profile_from_config(model, config.to_dict())
    known = ", ".join(profiles)
    raise ValueError(f"unknown model {model!r}: use one of the profiles ({known}), a hub id or a local path")


def check_formats(profile: ModelProfile, formats: tuple[str, ...]) -> None:
    """Refuse, by name, a sample format the model cannot take."""
    unknown = [f for f in formats if f not in SAMPLE_FORMATS]
    if unknown:
        raise ValueError(f"unknown sample format(s) {unknown}: choose from {list(SAMPLE_FORMATS)}")
    if "fim" in formats and profile.fim is None:
        raise ValueError(f"model {profile.name!r} has no fill-in-the-middle tokens: drop 'fim' from sample_formats")
    if "instruction" in formats and profile.chat_format == "none":
        raise ValueError(f"model {profile.name!r} is a base model without a chat template: drop 'instruction'")
