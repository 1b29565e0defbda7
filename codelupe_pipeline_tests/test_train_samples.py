"""Samples and packing on real tokenized code: syntactic splits, FIM and chat formats, loss masks, and
packed samples that do not see each other in the tiny Qwen2 model (SDPA and eager attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codelupe_pipeline.train.base_model import load_tokenizer
from codelupe_pipeline.train.boundaries import find_boundaries
from codelupe_pipeline.train.packing import (
    PACKED_SDPA,
    RowOrder,
    collate,
    pack,
    register_packed_attention,
    sample_spans,
)
from codelupe_pipeline.train.profiles import PROFILES
from codelupe_pipeline.train.samples import (
    IGNORE_INDEX,
    Sample,
    SampleSpec,
    SnapshotFile,
    build_samples,
    file_header,
    file_separator,
)
from codelupe_pipeline.train.trainer import CausalLMLoss
from codelupe_pipeline_tests import corpus
from codelupe_pipeline_tests.training_snapshot import FIXTURE_FILES, TrainingFixture, build_training_fixture

TINY = PROFILES["tiny"]


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> TrainingFixture:
    return build_training_fixture(tmp_path_factory.mktemp("training"))


@pytest.fixture(scope="module")
def tokenizer(fixture: TrainingFixture) -> object:
    return load_tokenizer(str(fixture.base_model))


def fixture_files() -> list[SnapshotFile]:
    return [SnapshotFile("fixture", name, lang, text) for name, (lang, text) in FIXTURE_FILES.items()]


def decode(tokenizer: object, ids: np.ndarray) -> str:
    return str(tokenizer.decode(ids.tolist()))  # type: ignore[attr-defined]


def spec(*formats: str, seq_len: int = 256, seed: int = 7) -> SampleSpec:
    return SampleSpec(formats, seq_len, seed, TINY.fim, "<|file_sep|>")  # the tiny tokenizer's


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("python", corpus.PYTHON_FILE, ["@dataclass", "    def __post_init__", "    def overlaps", "def merge_all"]),
        ("rust", corpus.RUST_FILE, ["pub struct Ring", "impl<T> Ring<T>", "    pub fn with_capacity"]),
        ("go", corpus.GO_FILE, ["// Entry is a cached value", "func New(", "func (c *TTLCache) Get"]),
        ("typescript", corpus.TYPESCRIPT_FILE, ["export async function collectAll", "export function chunk"]),
        ("dart", corpus.DART_FILE, ["  @override", "Money total("]),
    ],
)
def test_definition_boundaries_per_language(language: str, text: str, expected: list[str]) -> None:
    found = find_boundaries(text, language)
    assert found.kind == "definition"
    starts = [text[offset:].split("\n", 1)[0] for offset in found.offsets]
    for line in expected:
        assert any(start.startswith(line) for start in starts), (line, starts)
    # Never a line in the middle of a body, e.g. a `return` or a closing brace.
    assert not any(start.strip().startswith(("return", "}", "if ")) for start in starts), starts


def test_sql_splits_between_statements_not_inside_a_cte() -> None:
    text = corpus.SQL_FILE + "\nCREATE VIEW paid AS\nSELECT * FROM orders WHERE status = 'paid';\n"
    found = find_boundaries(text, "sql")
    starts = [text[o:].split("\n", 1)[0] for o in found.offsets]
    assert found.kind == "definition"
    assert starts == ["-- Monthly revenue per customer, with a running total.", "CREATE VIEW paid AS"]


def test_completion_samples_take_loss_on_the_target_only(tokenizer: object) -> None:
    samples, report = build_samples(fixture_files(), tokenizer, spec("completion"))
    assert report.samples == len(samples) > len(FIXTURE_FILES)
    assert report.by_boundary["definition"] > 0 and not report.skipped_files
    python = FIXTURE_FILES["interval.py"][1]
    for sample in samples:
        assert len(sample) <= 256
        labels = sample.labels
        assert (labels[: sample.prompt_len] == IGNORE_INDEX).all()
        assert (labels[sample.prompt_len :] == sample.ids[sample.prompt_len :]).all()
    header = "<|file_sep|>interval.py\n"
    interval = [s for s in samples if decode(tokenizer, s.ids[: s.prompt_len]).startswith(header)]
    prompt, target = (
        decode(tokenizer, interval[0].ids[: interval[0].prompt_len]),
        decode(tokenizer, interval[0].ids[interval[0].prompt_len :]),
    )
    # The prompt is the file up to a definition; the target starts with that definition.
    assert prompt == header + python[: len(prompt) - len(header)]
    assert target.startswith("@dataclass(frozen=True)\nclass Interval:")
    # Every target starts at a definition, right where the previous one ended; the last ends the file, with eos.
    definitions = set(find_boundaries(python, "python").offsets)
    at = len(prompt) - len(header)
    for sample in interval:
        target = decode(tokenizer, sample.ids[sample.prompt_len :]).removesuffix("<|endoftext|>")
        assert at in definitions and python[at:].startswith(target)
        at += len(target)
    assert at == len(python)
    assert int(interval[-1].ids[-1]) == tokenizer.eos_token_id  # type: ignore[attr-defined]


def test_fim_samples_use_the_models_tokens_in_prefix_suffix_middle_order(tokenizer: object) -> None:
    samples, _ = build_samples(fixture_files(), tokenizer, spec("fim"))
    vocab = tokenizer.get_vocab()  # type: ignore[attr-defined]
    prefix, suffix, middle = (vocab[t] for t in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"))
    rust = FIXTURE_FILES["ring.rs"][1]
    checked = 0
    for sample in samples:
        ids = sample.ids.tolist()
        assert ids[0] == prefix and ids.count(prefix) == ids.count(suffix) == ids.count(middle) == 1
        assert ids.index(prefix) < ids.index(suffix) < ids.index(middle) == sample.prompt_len - 1
        assert ids[-1] == tokenizer.eos_token_id  # type: ignore[attr-defined]
        pre = tokenizer.decode(ids[1 : ids.index(suffix)])  # type: ignore[attr-defined]
        suf = tokenizer.decode(ids[ids.index(suffix) + 1 : ids.index(middle)])  # type: ignore[attr-defined]
        mid = tokenizer.decode(ids[sample.prompt_len : -1])  # type: ignore[attr-defined]
        if pre + mid + suf in rust and mid.strip():
            checked += 1  # the three pieces are consecutive in the original file
            assert rust.index(pre + mid + suf) + len(pre) == rust.index(mid, rust.index(pre + mid + suf))
    assert checked >= 3


def test_instruction_samples_use_the_chat_template_and_learn_the_answer_turn(tokenizer: object) -> None:
    samples, report = build_samples(fixture_files(), tokenizer, spec("instruction", seq_len=384))
    assert report.by_format == {"instruction": len(samples)}
    for sample in samples:
        prompt = tokenizer.decode(sample.ids[: sample.prompt_len])  # type: ignore[attr-defined]
        answer = tokenizer.decode(sample.ids[sample.prompt_len :])  # type: ignore[attr-defined]
        assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
        assert answer.startswith("```") and answer.endswith("```<|im_end|>\n")


def test_samples_are_seeded(tokenizer: object) -> None:
    files = fixture_files()

    def formats(seed: int) -> list[tuple[str, list[int]]]:
        made, _ = build_samples(files, tokenizer, spec("completion", "fim", "instruction", seed=seed))
        return [(s.format, s.ids.tolist()) for s in made]

    assert formats(1) == formats(1)
    assert [f for f, _ in formats(1)] != [f for f, _ in formats(2)]
    assert len({f for f, _ in formats(1)}) == 3


def test_bad_files_are_reported_and_skipped(tokenizer: object) -> None:
    files = [
        *fixture_files(),
        SnapshotFile("x", "empty.py", "python", "   \n"),
        SnapshotFile("x", "one.py", "python", "x = 1\n"),
    ]
    samples, report = build_samples(files, tokenizer, spec("completion"))
    assert report.files == len(files)
    assert report.skipped_files == {"empty": 1, "no target after the first unit": 1}
    assert samples


def _sample(ids: list[int], prompt_len: int) -> Sample:
    return Sample(np.asarray(ids, dtype=np.int32), prompt_len, "completion", "definition")


def test_packing_keeps_every_sample_once_and_resets_positions() -> None:
    lengths = [70, 60, 50, 40, 30, 20, 10, 5, 100, 90]
    rows = pack(lengths, 128)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 128 for row in rows)
    assert len(rows) == 4  # 475 tokens: best-fit decreasing needs no more rows than that
    samples = [_sample(list(range(3, 3 + n)), n // 2) for n in lengths]
    batch = collate([[samples[i] for i in row] for row in rows], pad_id=0)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n = lengths[i]
            assert batch["position_ids"][r, at : at + n].tolist() == list(range(n))
            assert batch["labels"][r, at] == IGNORE_INDEX  # never predicted from the previous sample
            assert batch["labels"][r, at + n // 2 : at + n].tolist() == samples[i].ids[n // 2 :].tolist()
            at += n
        assert (batch["labels"][r, at:] == IGNORE_INDEX).all()
        assert batch["position_ids"][r, at:].tolist() == list(range(batch["input_ids"].shape[1] - at))
    assert int(batch["tokens"]) == sum(lengths)
    assert int(batch["attention_span"]) == sum(n * n for n in lengths)
    assert int(batch["tokens"]) / batch["input_ids"].numel() > 0.9  # the non-pad fraction


def test_row_order_depends_only_on_seed_and_index() -> None:
    order = RowOrder(10, 3, seed=5)
    first_epoch = [order.rows(k) for k in range(3)]
    assert sorted(i for rows in first_epoch for i in rows) == sorted(set(i for rows in first_epoch for i in rows))
    again = RowOrder(10, 3, seed=5)
    assert [again.rows(k) for k in (5, 0, 4)] == [order.rows(5), order.rows(0), order.rows(4)]
    assert RowOrder(10, 3, seed=6).rows(0) != order.rows(0) or RowOrder(10, 3, seed=6).rows(1) != order.rows(1)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_packed_sample_sees_only_itself(fixture: TrainingFixture, tokenizer: object, attention: str) -> None:
    """transformers 5 masks across samples from position ids alone, but only with use_cache=False."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(fixture.base_model), attn_implementation=attention).eval()
    samples, _ = build_samples(fixture_files(), tokenizer, spec("completion", seq_len=128))
    a, b = samples[0], samples[5]
    packed = collate([[a, b]], pad_id=0)
    alone = torch.from_numpy(b.ids.astype("int64"))[None]
    with torch.no_grad():
        reference = model(input_ids=alone, use_cache=False).logits[0]
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        leaky = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits[0]
    torch.testing.assert_close(logits[len(a) : len(a) + len(b)], reference, atol=1e-5, rtol=1e-5)
    # With the config's default use_cache=True a cache exists, the packed mask is skipped, b attends to a.
    assert (leaky[len(a) : len(a) + len(b)] - reference).abs().max() > 1e-2


