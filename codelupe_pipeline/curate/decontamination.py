"""Benchmark decontamination: the texts of every benchmark the evaluation stage scores, and matching them.

A benchmark contributes its prompts and canonical solutions. A file is contaminated by a text when it holds
at least `min_overlap` of the text's distinct token n-grams (lowercased identifier tokens, so whitespace,
punctuation and case do not matter): a copy of the text, reformatted, matches in full. Texts with fewer
than n tokens are trivial (`return x + y`) and never match, as in BigCode's decontamination.

The curation SQL models do the matching in DuckDB (`benchmark_ngrams`, `contaminated_files`);
`find_contamination` is the same rule in numpy, for checking an exported snapshot without the warehouse.

The benchmarks are those the evaluation stage scores (`evaluation_benchmark_texts`, from its benchmarks
file): adding a benchmark there decontaminates against it too. Other texts can be passed as well:
`texts_from_tasks("mbpp", tasks)` for anything with `task_id`, `prompt` and `canonical_solution`, or
`BenchmarkText` rows built by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from codelupe_pipeline.curate.shingles import Batch, Int64Array, UInt64Array, ngram_hashes, token_hashes, window_hashes

BENCHMARK_TEXTS_TABLE = "benchmark_texts"


class BenchmarkTask(Protocol):
    @property
    def task_id(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def canonical_solution(self) -> str | None: ...


@dataclass(frozen=True)
class BenchmarkText:
    benchmark: str  # e.g. "humaneval"
    task_id: str
    part: str  # "prompt" or "solution"
    text: str


@dataclass(frozen=True)
class Contamination:
    row: int  # index of the contaminated document in the input
    text: BenchmarkText
    overlap: float  # share of the text's distinct n-grams found in the document


def texts_from_tasks(benchmark: str, tasks: Iterable[BenchmarkTask]) -> list[BenchmarkText]:
    """The prompt and the canonical solution (where the format has one) of every task."""
    texts = []
    for task in tasks:
        texts.append(BenchmarkText(benchmark, task.task_id, "prompt", task.prompt))
        if task.canonical_solution:
            texts.append(BenchmarkText(benchmark, task.task_id, "solution", task.canonical_solution))
    return texts


def evaluation_benchmark_texts(benchmarks_file: Path | None = None) -> list[BenchmarkText]:
    """Every benchmark the evaluation stage scores (its benchmarks file; HumanEval alone without one).

    The one list curation decontaminates against: the `benchmark_texts` asset writes it for the SQL models and
    the snapshot's `no_benchmark_contamination` check reads it.
    """
    from codelupe_pipeline.evaluate.benchmarks import benchmark_texts

    texts = []
    for item in benchmark_texts(benchmarks_file):
        texts.append(BenchmarkText(item.benchmark, item.task_id, "prompt", item.prompt))
        if item.solution:
            texts.append(BenchmarkText(item.benchmark, item.task_id, "solution", item.solution))
    return texts


def write_benchmark_texts(con: duckdb.DuckDBPyConnection, texts: Sequence[BenchmarkText]) -> int:
    """Replace the `benchmark_texts` table the decontamination models read; returns its row count."""
    table = pa.table(
        {
            "benchmark": pa.array([t.benchmark for t in texts], pa.string()),
            "task_id": pa.array([t.task_id for t in texts], pa.string()),
            "part": pa.array([t.part for t in texts], pa.string()),
            "text": pa.array([t.text for t in texts], pa.string()),
        }
    )
    con.register("_benchmark_texts", table)
    try:
        con.execute(f'CREATE OR REPLACE TABLE "{BENCHMARK_TEXTS_TABLE}" AS SELECT * FROM _benchmark_texts')
    finally:
        con.unregister("_benchmark_texts")
    return len(texts)


# Token hashes are tested against the benchmarks' vocabulary in a table indexed by their top bits: 4 MB,
# so that a few thousand benchmark tokens let through well under 0.1 % of other tokens.
_VOCABULARY_BITS = 22


@dataclass(frozen=True)
class BenchmarkIndex:
    """The n-grams of benchmark texts, ready to be looked for in many documents at once.

    A document's n-gram can only be a benchmark n-gram when each of its n tokens occurs in some benchmark
    text, so `hits` hashes only the windows made entirely of benchmark tokens (a table lookup per token),
    and tests those against the sorted benchmark n-grams: exactly the n-grams `ngram_hashes` would have
    found in the set, without hashing and testing the tens of millions of other windows of a corpus.
    """

    n: int
    grams: UInt64Array  # distinct (n-gram, text) pairs of the non-trivial texts, sorted by n-gram
    gram_texts: Int64Array  # the text of each pair, an index into the texts the index was built from
    grams_per_text: Int64Array  # distinct n-grams of each text (0 for a trivial one)
    vocabulary: npt.NDArray[np.bool_]  # True at the top bits of every token of a non-trivial text

    @classmethod
    def build(cls, texts: Sequence[str] | pa.Array | pa.ChunkedArray, n: int) -> BenchmarkIndex:
        text_array = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(list(texts), pa.string())
        text_tokens = token_hashes(text_array)
        text_grams = ngram_hashes(text_tokens, n)
        # Texts with fewer than n tokens have no n-gram: trivial, they never match.
        text_of_gram = np.repeat(np.arange(len(text_array)), text_grams.counts)
        pairs = np.unique(np.stack([text_grams.values, text_of_gram.astype(np.uint64)]), axis=1)
        gram_texts = pairs[1].astype(np.int64)
        vocabulary = np.zeros(1 << _VOCABULARY_BITS, dtype=np.bool_)
        nontrivial = np.repeat(text_tokens.counts >= n, text_tokens.counts)
        vocabulary[text_tokens.values[nontrivial] >> np.uint64(64 - _VOCABULARY_BITS)] = True
        return cls(n, pairs[0], gram_texts, np.bincount(gram_texts, minlength=len(text_array)), vocabulary)

    def hits(self, documents: pa.Array | pa.ChunkedArray) -> Batch:
        """Per document, its distinct n-grams that are n-grams of some benchmark text too, sorted."""
        tokens = token_hashes(documents)
        n, values, n_docs = self.n, tokens.values, len(tokens.offsets) - 1
        if len(values) < n or len(self.grams) == 0:
            return Batch(np.zeros(0, dtype=np.uint64), np.zeros(n_docs + 1, dtype=np.int64))
        foreign = ~self.vocabulary[values >> np.uint64(64 - _VOCABULARY_BITS)]
        seen = np.zeros(len(values) + 1, dtype=np.int32)
        np.cumsum(foreign, out=seen[1:])
        # Windows without a single non-benchmark token, that do not run past the end of their document.
        starts = np.flatnonzero(seen[n:] == seen[:-n])
        doc = np.searchsorted(tokens.offsets, starts, side="right") - 1
        inside = starts + n <= tokens.offsets[doc + 1]
        starts, doc = starts[inside], doc[inside]
        grams = window_hashes(values, starts, n)
        at = np.minimum(np.searchsorted(self.grams, grams), len(self.grams) - 1)
        known = self.grams[at] == grams
        found = np.unique(np.stack([doc[known].astype(np.uint64), grams[known]]), axis=1)
        offsets = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(np.bincount(found[0].astype(np.int64), minlength=n_docs), out=offsets[1:])
        return Batch(found[1].copy(), offsets)

    def matches(self, documents: pa.Array | pa.ChunkedArray, min_overlap: float) -> list[tuple[int, int, float]]:
        """(document, text, overlap): each document's best text among those it holds `min_overlap` of.

        A tie goes to the text built into the index first.
        """
        hits = self.hits(documents)
        best: dict[int, tuple[int, int, float]] = {}
        if len(hits.values) == 0:
            return []
        # Each (document, n-gram) found counts once for every text that has that n-gram.
        first = np.searchsorted(self.grams, hits.values, side="left")
        last = np.searchsorted(self.grams, hits.values, side="right")
        docs = np.repeat(np.repeat(np.arange(len(hits.counts)), hits.counts), last - first)
        text_index = self.gram_texts[np.concatenate([np.arange(a, b) for a, b in zip(first, last, strict=True)])]
        found, found_counts = np.unique(np.stack([docs, text_index]), axis=1, return_counts=True)
        for (doc, text), count in zip(found.T, found_counts, strict=True):
            overlap = float(count) / float(self.grams_per_text[text])
            if overlap >= min_overlap and (doc not in best or overlap > best[doc][2]):
                best[int(doc)] = (int(doc), int(text), overlap)
        return [best[doc] for doc in sorted(best)]


def find_contamination(
    documents: pa.Array | pa.ChunkedArray,
    texts: Sequence[BenchmarkText],
    n: int = 13,
    min_overlap: float = 0.5,
    index: BenchmarkIndex | None = None,
) -> list[Contamination]:
    """Every document holding at least `min_overlap` of some benchmark text's n-grams (its best match).

    `index`, built from these texts with this n, saves rebuilding it when the documents come in batches.
    """
    if index is None:
        index = BenchmarkIndex.build([t.text for t in texts], n)
    return [Contamination(row, texts[text], overlap) for row, text, overlap in index.matches(documents, min_overlap)]
