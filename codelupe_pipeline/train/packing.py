"""Packing samples into sequences, and the seeded order in which training sees them.

Several samples share one sequence so no compute goes to padding; each keeps its own boundaries:
- position ids restart at 0 for every sample. transformers (5.x, `masking_utils.find_packed_sequence_indices`)
  reads those restarts when no attention mask is passed and builds a block-diagonal causal mask for SDPA and
  eager attention, so no token attends to another sample. That detection is skipped when a KV cache exists,
  so training calls the model with `use_cache=False`. flash-attention-2 detects packing from position ids
  only for a batch of one row, so on that path the micro-batch is flattened into one row (see trainer).
- the first token of each sample takes no loss: it would be predicted from the previous sample's last token.
- the tail padding forms a sample of its own (positions from 0, no loss), so it changes nothing either.

SDPA with that block-diagonal mask still computes every row's full seq_len x seq_len score matrix and can use
no causal kernel, so on packed rows a token would pay for the whole row however short its sample. The trainer
therefore switches SDPA models to `PACKED_SDPA`: causal SDPA run on each sample's span of each row alone, the
spans read from the position ids, whenever that computes at most half of the rows' score matrices (see
`packed_sdpa_attention`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

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


# ------------------------------------------------------------------------------------------- attention
PACKED_SDPA = "codelupe_packed_sdpa"
# Below this share of the rows' full score matrices, per-sample calls beat one batched masked call; above it
# (rows of one sample and a little padding) the batched call wins.
PER_SAMPLE_MAX_SHARE = 0.5
_spans_cache: tuple[torch.Tensor | None, list[list[tuple[int, int]]] | None] = (None, None)


def sample_spans(position_ids: torch.Tensor) -> list[list[tuple[int, int]]] | None:
    """[start, end) of every sample in each row (a sample starts where the position id is 0); None when
    attending sample by sample would not save enough to pay for the extra calls."""
    global _spans_cache
    if _spans_cache[0] is position_ids:  # every layer of one forward pass gets the same tensor: one sync
        return _spans_cache[1]
    width = position_ids.shape[-1]
    spans = []
    for row in position_ids.reshape(-1, width).tolist():
        starts = [i for i, p in enumerate(row) if p == 0] or [0]
        if starts[0] != 0:
            starts.insert(0, 0)
        spans.append(list(zip(starts, [*starts[1:], width], strict=True)))
    share = sum((b - a) ** 2 for row in spans for a, b in row) / (len(spans) * width**2)
    _spans_cache = (position_ids, spans if share <= PER_SAMPLE_MAX_SHARE else None)
    return _spans_cache[1]


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal SDPA over each packed sample alone: the same result as SDPA with the block-diagonal mask, at the
    cost of the samples' own lengths. Anything else (a cache, a sliding window, no position ids, rows that are
    mostly one sample) goes to SDPA with the mask."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    plan = None
    if position_ids is not None and not kwargs.get("sliding_window") and query.shape[2] == key.shape[2]:
        plan = sample_spans(position_ids.expand(query.shape[0], -1))
    if plan is None:  # SDPA with the block-diagonal mask transformers built for it
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    rows = []
    for r, spans in enumerate(plan):
        q, k, v = query[r : r + 1], key[r : r + 1], value[r : r + 1]
        pieces = [
            torch.nn.functional.scaled_dot_product_attention(
                q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], dropout_p=dropout, scale=scaling, is_causal=True
            )
            for a, b in spans
        ]
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


def register_packed_attention() -> None:
    """Make `PACKED_SDPA` a transformers attention implementation; its masks are SDPA's (used on fallback)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    if PACKED_SDPA not in AttentionInterface._global_mapping:
        AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
        AttentionMaskInterface.register(PACKED_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
