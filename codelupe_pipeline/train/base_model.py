"""The base model: built locally for the tiny profile, a hub id or local path for the real ones.

Whatever its origin, a base model is loaded through `from_pretrained`, so the tiny CPU model exercises the
same code path as Qwen2.5-Coder-14B.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codelupe_pipeline.train.profiles import QWEN_SPECIAL_TOKENS, ModelProfile

TINY_SEED = 1234  # every tiny base model built from the same corpus is the same model


@dataclass(frozen=True)
class BaseModelRef:
    """Where a base model is loaded from: a local directory or a hub id."""

    profile: str
    location: str
    built_locally: bool

    @property
    def display_name(self) -> str:
        return self.location if not self.built_locally else f"{self.profile} (built at {self.location})"


def build_tiny_model(profile: ModelProfile, texts: Iterable[str], out_dir: Path) -> Path:
    """Train a byte-level BPE tokenizer on `texts`, create a random-init Qwen2 model, save both."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=profile.vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=profile.eos_token,
        pad_token=profile.eos_token,
        additional_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t != profile.eos_token],
        model_max_length=profile.max_position_embeddings,
    )
    fast.chat_template = profile.chat_template
    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=profile.hidden_size,
        intermediate_size=profile.intermediate_size,
        num_hidden_layers=profile.num_layers,
        num_attention_heads=profile.num_heads,
        num_key_value_heads=profile.num_kv_heads,
        max_position_embeddings=profile.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=fast.eos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    torch.manual_seed(TINY_SEED)
    model = Qwen2ForCausalLM(config)
    staging = out_dir.with_name(out_dir.name + ".staging")
    staging.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(staging)
    fast.save_pretrained(staging)
    (staging / "codelupe_profile.json").write_text(json.dumps({"profile": profile.name, "seed": TINY_SEED}))
    staging.rename(out_dir)
    return out_dir


def attention_implementation(device: str) -> str:
    """flash-attention-2 on CUDA when installed, PyTorch SDPA otherwise."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def resolve_quantization(quantization: str, device: str) -> str:
    """auto: 4-bit NF4 on CUDA (QLoRA), fp32 on CPU. `none` (older configs) means the device's float type."""
    if quantization == "auto":
        return "nf4" if device.startswith("cuda") else "fp32"
    if quantization == "none":
        return "bf16" if device.startswith("cuda") else "fp32"
    if quantization == "bf16" and not device.startswith("cuda"):
        return "fp32"  # bf16 matmuls on CPU are slow and not what CI tests
    return quantization


def load_model(location: str, device: str, quantization: str = "none") -> Any:
    """Load a causal LM for LoRA training or inference.

    nf4: bitsandbytes 4-bit NF4 with double quantization (QLoRA); compute in bf16 on CUDA, fp32 on CPU
    (bitsandbytes 0.50 runs 4-bit on CPU too). int8: LLM.int8(). bf16 / fp32: unquantized.
    """
    from transformers import AutoModelForCausalLM

    quantization = resolve_quantization(quantization, device)
    compute = torch.bfloat16 if device.startswith("cuda") and quantization != "fp32" else torch.float32
    kwargs: dict[str, Any] = {"attn_implementation": attention_implementation(device), "dtype": compute}
    if quantization in ("nf4", "int8"):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            )
            if quantization == "nf4"
            else BitsAndBytesConfig(load_in_8bit=True)
        )
        kwargs["device_map"] = {"": torch.device(device).index or 0} if device.startswith("cuda") else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    if quantization not in ("nf4", "int8"):
        model = model.to(device)  # type: ignore[arg-type]
    return model


def load_tokenizer(location: str, chat_template: str | None = None) -> Any:
    """The model's tokenizer; `chat_template` (the profile's) only where the tokenizer ships none."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if chat_template and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = chat_template
    # Long files are cut into samples and scored in windows: no "longer than the maximum" warning for them.
    tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
    return tokenizer
