"""Tokens and n-gram hashes of many texts at once, vectorised with numpy over Arrow string buffers.

A token is a run of identifier characters (ASCII letters, digits, `_`, and any non-ASCII byte, so that
identifiers and words in other scripts count too); everything else separates tokens, as in The Stack's
near-deduplication. Tokens are lowercased, so near-duplicate and benchmark matching ignore case.

Nothing here loops over documents or tokens in Python: a batch of documents is one byte buffer (Arrow's
own, not copied per document), cut into cache-sized chunks of whole documents, and every step is a numpy
operation over a whole chunk. This is what lets MinHash and decontamination keep up with DuckDB's own
per-file statistics.

Hashes are 64-bit and deterministic across processes and machines (no Python `hash()`, which is salted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

U64 = np.uint64
UInt64Array = npt.NDArray[np.uint64]
Int64Array = npt.NDArray[np.int64]

_WORD_BYTES = 8
_CHUNK_BYTES = 256 * 1024
_LOW_BYTES_MASK = np.array([0, *((1 << (8 * k)) - 1 for k in range(1, 8)), (1 << 64) - 1], dtype=U64)
_ROLL = U64(0x100000001B3)  # odd multiplier of the polynomial that combines token hashes into an n-gram hash


def mix64(x: UInt64Array) -> UInt64Array:
    """splitmix64's finaliser, in place: spreads every input bit over the whole word."""
    x ^= x >> U64(30)
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    x ^= x >> U64(31)
    return x


@dataclass(frozen=True)
class Batch:
    """Per-document hashes laid end to end: document i owns values[offsets[i]:offsets[i + 1]]."""

    values: UInt64Array
    offsets: Int64Array

    @property
    def counts(self) -> Int64Array:
        return np.diff(self.offsets)

    def to_arrow(self) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), pa.array(self.values))


