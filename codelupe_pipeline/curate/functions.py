"""Python functions the curation SQL models call, registered on a DuckDB connection before a model runs.

Each is an Arrow UDF: DuckDB hands it a whole vector of rows (2,048 at a time) as Arrow arrays and the
function answers with one Arrow array, so the per-row cost is numpy's, not Python's.

- `ngram_hashes(text, n)`: hashes of every window of n lowercased tokens (none for a shorter text).
- `benchmark_index(texts, n)`: indexes a list of benchmark texts' n-grams in this process (once per query, as an
  aggregate's result) and answers a key naming the index;
  `benchmark_ngram_hits(text, key)`: the text's distinct n-grams that the indexed benchmark texts have too.
- `minhash_signature(text, n, num_perm, seed)`: the MinHash signature of the text's token n-grams
  (NULL for a text without a single token).
- `redact_secrets(text, min_entropy)`: `{content, kinds}`, the text with secrets and personal data replaced
  by placeholders and the kind of each finding.
- `ascii_char_counts(text)`: `{alnum, alpha}`, how many ASCII letters and digits, and letters, the text holds.
- `may_contain_secret(text)` (a SQL macro): DuckDB's cheap pre-selection for `redact_secrets`.

Arguments after the text must be constants (thresholds from `vars.yaml`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from duckdb import func, sqltypes

from codelupe_pipeline.curate import minhash, secrets
from codelupe_pipeline.curate.decontamination import BenchmarkIndex
from codelupe_pipeline.curate.shingles import ascii_letter_digit_counts, ngram_hashes, token_hashes
from codelupe_pipeline.curate.sql_models import sql_literal


def _constant(values: pa.Array | pa.ChunkedArray, name: str) -> Any:
    if len(values) == 0:
        return None
    first = values[0].as_py()
    if first is None:
        raise ValueError(f"{name} must not be NULL")
    return first


def _ngram_hashes(texts: pa.ChunkedArray, n: pa.ChunkedArray) -> pa.Array:
    return ngram_hashes(token_hashes(texts), int(_constant(n, "n"))).to_arrow()


# Indexes built by `benchmark_index`, by key: DuckDB hands the key, not the index, to every batch of files.
_BENCHMARK_INDEXES: dict[int, BenchmarkIndex] = {}
_KEPT_INDEXES = 4


def _benchmark_index(texts: pa.ChunkedArray, n: pa.ChunkedArray) -> pa.Array:
    keys: list[int | None] = []
    size = int(_constant(n, "n")) if len(n) else 0
    for row in texts.to_pylist():
        if row is None:
            keys.append(None)
            continue
        strings = sorted(t for t in row if t is not None)
        digest = hashlib.blake2b(repr((size, strings)).encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "little")
        if key not in _BENCHMARK_INDEXES:
            while len(_BENCHMARK_INDEXES) >= _KEPT_INDEXES:  # the oldest goes: one query needs one index
                del _BENCHMARK_INDEXES[next(iter(_BENCHMARK_INDEXES))]
            _BENCHMARK_INDEXES[key] = BenchmarkIndex.build(strings, size)
        keys.append(key)
    return pa.array(keys, pa.uint64())


def _benchmark_ngram_hits(texts: pa.ChunkedArray, keys: pa.ChunkedArray) -> pa.Array:
    key = int(_constant(keys, "key"))
    index = _BENCHMARK_INDEXES.get(key)
    if index is None:
        raise ValueError(f"no benchmark index {key} in this process: pass the key benchmark_index returned")
    return index.hits(texts).to_arrow()


def _minhash_signature(
    texts: pa.ChunkedArray, n: pa.ChunkedArray, num_perm: pa.ChunkedArray, seed: pa.ChunkedArray
) -> pa.Array:
    slots = int(_constant(num_perm, "num_perm"))
    shingles = ngram_hashes(token_hashes(texts), int(_constant(n, "n")), short_documents=True)
    signatures = minhash.signatures(shingles, slots, int(_constant(seed, "seed")))
    offsets = np.arange(0, (len(texts) + 1) * slots, slots, dtype=np.int32)
    empty = pa.array(shingles.counts == 0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(signatures.reshape(-1)), mask=empty)


def _ascii_char_counts(texts: pa.ChunkedArray) -> pa.Array:
    alnum, alpha = ascii_letter_digit_counts(texts)
    return pa.StructArray.from_arrays([pa.array(alnum), pa.array(alpha)], names=["alnum", "alpha"])


def _redact_secrets(texts: pa.ChunkedArray, min_entropy: pa.ChunkedArray) -> pa.Array:
    threshold = float(_constant(min_entropy, "min_entropy"))
    contents: list[str] = []
    kinds: list[list[str]] = []
    for text in texts.to_pylist():  # only the rows `may_contain_secret` selected reach this loop
        redacted, found = secrets.redact(text, threshold)
        contents.append(redacted)
        kinds.append(found)
    return pa.StructArray.from_arrays(
        [pa.array(contents, pa.string()), pa.array(kinds, pa.list_(pa.string()))], names=["content", "kinds"]
    )


# name, function, parameter types, return type, whether it may return NULL for a non-NULL input
_UDFS: tuple[tuple[str, Any, list[Any], Any, bool], ...] = (
    ("ngram_hashes", _ngram_hashes, [sqltypes.VARCHAR, sqltypes.INTEGER], duckdb.list_type(sqltypes.UBIGINT), False),
    (
        "benchmark_index",
        _benchmark_index,
        [duckdb.list_type(sqltypes.VARCHAR), sqltypes.INTEGER],
        sqltypes.UBIGINT,
        False,
    ),
    (
        "benchmark_ngram_hits",
        _benchmark_ngram_hits,
        [sqltypes.VARCHAR, sqltypes.UBIGINT],
        duckdb.list_type(sqltypes.UBIGINT),
        False,
    ),
    (
        "minhash_signature",
        _minhash_signature,
        [sqltypes.VARCHAR, sqltypes.INTEGER, sqltypes.INTEGER, sqltypes.INTEGER],
        duckdb.list_type(sqltypes.UINTEGER),
        True,
    ),
    (
        "ascii_char_counts",
        _ascii_char_counts,
        [sqltypes.VARCHAR],
        duckdb.struct_type({"alnum": sqltypes.BIGINT, "alpha": sqltypes.BIGINT}),
        False,
    ),
    (
        "redact_secrets",
        _redact_secrets,
        [sqltypes.VARCHAR, sqltypes.DOUBLE],
        duckdb.struct_type({"content": sqltypes.VARCHAR, "kinds": duckdb.list_type(sqltypes.VARCHAR)}),
        False,
    ),
)


def register_curation_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Make the curation functions callable from SQL on this connection (idempotent)."""
    con.execute("SELECT 1").fetchall()  # DuckDB refuses to register while an earlier result is half-read
    for name, function, parameters, return_type, returns_null in _UDFS:
        try:
            con.remove_function(name)
        except duckdb.InvalidInputException:
            pass
        nulls = func.FunctionNullHandling.SPECIAL if returns_null else func.FunctionNullHandling.DEFAULT
        con.create_function(name, function, parameters, return_type, type=func.PythonUDFType.ARROW, null_handling=nulls)
    prefilter = sql_literal(secrets.PREFILTER)
    con.execute(f"CREATE OR REPLACE TEMP MACRO may_contain_secret(text) AS regexp_matches(text, {prefilter})")
