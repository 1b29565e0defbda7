"""Tokens, n-gram hashes and MinHash signatures, and near-duplicate detection through the SQL models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from codelupe_pipeline.curate import shingles
from codelupe_pipeline.curate.minhash import estimated_jaccard, signatures
from codelupe_pipeline.curate.shingles import ngram_hashes, token_hashes, window_hashes
from codelupe_pipeline.curate.sql_models import load_models, run_model
from codelupe_pipeline.settings import CHECKOUT_DIR
from codelupe_pipeline_tests.conftest import RawFile, run_curation_models, write_raw_store
from codelupe_pipeline_tests.test_curation_rules import edit_one_line_in_fifty, synthetic_module


def tokens_of(text: str) -> np.ndarray:
    return token_hashes(pa.array([text])).values


def test_tokens_are_identifier_runs_lowercased() -> None:
    assert len(tokens_of("def add(a, b): return a+b  # café_2")) == 8  # def add a b return a b café_2
    assert np.array_equal(tokens_of("Foo_Bar baz"), tokens_of("foo_bar    BAZ"))
    assert not np.array_equal(tokens_of("foo_bar"), tokens_of("foo bar"))
    assert (
        len(set(tokens_of("a aa aaa aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"))) == 5
    )


def test_a_batch_hashes_each_document_as_if_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Documents are laid end to end in one buffer: no token may run from one into the next, and the work is
    split into cache-sized chunks; neither may change a hash."""
    monkeypatch.setattr(shingles, "_CHUNK_BYTES", 4096)  # the 60 documents then span dozens of chunks
    docs = [synthetic_module(seed) for seed in range(60)] + ["tail", "", None, "head and", "more"]
    batch = token_hashes(pa.chunked_array([pa.array(docs[:30]), pa.array(docs[30:])]))
    assert len(batch.counts) == len(docs)
    assert np.array_equal(token_hashes(pa.array(docs, pa.large_string())).values, batch.values)
    for i, doc in enumerate(docs):
        alone = tokens_of(doc) if doc else np.zeros(0, dtype=np.uint64)
        assert np.array_equal(batch.values[batch.offsets[i] : batch.offsets[i + 1]], alone), i


def test_ngram_windows_and_short_documents() -> None:
    tokens = token_hashes(pa.array(["a b c d e f", "a b", ""]))
    assert list(ngram_hashes(tokens, 5).counts) == [2, 0, 0]
    assert list(ngram_hashes(tokens, 5, short_documents=True).counts) == [2, 1, 0]
    assert ngram_hashes(tokens, 5).values[0] != ngram_hashes(token_hashes(pa.array(["b a c d e f"])), 5).values[0]


def test_chosen_windows_hash_as_every_window_does() -> None:
    tokens = token_hashes(pa.array(["a b c d e f g", "h i", "j k l m"]))
    every = ngram_hashes(tokens, 3)
    starts = np.array([0, 4, 9, 10])  # the first and last window of each document with three tokens or more
    assert window_hashes(tokens.values, starts, 3).tolist() == every.values[[0, 4, 5, 6]].tolist()


def test_signatures_estimate_jaccard_similarity() -> None:
    rng = np.random.default_rng(7)
    vocabulary = [f"w{i}" for i in range(100_000)]
    for size in (40, 400, 4000):
        for target in (0.3, 0.5, 0.7, 0.9):
            shared = round(size * 2 * target / (1 + target))
            words = rng.choice(vocabulary, size=2 * size - shared, replace=False)
            a, b = words[:size], np.concatenate([words[:shared], words[size:]])
            truth = len(set(a) & set(b)) / len(set(a) | set(b))
            sig = signatures(ngram_hashes(token_hashes(pa.array([" ".join(a), " ".join(b)])), 1), 256, seed=1)
            # 256 slots: standard deviation about 0.03; allow four of them.
            assert abs(estimated_jaccard(sig[0], sig[1]) - truth) < 0.13, (size, truth)


def test_signatures_are_deterministic_across_processes() -> None:
    text = synthetic_module(5)
    here = signatures(ngram_hashes(token_hashes(pa.array([text])), 5, short_documents=True), 256, 1)[0]
    code = (
        "import sys, pyarrow as pa\n"
        "from codelupe_pipeline.curate.shingles import ngram_hashes, token_hashes, window_hashes\n"
        "from codelupe_pipeline.curate.minhash import signatures\n"
        "text = sys.stdin.read()\n"
        "print(','.join(map(str, signatures(ngram_hashes(token_hashes(pa.array([text])), 5, True), 256, 1)[0])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=text, capture_output=True, text=True, check=True, cwd=CHECKOUT_DIR
    ).stdout
    assert [int(v) for v in out.strip().split(",")] == here.tolist()
    assert not np.array_equal(here, signatures(ngram_hashes(token_hashes(pa.array([text])), 5, True), 256, 2)[0])


def test_planted_near_duplicates_and_copies_all_found_distinct_files_kept(tmp_path: Path) -> None:
    bases = {f"m{i}.py": synthetic_module(10_000 + i) for i in range(60)}
    files = [RawFile("a", name, text) for name, text in bases.items()]
    files += [RawFile("b", name, edit_one_line_in_fifty(text, seed)) for seed, (name, text) in enumerate(bases.items())]
    files += [RawFile("c", name, text) for name, text in list(bases.items())[:30]]  # exact copies
    files += [RawFile("d", f"other{i}.py", synthetic_module(20_000 + i)) for i in range(60)]
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    write_raw_store(con, files)
    run_curation_models(con, texts=[])
    reasons = dict(con.execute("SELECT drop_reason, count(*) FROM file_decisions GROUP BY ALL").fetchall())
    assert reasons == {None: 120, "near_duplicate": 60, "exact_duplicate": 30}
    kept_per_base = con.execute(
        "SELECT path, count(*) FROM file_decisions WHERE drop_reason IS NULL AND source IN ('a', 'b') GROUP BY 1"
    ).fetchall()
    assert sorted(n for _, n in kept_per_base) == [1] * 60, "one copy of each near-duplicate cluster stays"


def test_clusters_are_connected_components_of_long_chains(tmp_path: Path) -> None:
    """Union-find semantics: a chain a-b, b-c, ... is one cluster even where its ends are not similar."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    chain = [(i, i + 1) for i in range(1, 200)]
    star = [(500, 500 + k) for k in range(1, 20)]
    pairs = [*chain, *star, (1000, 1001)]
    con.execute("CREATE TABLE near_dup_pairs (doc_a BIGINT, doc_b BIGINT, jaccard DOUBLE)")
    con.executemany("INSERT INTO near_dup_pairs VALUES (?, ?, 0.9)", [list(p) for p in reversed(pairs)])
    model = load_models(CHECKOUT_DIR / "dbt_like_sql")["near_dup_clusters"]
    run_model(con, model, {})
    clusters = dict(con.execute("SELECT doc_id, cluster_id FROM near_dup_clusters").fetchall())
    assert len(clusters) == 200 + 20 + 2
    assert {clusters[i] for i in range(1, 201)} == {1}
    assert {clusters[500 + k] for k in range(20)} == {500}
    assert clusters[1001] == 1000


@pytest.mark.parametrize("num_perm", [1, 7, 256])
def test_every_slot_is_filled_for_documents_with_shingles(num_perm: int) -> None:
    sig = signatures(ngram_hashes(token_hashes(pa.array(["one two three four five", "x"])), 5, True), num_perm, 3)
    assert sig.shape == (2, num_perm)
    assert len(set(sig[1])) == 1, "a single shingle fills every slot with its own value"
