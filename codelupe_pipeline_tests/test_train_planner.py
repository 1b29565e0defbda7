"""The memory planner and the model profiles: exact parameter counts, the seed's 14B plan, refusals that
name the numbers, user profiles, local model directories and `codelupe plan`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codelupe_pipeline.cli import main as cli
from codelupe_pipeline.train.memory import (
    WEIGHT_BYTES,
    GiB,
    MemoryBudget,
    PlanDoesNotFit,
    PlanSettings,
    architecture_counts,
    check_fits,
    memory_budget,
    plan_memory,
)
from codelupe_pipeline.train.profiles import PROFILES, check_formats, load_profiles_file, resolve_profile

RTX_5090 = MemoryBudget(32 * GiB, "RTX 5090")
SEED_14B = PlanSettings(quantization="nf4", lora_rank=256, seq_len=4096, micro_batch_size=1)


@pytest.mark.parametrize("name", [n for n in PROFILES if PROFILES[n].total_params_b])
def test_rebuilt_architectures_have_the_published_sizes(name: str) -> None:
    profile = PROFILES[name]
    counts = architecture_counts(profile)
    assert counts.total_params / 1e9 == pytest.approx(profile.total_params_b, rel=0.01)
    assert {shape[0] for shape in counts.lora_shapes} == set(profile.lora_target_modules)


def test_the_seeds_14b_plan_fits_32_gb_and_each_component_is_counted() -> None:
    profile = PROFILES["qwen2.5-coder-14b"]
    plan = plan_memory(profile, SEED_14B)
    check_fits(profile, plan, RTX_5090)  # does not raise
    counts = architecture_counts(profile)
    # LoRA-256 on all seven projections of 48 layers: r * (in + out) per module, fp32 weight and gradient.
    per_layer = 256 * ((5120 + 5120) * 2 + (5120 + 1024) * 2 + (5120 + 13824) * 3)
    assert plan.trainable_params == counts.lora_params(256) == 48 * per_layer
    assert plan.components["adapters"] == 48 * per_layer * 8
    embeddings = 2 * 152064 * 5120  # input embeddings and lm_head stay in bf16
    assert counts.total_params - counts.quantizable_params == pytest.approx(embeddings, rel=0.01)
    assert plan.components["weights"] == pytest.approx(
        counts.quantizable_params * WEIGHT_BYTES["nf4"] + 2 * embeddings, rel=0.01
    )
    assert 20 * GiB < plan.total < 30 * GiB


def test_an_impossible_plan_is_refused_with_its_numbers_and_a_fix() -> None:
    profile = PROFILES["qwen2.5-coder-14b"]
    plan = plan_memory(profile, PlanSettings(quantization="nf4", lora_rank=256, seq_len=4096, micro_batch_size=4))
    with pytest.raises(PlanDoesNotFit) as refused:
        check_fits(profile, plan, RTX_5090)
    message = str(refused.value)
    assert f"needs {plan.total / GiB:.1f} GiB" in message and "RTX 5090 has 32.0 GiB" in message
    for component, size in plan.components.items():
        assert f"{component} {size / GiB:.1f} GiB" in message
    assert "micro-batch 4 x 4096 tokens" in message
    assert "It would fit with micro-batch 1" in message


def test_nothing_fits_says_so() -> None:
    profile = PROFILES["codellama-34b"]
    plan = plan_memory(profile, PlanSettings(quantization="bf16", lora_rank=128, seq_len=4096))
    with pytest.raises(PlanDoesNotFit, match="No smaller setting fits"):
        check_fits(profile, plan, MemoryBudget(8 * GiB, "an 8 GiB GPU"))


def test_memory_grows_with_what_it_should() -> None:
    profile = PROFILES["qwen2.5-coder-7b"]
    base = plan_memory(profile, PlanSettings(lora_rank=64, seq_len=2048))
    more_tokens = plan_memory(profile, PlanSettings(lora_rank=64, seq_len=4096))
    no_checkpointing = plan_memory(profile, PlanSettings(lora_rank=64, seq_len=2048, gradient_checkpointing=False))
    fp32_adam = plan_memory(profile, PlanSettings(lora_rank=64, seq_len=2048, optimizer="adamw"))
    bf16 = plan_memory(profile, PlanSettings(quantization="bf16", lora_rank=64, seq_len=2048))
    assert more_tokens.components["activations"] > base.components["activations"]
    assert no_checkpointing.components["activations"] > 3 * base.components["activations"]
    assert fp32_adam.components["optimizer"] == pytest.approx(base.components["optimizer"] * 8 / 2.03, rel=0.01)
    assert bf16.components["weights"] > 2.5 * base.components["weights"]  # embeddings are bf16 in both


def test_moe_experts_stay_in_bf16_under_bitsandbytes() -> None:
    """transformers 5 stores DeepSeek-V2's experts as 3-D tensors; bitsandbytes quantizes nn.Linear only."""
    counts = architecture_counts(PROFILES["deepseek-coder-v2-lite"])
    assert counts.quantizable_params < 0.1 * counts.total_params
    assert counts.active_params / 1e9 == pytest.approx(2.7, abs=0.3)  # published: 2.4B active (+ embeddings)
    plan = plan_memory(PROFILES["deepseek-coder-v2-lite"], PlanSettings(lora_rank=128, seq_len=2048))
    assert plan.components["weights"] > 25 * GiB


