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
import pyarrow as pa

from codelupe_pipeline.curate.shingles import ngram_hashes, token_hashes

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


def find_contamination(
    documents: pa.Array | pa.ChunkedArray,
    texts: Sequence[BenchmarkText],
    n: int = 13,
    min_overlap: float = 0.5,
) -> list[Contamination]:
    """Every document holding at least `min_overlap` of some benchmark text's n-grams (its best match)."""
    text_tokens = token_hashes(pa.array([t.text for t in texts], pa.string()))
    text_grams = ngram_hashes(text_tokens, n)
    counts = text_tokens.counts
    # Distinct (n-gram, text) pairs of the non-trivial texts, sorted by n-gram for lookups.
    text_of_gram = np.repeat(np.arange(len(texts)), text_grams.counts)
    keep = counts[text_of_gram] >= n
    pairs = np.unique(np.stack([text_grams.values[keep], text_of_gram[keep].astype(np.uint64)]), axis=1)
    gram_values, gram_texts = pairs[0], pairs[1].astype(np.int64)
    grams_per_text = np.bincount(gram_texts, minlength=len(texts))

    doc_grams = ngram_hashes(token_hashes(documents), n)
    doc_of_gram = np.repeat(np.arange(len(doc_grams.counts)), doc_grams.counts)
    present = np.isin(doc_grams.values, gram_values)
    found = np.unique(np.stack([doc_of_gram[present].astype(np.uint64), doc_grams.values[present]]), axis=1)
    best: dict[int, Contamination] = {}
    if found.shape[1]:
        # Each (document, n-gram) found counts once for every text that has that n-gram.
        first = np.searchsorted(gram_values, found[1], side="left")
        last = np.searchsorted(gram_values, found[1], side="right")
        reps = last - first
        docs = np.repeat(found[0].astype(np.int64), reps)
        text_index = gram_texts[np.concatenate([np.arange(a, b) for a, b in zip(first, last, strict=True)])]
        hits, hit_counts = np.unique(np.stack([docs, text_index]), axis=1, return_counts=True)
        for (doc, text), count in zip(hits.T, hit_counts, strict=True):
            overlap = float(count) / float(grams_per_text[text])
            if overlap >= min_overlap and (doc not in best or overlap > best[doc].overlap):
                best[int(doc)] = Contamination(int(doc), texts[int(text)], overlap)
    return [best[doc] for doc in sorted(best)]
