"""Training samples from a curated snapshot: token ids plus labels (-100 where no loss is taken)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

IGNORE_INDEX = -100  # label of a token that takes no loss (prompt, padding)


@dataclass(frozen=True)
class Sample:
    input_ids: list[int]
    labels: list[int]

    @property
    def loss_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass(frozen=True)
class SnapshotFile:
    repo: str
    path: str
    language: str
    content: str


def read_snapshot_files(data_path: Path, split: str) -> list[SnapshotFile]:
    table = pq.read_table(data_path, columns=["repo", "path", "language", "content", "split"])
    rows = table.to_pylist()
    return [SnapshotFile(r["repo"], r["path"], r["language"], r["content"]) for r in rows if r["split"] == split]


def completion_samples(files: Sequence[SnapshotFile], tokenizer: Any, seq_len: int) -> list[Sample]:
    """Each file as `<|file_sep|>path\\ncontent<eos>`, cut into windows of at most seq_len tokens."""
    file_sep = "<|file_sep|>" if "<|file_sep|>" in tokenizer.get_vocab() else ""
    texts = [f"{file_sep}{f.path}\n{f.content}" for f in files]
    # Long files are cut into windows below: silence the tokenizer's "longer than the maximum" warning.
    tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    samples = []
    for ids in encoded:
        ids = [*ids, tokenizer.eos_token_id]
        for start in range(0, len(ids), seq_len):
            window = ids[start : start + seq_len]
            if len(window) >= 16:  # a sliver at the end of a file teaches little
                samples.append(Sample(window, list(window)))
    return samples


def collate(samples: Sequence[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding takes no loss and no attention."""
    width = max(len(s.input_ids) for s in samples)
    input_ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(samples), width), dtype=torch.long)
    for row, sample in enumerate(samples):
        n = len(sample.input_ids)
        input_ids[row, :n] = torch.tensor(sample.input_ids)
        labels[row, :n] = torch.tensor(sample.labels)
        attention[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def batches(samples: Sequence[Sample], batch_size: int, seed: int) -> Iterator[list[Sample]]:
    """Endless seeded shuffled batches, epoch after epoch: the same seed gives the same order."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(samples), generator=generator).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield [samples[i] for i in order[start : start + batch_size]]
        if len(order) < batch_size:
            yield [samples[i] for i in order]