def test_packed_sdpa_equals_sdpa_with_the_block_mask(fixture: TrainingFixture, tokenizer: object) -> None:
    """Each sample's own causal attention (what training uses on SDPA) = SDPA with the packed block mask, for
    rows of several samples and tail padding; the logits of the samples and the gradients alike."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(fixture.base_model), attn_implementation="sdpa").eval()
    samples, _ = build_samples(fixture_files(), tokenizer, spec("completion", seq_len=128))
    batch = collate([[samples[0], samples[5], samples[1]], [samples[2], samples[3]], [samples[4]]], pad_id=0)
    assert sample_spans(batch["position_ids"]) is not None  # short samples in long rows: attended one by one

    def logits_and_grad() -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        logits.square().mean().backward()
        return logits.detach(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()

    masked = logits_and_grad()
    register_packed_attention()
    model.set_attn_implementation(PACKED_SDPA)
    packed = logits_and_grad()
    for a, b in zip(masked, packed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("flatten_rows", [False, True])
def test_training_loss_of_a_packed_batch_is_the_sum_of_its_samples(
    fixture: TrainingFixture, tokenizer: object, flatten_rows: bool
) -> None:
    """The loss the loop trains on: packed (and flattened, as for flash-attention-2) = each sample alone."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(fixture.base_model))
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)).eval()
    samples, _ = build_samples(fixture_files(), tokenizer, spec("completion", "fim", seq_len=128))
    rows = [[samples[0], samples[1]], [samples[2], samples[3], samples[4]]]
    batch = collate(rows, pad_id=tokenizer.pad_token_id)  # type: ignore[attr-defined]
    loss_fn = CausalLMLoss(model, chunk_tokens=37, flatten_rows=flatten_rows)
    with torch.no_grad():
        packed = loss_fn(batch["input_ids"], batch["position_ids"], batch["labels"])
        alone = sum(
            loss_fn(**{k: v for k, v in collate([[s]], 0).items() if k in ("input_ids", "position_ids", "labels")})
            for row in rows
            for s in row
        )
    assert float(packed) == pytest.approx(float(alone), rel=1e-5)
    assert int(batch["loss_tokens"]) == sum(len(s) - s.prompt_len for row in rows for s in row)


def test_the_file_separator_is_the_tokenizers_own(tokenizer: object) -> None:
    """Training and the held-out evaluation frame files with the same token: the one the tokenizer has."""
    assert file_separator(tokenizer.get_vocab()) == "<|file_sep|>"  # type: ignore[attr-defined]
    assert file_separator({"<file_sep>": 7, "x": 1}) == "<file_sep>"
    assert file_separator({"x": 1}) == "" and file_header("", "a.py") == ""
    assert file_header("<|file_sep|>", "a.py") == "<|file_sep|>a.py\n"