def test_a_local_model_directory_is_counted_exactly(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "llama")
    profile = resolve_profile(str(tmp_path / "llama"))
    counts = architecture_counts(profile)
    assert profile.architecture == "llama" and profile.num_layers == 3
    assert counts.total_params == sum(p.numel() for p in model.parameters())
    linear = [m for n, m in model.named_modules() if type(m) is torch.nn.Linear and not n.endswith("lm_head")]
    assert counts.quantizable_params == sum(m.weight.numel() for m in linear)


def test_profiles_file_adds_and_adjusts_profiles(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "profiles:\n"
        "  - name: qwen14-short\n    base: qwen2.5-coder-14b\n    seq_len: 2048\n    lora_rank: 64\n"
        "    sample_formats: [completion]\n"
        "  - name: qwen14-shorter\n    base: qwen14-short\n    seq_len: 1024\n"
    )
    profiles = load_profiles_file(path)
    assert profiles["qwen14-short"].seq_len == 2048 and profiles["qwen14-short"].lora_rank == 64
    assert profiles["qwen14-shorter"].lora_rank == 64 and profiles["qwen14-shorter"].seq_len == 1024
    assert profiles["qwen14-short"].sample_formats == ("completion",)
    assert resolve_profile("qwen14-shorter", path).hidden_size == 5120
    path.write_text("profiles:\n  - name: broken\n    base: qwen2.5-coder-14b\n    lora_rnak: 8\n")
    with pytest.raises(ValueError, match=r"profiles\.yaml, entry 1 \('broken'\): unknown fields \['lora_rnak'\]"):
        load_profiles_file(path)
    path.write_text("profiles:\n  - name: orphan\n    seq_len: 8\n")
    with pytest.raises(ValueError, match="give `base:`"):
        load_profiles_file(path)


def test_formats_a_model_cannot_take_are_refused() -> None:
    with pytest.raises(ValueError, match=r"codellama-34b.*no fill-in-the-middle"):
        check_formats(PROFILES["codellama-34b"], ("completion", "fim"))
    with pytest.raises(ValueError, match=r"starcoder2-15b.*base model"):
        check_formats(PROFILES["starcoder2-15b"], ("instruction",))
    with pytest.raises(ValueError, match="unknown sample format"):
        check_formats(PROFILES["tiny"], ("poetry",))


def test_configured_budget_wins_over_detection() -> None:
    assert memory_budget("cuda", 24).bytes == 24 * GiB
    assert memory_budget("cpu").source == "this machine's RAM"


def test_codelupe_plan_exits_by_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["plan", "--model", "qwen2.5-coder-14b", "--gpu-gb", "32"]) == 0
    out = capsys.readouterr().out
    assert "qwen2.5-coder-14b" in out and "fits" in out and "how it is counted" in out
    assert cli(["plan", "--model", "qwen2.5-coder-14b", "--gpu-gb", "32", "--micro-batch", "8"]) == 1
    assert "does not fit" in capsys.readouterr().out
    assert cli(["plan", "--compare-seed", "--gpu-gb", "32"]) == 0
    table = capsys.readouterr().out
    assert "27.2 GB" in table and table.count("\n| ") == 1 + 8  # header + 4 models x 2 micro-batches
