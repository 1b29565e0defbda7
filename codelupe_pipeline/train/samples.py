"""Training samples from a curated snapshot: a prompt that takes no loss, then the target that does.

Each file is cut at syntactic boundaries (`boundaries.py`) into targets of at most half a sequence: one
function, class or statement, or several consecutive ones. Every target becomes one sample, in one of three
formats chosen per target (seeded, so the same snapshot and seed give the same samples):

- completion:  <file_sep>path\\n + the code before the target  ->  the target (+ eos at the end of the file)
- fim:         <fim_prefix> before <fim_suffix> after <fim_middle>  ->  the target + eos
               (prefix-suffix-middle order with the model's own FIM tokens)
- instruction: the model's chat template; the user asks to continue the code before the target, fenced;
               the assistant turn (the fenced target and the template's end of turn) takes the loss

The context before (and after, for FIM) is cut at line starts to fit `seq_len`; the target is never cut
except when a single unit is longer than half a sequence, where it continues in the next sample.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from codelupe_pipeline.train.boundaries import find_boundaries
from codelupe_pipeline.train.profiles import FimTokens

IGNORE_INDEX = -100  # label of a token that takes no loss (prompt, padding)
MIN_TARGET_TOKENS = 4  # a sliver of a target teaches little

INSTRUCTIONS = (
    "Complete the following {language} code from `{path}`.",
    "Continue this {language} file (`{path}`) with the code that comes next.",
    "Here is the beginning of `{path}`. Write the next part of this {language} file.",
    "Write the {language} code that follows in `{path}`.",
    "You are given the start of a {language} source file, `{path}`. Continue it.",
    "Finish the next definition of this {language} file, `{path}`.",
)


@dataclass(frozen=True)
class SnapshotFile:
    repo: str
    path: str
    language: str
    content: str


@dataclass(frozen=True)
class Sample:
    ids: np.ndarray  # int32 token ids: the prompt, then the target
    prompt_len: int  # the first prompt_len tokens take no loss
    format: str
    boundary: str  # the kind of split the target starts at: definition, blank_line or line

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labels(self) -> np.ndarray:
        labels = self.ids.astype(np.int64)
        labels[: self.prompt_len] = IGNORE_INDEX
        return labels


@dataclass(frozen=True)
class SampleSpec:
    """What shapes the samples: the formats, the sequence length, the model's special tokens."""

    formats: tuple[str, ...]
    seq_len: int
    seed: int
    fim: FimTokens | None = None
    file_separator: str = ""  # the model's own (`file_separator`); "" = files go unframed


# The tokens that start a file in repo-level pretraining (Qwen2.5-Coder's, StarCoder2's). Training and the
# held-out evaluation frame each file with the one the tokenizer has, so both see the same text.
FILE_SEPARATORS = ("<|file_sep|>", "<file_sep>")


def file_separator(vocab: Mapping[str, int]) -> str:
    return next((token for token in FILE_SEPARATORS if token in vocab), "")


def file_header(separator: str, path: str) -> str:
    """What precedes a file's content: the separator and the path on its own line, or nothing."""
    return f"{separator}{path}\n" if separator else ""


@dataclass
class SampleReport:
    files: int = 0
    samples: int = 0
    tokens: int = 0
    loss_tokens: int = 0
    by_format: Counter[str] = field(default_factory=Counter)
    by_boundary: Counter[str] = field(default_factory=Counter)
    skipped_files: Counter[str] = field(default_factory=Counter)  # reason -> files

    def add(self, sample: Sample) -> None:
        self.samples += 1
        self.tokens += len(sample)
        self.loss_tokens += len(sample) - sample.prompt_len
        self.by_format[sample.format] += 1
        self.by_boundary[sample.boundary] += 1


def read_snapshot_files(data_path: Path, split: str) -> list[SnapshotFile]:
    table = pq.read_table(data_path, columns=["repo", "path", "language", "content", "split"])
    rows = table.to_pylist()
    return [SnapshotFile(r["repo"], r["path"], r["language"], r["content"]) for r in rows if r["split"] == split]


@dataclass(frozen=True)
class _Target:
    start: int  # character offsets of the target in the file
    end: int
    boundary: str


def _count(token_starts: list[int], a: int, b: int) -> int:
    """Tokens of the file that start within characters [a, b)."""
    return bisect.bisect_left(token_starts, b) - bisect.bisect_left(token_starts, a)


def _targets(text: str, language: str, token_starts: list[int], budget: int) -> list[_Target]:
    """Consecutive targets of at most `budget` tokens, each starting at a boundary after the first unit."""
    bounds = find_boundaries(text, language)
    units = [*bounds.offsets[1:], len(text)]
    line_starts = bounds.line_starts

    targets: list[_Target] = []
    start, kind = units[0], bounds.kind
    while start < len(text):
        nxt = bisect.bisect_right(units, start)  # first unit boundary after start
        end = units[nxt] if nxt < len(units) else len(text)
        if _count(token_starts, start, end) > budget:  # one unit longer than the budget: cut it at a line start
            token_index = bisect.bisect_left(token_starts, start) + budget
            cut = token_starts[min(token_index, len(token_starts) - 1)]
            end = line_starts[max(bisect.bisect_right(line_starts, cut) - 1, 0)]
            if end <= start:  # a single line longer than the budget
                end = cut if cut > start else len(text)
        else:
            while nxt + 1 < len(units) and _count(token_starts, start, units[nxt + 1]) <= budget:
                nxt += 1
            end = units[nxt] if nxt < len(units) else len(text)
        if text[start:end].strip():
            targets.append(_Target(start, end, kind))
        kind = bounds.kind if end in bounds.offsets else "line"
        start = end
    return targets