def _string_buffers(strings: pa.Array | pa.ChunkedArray) -> tuple[npt.NDArray[np.uint8], Int64Array]:
    """The UTF-8 bytes of all strings and the offsets of each (nulls are empty), without copying."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    if pa.types.is_string(strings.type) or pa.types.is_binary(strings.type):
        offset_type: type = np.int32
    elif pa.types.is_large_string(strings.type) or pa.types.is_large_binary(strings.type):
        offset_type = np.int64
    else:
        strings = strings.cast(pa.large_string())
        offset_type = np.int64
    if strings.null_count:
        strings = strings.fill_null("")
    _, offsets_buffer, data_buffer = strings.buffers()
    start = strings.offset
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[start : start + len(strings) + 1].astype(np.int64)
    if data_buffer is None or len(strings) == 0 or offsets[-1] == offsets[0]:
        return np.zeros(0, dtype=np.uint8), np.zeros(len(strings) + 1, dtype=np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data, offsets - offsets[0]


def _is_word_byte(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    lower = data | np.uint8(0x20)
    letter = (lower - np.uint8(ord("a"))) < 26
    digit = (data - np.uint8(ord("0"))) < 10
    return letter | digit | (data == ord("_")) | (data >= 0x80)


def ascii_letter_digit_counts(strings: pa.Array | pa.ChunkedArray) -> tuple[Int64Array, Int64Array]:
    """(letters and digits, letters) per string: the ASCII [A-Za-z0-9] and [A-Za-z] characters it holds.

    Counted over Arrow's UTF-8 buffer: a multi-byte character never has an ASCII byte, so bytes and
    characters agree. This replaces SQL's `length(translate(...))`, which builds a new string per file.
    """
    data, offsets = _string_buffers(strings)
    n_docs = len(offsets) - 1
    letters, digits = np.zeros(n_docs, dtype=np.int64), np.zeros(n_docs, dtype=np.int64)
    nonempty = np.flatnonzero(np.diff(offsets) > 0)
    if len(nonempty) == 0:
        return letters, letters.copy()
    starts = offsets[nonempty]
    # Sums over whole documents without a cumulative sum as long as the corpus (empty ones never start a segment).
    letters[nonempty] = np.add.reduceat(((data | np.uint8(0x20)) - np.uint8(ord("a"))) < 26, starts, dtype=np.int64)
    digits[nonempty] = np.add.reduceat((data - np.uint8(ord("0"))) < 10, starts, dtype=np.int64)
    return letters + digits, letters


def token_hashes(strings: pa.Array | pa.ChunkedArray) -> Batch:
    """The hash of every token of every string, in order, grouped per string."""
    data, offsets = _string_buffers(strings)
    # Work through the bytes a few hundred kilobytes at a time (whole documents): every temporary array
    # then stays in the CPU cache, which is several times faster than streaming 30 MB arrays through memory.
    hashes: list[UInt64Array] = []
    counts: list[Int64Array] = []
    first = 0
    while first < len(offsets) - 1:
        last = int(np.searchsorted(offsets, offsets[first] + _CHUNK_BYTES, side="right")) - 1
        last = min(max(last, first + 1), len(offsets) - 1)
        start, end = offsets[first], offsets[last]
        chunk = _tokens_of(data[start:end], offsets[first : last + 1] - start)
        hashes.append(chunk.values)
        counts.append(chunk.counts)
        first = last
    token_offsets = np.zeros(len(offsets), dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=token_offsets[1:])
    return Batch(np.concatenate(hashes) if hashes else np.zeros(0, dtype=U64), token_offsets)


def _tokens_of(data: npt.NDArray[np.uint8], offsets: Int64Array) -> Batch:
    n_docs = len(offsets) - 1
    if len(data) == 0:
        return Batch(np.zeros(0, dtype=U64), np.zeros(n_docs + 1, dtype=np.int64))
    word = np.zeros(len(data) + 2, dtype=np.bool_)
    word[1:-1] = _is_word_byte(data)
    # Alternating token starts and token ends (a bool comparison: numpy's nonzero is fastest on bools).
    edges = np.flatnonzero(word[1:] != word[:-1])
    starts, ends = edges[0::2], edges[1::2]
    # A token running over the end of one document into the next is two tokens.
    inner = offsets[1:-1]
    inner = inner[(inner > 0) & (inner < len(data))]
    crossing = np.unique(inner[word[inner] & word[inner + 1]])
    if len(crossing):
        starts = np.sort(np.concatenate([starts, crossing]))
        ends = np.sort(np.concatenate([ends, crossing]))
    lengths = ends - starts

    # Lowercase ASCII letters, then read each token as up to three little-endian words (head, middle,
    # tail) with unaligned loads: tokens of up to 24 bytes are hashed whole, longer ones by those 24.
    padded = np.zeros(len(data) + _WORD_BYTES, dtype=np.uint8)
    padded[: len(data)] = data | (((data - np.uint8(ord("A"))) < 26).astype(np.uint8) << np.uint8(5))
    words = np.ndarray(shape=(len(data),), dtype="<u8", buffer=padded, strides=(1,))
    mask = _LOW_BYTES_MASK[np.minimum(lengths, _WORD_BYTES)]
    head = words[starts] & mask
    tail = words[np.maximum(ends - _WORD_BYTES, starts)] & mask
    middle = words[starts + np.maximum((lengths - _WORD_BYTES) // 2, 0)] & mask
    hashes = mix64(head ^ (lengths.astype(U64) << U64(56)))
    hashes ^= mix64(tail + U64(0x632BE59BD9B4E019))
    hashes += mix64(middle ^ U64(0x9E3779B97F4A7C15))
    mix64(hashes)
    return Batch(hashes, np.searchsorted(starts, offsets, side="left").astype(np.int64))


def ngram_hashes(tokens: Batch, n: int, short_documents: bool = False) -> Batch:
    """The hash of every window of `n` consecutive tokens of each document.

    A document with fewer than `n` tokens has no window; with `short_documents` it yields instead one hash
    of all its tokens (if it has any), so that short files still have a fingerprint.
    """
    if n < 1:
        raise ValueError(f"n-gram size must be at least 1, not {n}")
    counts = tokens.counts
    full_doc = counts >= n
    short_windows = np.minimum(counts, 1) if short_documents else np.zeros_like(counts)
    windows = np.where(full_doc, counts - n + 1, short_windows)
    out_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(windows, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=U64)
    window_of_full_doc = np.repeat(full_doc, windows)

    # Windows inside documents with at least n tokens: a rolling polynomial over slices of the whole
    # token array, then keep the windows that do not run past the end of their document.
    values, total = tokens.values, len(tokens.values)
    if total >= n and full_doc.any():
        acc = _roll(lambda k: values[k : total - n + 1 + k], n)
        doc_end = np.repeat(tokens.offsets[1:], counts)[: total - n + 1]
        out[window_of_full_doc] = acc[np.arange(total - n + 1) + n <= doc_end]
    # Documents shorter than n tokens: one hash of all their tokens (zeros stand in for the rest).
    short = np.flatnonzero(~full_doc & (counts > 0)) if short_documents else np.zeros(0, dtype=np.int64)
    if len(short):
        first, span = tokens.offsets[short], counts[short]
        padded = np.concatenate([values, np.zeros(n, dtype=U64)])

        def column(k: int) -> UInt64Array:
            return np.where(span > k, padded[first + k], U64(0))

        out[~window_of_full_doc] = _roll(column, n, span.astype(U64))
    return Batch(out, out_offsets)


def window_hashes(token_values: UInt64Array, starts: Int64Array, n: int) -> UInt64Array:
    """The hashes `ngram_hashes` gives the windows of `n` tokens starting at these positions of `token_values`.

    For hashing a few chosen windows (those a cheaper test kept) instead of every window of every document.
    """
    return _roll(lambda k: token_values[starts + k], n)


def _roll(column: Callable[[int], UInt64Array], n: int, length: UInt64Array | None = None) -> UInt64Array:
    """mix(h0 * R^(n-1) + h1 * R^(n-2) + ... + h(n-1) [+ length]) over columns of token hashes."""
    acc = column(0).copy()
    for k in range(1, n):
        acc *= _ROLL
        acc += column(k)
    acc += U64(n) if length is None else length
    return mix64(acc)
