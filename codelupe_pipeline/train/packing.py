"""Packing samples into sequences, and the seeded order in which training sees them.

Several samples share one sequence so no compute goes to padding; each keeps its own boundaries:
- position ids restart at 0 for every sample. transformers (5.x, `masking_utils.find_packed_sequence_indices`)
  reads those restarts when no attention mask is passed and builds a block-diagonal causal mask for SDPA and
  eager attention, so no token attends to another sample. That detection is skipped when a KV cache exists,
  so training calls the model with `use_cache=False`. flash-attention-2 detects packing from position ids
  only for a batch of one row, so on that path the micro-batch is flattened into one row (see trainer).
- the first token of each sample takes no loss: it would be predicted from the previous sample's last token.
- the tail padding forms a sample of its own (positions from 0, no loss), so it changes nothing either.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch

from codelupe_pipeline.train.samples import IGNORE_INDEX, Sample


def pack(lengths: Sequence[int], seq_len: int) -> list[list[int]]:
    """Best-fit decreasing: each sample (longest first) goes where it leaves the least room; -> rows of indices."""
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row), sorted
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        size = lengths[index]
        if size > seq_len:
            raise ValueError(f"sample {index} has {size} tokens, more than seq_len {seq_len}")
        slot = bisect.bisect_left(free, (size, -1))
        if slot < len(free):
            room, row = free.pop(slot)
        else:
            room, row = seq_len, len(rows)
            rows.append([])
        rows[row].append(index)
        if room - size > 0:
            bisect.insort(free, (room - size, row))
    return rows


def one_per_row(lengths: Sequence[int]) -> list[list[int]]:
    """No packing: every sample is a row of its own, padded to the longest of its micro-batch."""
    return [[i] for i in range(len(lengths))]


def collate(rows: Sequence[Sequence[Sample]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors of packed rows: input_ids, labels, position_ids; plus token counts.

    `tokens` counts real tokens, `loss_tokens` those that take loss, and `attention_span` the sum of
    squared sample lengths (the effective attention length of MFU is attention_span / tokens).
    """
    width = max(sum(len(s) for s in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    tokens = span = 0
    for r, row in enumerate(rows):
        at = 0
        for sample in row:
            n = len(sample)
            input_ids[r, at : at + n] = torch.from_numpy(sample.ids.astype("int64"))
            labels[r, at : at + n] = torch.from_numpy(sample.labels)
            labels[r, at] = IGNORE_INDEX  # never predicted across a sample boundary
            position_ids[r, at : at + n] = torch.arange(n)
            at += n
            span += n * n
        tokens += at
        position_ids[r, at:] = torch.arange(width - at)  # padding: a segment of its own
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "tokens": torch.tensor(tokens),
        "loss_tokens": (labels != IGNORE_INDEX).sum(),
        "attention_span": torch.tensor(span),
    }


class RowOrder:
    """Which rows make micro-batch k: a seeded permutation per epoch, so the order depends only on (seed, k).

    Resuming needs no saved data-loader state: step s starts at micro-batch s * accumulation * world size.
    """

    def __init__(self, n_rows: int, micro_batch_size: int, seed: int) -> None:
        if n_rows == 0:
            raise ValueError("no training rows")
        self.n_rows = n_rows
        self.micro_batch_size = min(micro_batch_size, n_rows)
        self.seed = seed
        self.batches_per_epoch = n_rows // self.micro_batch_size
        self._epoch = -1
        self._order: list[int] = []

    def rows(self, micro_batch: int) -> list[int]:
        epoch, position = divmod(micro_batch, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(self.n_rows, generator=generator).tolist()
            self._epoch = epoch
        start = position * self.micro_batch_size
        return self._order[start : start + self.micro_batch_size]