def _clip_start(text: str, token_starts: list[int], end: int, budget: int) -> int:
    """Where context ending at `end` starts to hold about `budget` tokens, moved to a line start."""
    last = bisect.bisect_left(token_starts, end)
    first = max(0, last - budget)
    if first == 0:
        return 0
    newline = text.find("\n", token_starts[first], end)
    return end if newline < 0 else newline + 1


def _clip_end(text: str, token_starts: list[int], start: int, budget: int) -> int:
    """Where context starting at `start` ends to hold about `budget` tokens, moved back to a line end."""
    first = bisect.bisect_left(token_starts, start)
    if first + budget >= len(token_starts):
        return len(text)
    newline = text.rfind("\n", start, token_starts[first + budget])
    return start if newline < 0 else newline + 1


def _fence(code: str) -> str:
    return code if code.endswith("\n") else code + "\n"


def build_samples(files: Sequence[SnapshotFile], tokenizer: Any, spec: SampleSpec) -> tuple[list[Sample], SampleReport]:
    """Samples of every file, in file order; files that give none are counted by reason in the report."""
    report = SampleReport()
    samples: list[Sample] = []
    eos = [tokenizer.eos_token_id]
    target_budget = spec.seq_len // 2
    for file in files:
        report.files += 1
        if not file.content.strip():
            report.skipped_files["empty"] += 1
            continue
        try:
            made = _file_samples(file, tokenizer, spec, target_budget, eos)
        except Exception as exc:  # one bad file never stops training: count it, skip it
            report.skipped_files[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
            continue
        if not made:
            report.skipped_files["no target after the first unit"] += 1
        for sample in made:
            samples.append(sample)
            report.add(sample)
    return samples, report


def _file_samples(file: SnapshotFile, tokenizer: Any, spec: SampleSpec, budget: int, eos: list[int]) -> list[Sample]:
    text = file.content
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    token_starts = [start for start, _ in offsets]
    rng = random.Random(f"{spec.seed}:{file.repo}:{file.path}")
    header = file_header(spec.file_separator, file.path)
    targets = _targets(text, file.language, token_starts, budget)
    formats = [rng.choice(spec.formats) for _ in targets]
    instructions = [rng.choice(INSTRUCTIONS) for _ in targets]

    def render(i: int, context: int) -> list[tuple[str, bool]]:
        """Sample i as (text, takes loss) pieces, with about `context` tokens of code around the target."""
        start, end = targets[i].start, targets[i].end
        middle = text[start:end]
        if formats[i] == "fim":
            assert spec.fim is not None
            prefix = text[_clip_start(text, token_starts, start, context * 2 // 3) : start]
            suffix = text[end : _clip_end(text, token_starts, end, context // 3)]
            return [(f"{spec.fim.prefix}{prefix}{spec.fim.suffix}{suffix}{spec.fim.middle}", False), (middle, True)]
        prefix = text[_clip_start(text, token_starts, start, context) : start]
        if formats[i] == "completion":
            return [(header + prefix, False), (middle, True)]
        return _chat_pieces(tokenizer, file, instructions[i], prefix, middle)

    # The context is estimated from the file's own tokens; a sample that comes out too long is rendered
    # again with less. Each round tokenizes all its pieces in one call (the tokenizer's threads share it).
    contexts = [spec.seq_len - _count(token_starts, t.start, t.end) - 16 for t in targets]  # 16: special tokens
    made: dict[int, tuple[list[int], int]] = {}
    pending = list(range(len(targets)))
    for _ in range(4):
        rendered = [render(i, contexts[i]) for i in pending]
        pieces = [piece for sample in rendered for piece, _ in sample]
        encoded = iter(tokenizer(pieces, add_special_tokens=False)["input_ids"] if pieces else [])
        retry = []
        for i, sample in zip(pending, rendered, strict=True):
            parts = [(next(encoded), takes_loss) for _, takes_loss in sample]
            ids = [t for part, _ in parts for t in part]
            if formats[i] == "fim" or (formats[i] == "completion" and targets[i].end == len(text)):
                ids += eos
            if len(ids) > spec.seq_len:
                contexts[i] -= len(ids) - spec.seq_len + 8
                retry.append(i)
            else:
                made[i] = (ids, sum(len(part) for part, takes_loss in parts if not takes_loss))
        pending = retry
        if not pending:
            break
    out = []
    for i in sorted(made):
        ids, prompt_len = made[i]
        if len(ids) - prompt_len >= MIN_TARGET_TOKENS and prompt_len >= 1:
            out.append(Sample(np.asarray(ids, dtype=np.int32), prompt_len, formats[i], targets[i].boundary))
    return out


def _chat_pieces(
    tokenizer: Any, file: SnapshotFile, instruction: str, prefix: str, middle: str
) -> list[tuple[str, bool]]:
    """The prompt (up to the assistant turn) and the target (the assistant turn) in the model's template."""
    language = file.language
    instruction = instruction.format(language=language, path=file.path)
    user = {"role": "user", "content": f"{instruction}\n\n```{language}\n{_fence(prefix)}```"}
    assistant = {"role": "assistant", "content": f"```{language}\n{_fence(middle)}```"}
    prompt = tokenizer.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([user, assistant], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer")
    return [(prompt, False), (full[len(prompt) :], True)]
