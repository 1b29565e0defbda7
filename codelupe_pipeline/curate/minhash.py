"""MinHash signatures for near-duplicate detection, for a whole batch of documents in a few numpy passes.

A signature has `num_perm` slots; two documents agree on a slot with probability equal to the Jaccard
similarity of their sets of token n-grams (shingles), so the share of agreeing slots estimates it.

Classic MinHash hashes every shingle `num_perm` times (256 hashes per shingle); that is what makes
datatrove's and text-dedup's signature stages slow. We use one-permutation hashing (Li, Owen & Zhang,
NeurIPS 2012) with optimal densification (Shrivastava, ICML 2017): one hash per shingle, whose top bits
pick one of `num_perm` slots and whose value competes for that slot's minimum; a slot no shingle fell in
borrows the value of another slot chosen by a fixed pseudo-random probe sequence, identical for every
document. Each slot still collides with probability exactly J, with the variance of classic MinHash, at
1/num_perm of the cost.

Slot values are stored as 32-bit integers: two different minima agree by accident with probability 2^-32.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

from codelupe_pipeline.curate.shingles import U64, Batch, mix64

EMPTY = np.iinfo(np.uint64).max
_MAX_PROBES = 1 << 16  # a document with one filled slot needs about num_perm * ln(num_perm) probes


@cache
def _probe_table(num_perm: int, seed: int) -> npt.NDArray[np.int64]:
    """probe[t, j]: the slot an empty slot j looks at on its t-th attempt (same for every document)."""
    rng = np.random.default_rng(seed)
    rows = max(64, 8 * num_perm)
    return rng.integers(0, num_perm, size=(rows, num_perm), dtype=np.int64)


def signatures(shingles: Batch, num_perm: int = 256, seed: int = 1) -> npt.NDArray[np.uint32]:
    """One signature row per document; a document without shingles gets a row of zeros."""
    if num_perm < 1:
        raise ValueError(f"num_perm must be at least 1, not {num_perm}")
    n_docs = len(shingles.offsets) - 1
    counts = shingles.counts
    # Re-hash with the seed so that different seeds give independent signatures of the same shingles.
    hashed = mix64(shingles.values ^ mix64(np.array([seed], dtype=U64))[0])
    # The slot of a hash: multiply-shift of its top 32 bits onto [0, num_perm), unbiased for any num_perm.
    slot = ((hashed >> U64(32)) * U64(num_perm)) >> U64(32)
    doc = np.repeat(np.arange(n_docs, dtype=np.int64), counts)
    flat = np.full(n_docs * num_perm, EMPTY, dtype=U64)
    np.minimum.at(flat, doc * num_perm + slot.astype(np.int64), hashed)
    minima = flat.reshape(n_docs, num_perm)
    _densify(minima, counts > 0, num_perm, seed)
    out = (minima & U64(0xFFFFFFFF)).astype(np.uint32)
    out[counts == 0] = 0
    return out


def _densify(minima: npt.NDArray[np.uint64], has_shingles: npt.NDArray[np.bool_], num_perm: int, seed: int) -> None:
    """Fill every empty slot of a document with shingles from the first filled slot its probe sequence hits."""
    original = minima.copy()
    rows, cols = np.nonzero((original == EMPTY) & has_shingles[:, None])
    probes = _probe_table(num_perm, seed)
    attempt = 0
    while len(rows) and attempt < _MAX_PROBES:
        # Past the end of the table, the same rows are read shifted by one column per pass: new probes.
        lap = attempt // len(probes)
        candidate = original[rows, probes[attempt % len(probes), (cols + lap) % num_perm]]
        filled = candidate != EMPTY
        minima[rows[filled], cols[filled]] = candidate[filled]
        rows, cols = rows[~filled], cols[~filled]
        attempt += 1
    if len(rows):  # unreachable in practice: a document with shingles has at least one filled slot
        raise RuntimeError("MinHash densification did not converge")


def estimated_jaccard(a: npt.NDArray[np.uint32], b: npt.NDArray[np.uint32]) -> float:
    """Share of slots on which two signatures agree."""
    return float(np.mean(a == b))
