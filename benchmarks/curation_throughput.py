"""Curation throughput, recall and peak memory: our whole DuckDB curation against datatrove's MinHash dedup.

    python -m benchmarks.curation_throughput              # 1x, 2x, 4x; datatrove at 1x
    python -m benchmarks.curation_throughput --quick      # a couple of thousand files, a minute or two

Input: every `.py` file of this interpreter's standard library and of the site-packages of the environment
running it (sysconfig `stdlib` and `purelib`; the base interpreter's own site-packages inside `stdlib` is
left out), plus, seeded:
- near-duplicates: a copy of 10 % of the files, one line in fifty edited (one identifier replaced);
- exact copies: a verbatim copy of 5 % of the files, in another source and repository.
Scale k (2x, 4x) adds k - 1 copies of that corpus in which every ASCII letter is rotated by the copy's number
(ROT-1, ROT-2, ROT-3): sizes, line shapes and character classes stay exactly those of the original, so
every filter sees the same statistics, but every identifier token differs, so no file of a copy shares a
5-token shingle made of identifiers with its original. Each copy plants its own near-duplicates and exact
copies, with its own random choices.

Recall. A planted pair (original, copy) counts when both files pass our licence and quality rules (a pair
a rule drops never reaches deduplication; the same pairs are used for datatrove). It is caught unless,
after deduplication, the copy survives AND another file with the original's content (the original or an
exact twin of it) survives too. Exact copies must all be caught.

Each measurement runs in a fresh subprocess; its peak RSS is `ru_maxrss` from `wait4` (DuckDB's memory is
in-process, so it is included). Ours runs every SQL model of dbt_like_sql/ in dependency order, with its
declared tests, the benchmark texts, the snapshot export and the snapshot checks: what a materialization of
the curation group does, without Dagster's own overhead. datatrove runs its four MinHash stages with its
default configuration (5-grams, 14 buckets x 8 hashes, 64-bit xxhash) with as many workers as cores.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if __package__ in (None, ""):  # run as `python benchmarks/curation_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, print_table, run_measured

REPO_ROOT = Path(__file__).resolve().parents[1]
NEAR_FRACTION = 0.10
EXACT_FRACTION = 0.05
EDIT_EVERY_LINES = 50
NEAR_DEDUP_MODELS = ("minhash_signatures", "lsh_buckets", "near_dup_pairs", "near_dup_clusters", "near_duplicates")
TARGET_NEAR_SPEEDUP = 10.0
TARGET_CURATION_MB_S = 5.0
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


# --- The input


@dataclass(frozen=True)
class Corpus:
    path: Path  # Parquet: source, repo, path, license, content, sha256, role, original_source, original_path
    docs: int
    bytes: int
    near_copies: int
    exact_copies: int


def _python_files(limit: int | None) -> list[dict[str, Any]]:
    """Every decodable .py file of the stdlib and of this environment's site-packages, in a stable order."""
    paths = sysconfig.get_paths()
    roots = [("stdlib", Path(paths["stdlib"]), "PSF-2.0"), ("site-packages", Path(paths["purelib"]), None)]
    files = []
    for source, root, license_ in roots:
        for file in sorted(root.rglob("*.py")):
            rel = file.relative_to(root)
            if source == "stdlib" and ("site-packages" in rel.parts or "dist-packages" in rel.parts):
                continue  # the base interpreter's installed packages are not the standard library
            try:
                content = file.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if "\x00" in content:
                continue
            top = rel.parts[0].removesuffix(".py")
            files.append(
                {"source": source, "repo": f"{source}/{top}", "path": rel.as_posix(), "license": license_,
                 "content": content}
            )  # fmt: skip
            if limit is not None and len(files) >= limit:
                return files
    return files


def _rotate(text: str, k: int) -> str:
    """Every ASCII letter moved k places along the alphabet (case kept); everything else untouched."""
    if k == 0:
        return text
    lower = _LETTERS[k:] + _LETTERS[:k]
    return text.translate(str.maketrans(_LETTERS + _LETTERS.upper(), lower + lower.upper()))


def _edit_lines(content: str, rng: random.Random) -> str:
    """One line in fifty edited: an identifier replaced by another (a line without one gets a comment)."""
    lines = content.split("\n")
    for index in rng.sample(range(len(lines)), max(1, round(len(lines) / EDIT_EVERY_LINES))):
        words = list(_WORD.finditer(lines[index]))
        replacement = f"{rng.choice(['item', 'value', 'result', 'node', 'entry'])}_{rng.randrange(1000)}"
        if words:
            w = rng.choice(words)
            lines[index] = lines[index][: w.start()] + replacement + lines[index][w.end() :]
        else:
            lines[index] += f"  # {replacement}"
    return "\n".join(lines)


def build_corpus(base: list[dict[str, Any]], scale: int, seed: int, out: Path) -> Corpus:
    """The corpus at `scale` (1, 2, 4 ...) with planted near-duplicates and exact copies, as one Parquet file."""
    rows: list[dict[str, Any]] = []
    near = exact = 0
    for copy in range(scale):
        rng = random.Random(f"{seed}:{copy}")
        tag = f"-rot{copy}" if copy else ""
        originals = [
            {**f, "source": f["source"] + tag, "repo": f["repo"] + tag, "content": _rotate(f["content"], copy),
             "role": "original", "original_source": None, "original_path": None}
            for f in base
        ]  # fmt: skip
        rows += originals
        for role, fraction in (("near_copy", NEAR_FRACTION), ("exact_copy", EXACT_FRACTION)):
            for f in rng.sample(originals, round(fraction * len(originals))):
                content = _edit_lines(f["content"], rng) if role == "near_copy" else f["content"]
                suffix = "-near" if role == "near_copy" else "-vendored"
                rows.append(
                    {**f, "source": f["source"] + suffix, "repo": f["repo"] + suffix, "content": content,
                     "role": role, "original_source": f["source"], "original_path": f["path"]}
                )  # fmt: skip
                near += role == "near_copy"
                exact += role == "exact_copy"
    for row in rows:
        row["sha256"] = hashlib.sha256(row["content"].encode()).hexdigest()
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out)
    return Corpus(out, len(rows), sum(len(r["content"].encode()) for r in rows), near, exact)


# --- Workers: each runs in its own subprocess and prints one JSON object


def _warehouse(workdir: Path) -> Any:
    from codelupe_pipeline.resources import DuckDBWarehouse

    return DuckDBWarehouse(path=str(workdir / "warehouse.duckdb"))


def _load_worker(corpus: Path, workdir: Path) -> dict[str, Any]:
    """The raw store as ingestion leaves it (not timed: ingestion is another stage)."""
    from codelupe_pipeline.ingest import store

    (workdir / "warehouse.duckdb").unlink(missing_ok=True)
    with _warehouse(workdir).connect() as con:
        store.ensure_schema(con)
        con.execute(f"CREATE TEMP VIEW corpus AS SELECT * FROM read_parquet('{corpus}')")
        con.execute("INSERT INTO raw_blobs SELECT sha256, any_value(content) FROM corpus GROUP BY sha256")
        con.execute(
            """
            INSERT INTO raw_files (source, repo, path, revision, sha256, language, size_bytes, line_count, license,
                                   stars, forks, fingerprint, status, ingested_at)
            SELECT source, repo, path, 'r1', sha256, 'python', strlen(content),
                   len(string_split(content, chr(10))) - ends_with(content, chr(10))::INT, license,
                   NULL, NULL, 'f', 'current', now()
            FROM corpus
            """
        )  # fmt: skip
        rows = con.execute("SELECT count(*) FROM raw_files").fetchone()
    return {"rows": rows[0] if rows else 0}


def _ours_worker(workdir: Path) -> dict[str, Any]:
    """Every curation step on the loaded raw store, timed one by one."""
    from codelupe_pipeline.assets.curation import SOURCE_TABLES
    from codelupe_pipeline.curate import snapshot_checks
    from codelupe_pipeline.curate.decontamination import evaluation_benchmark_texts, write_benchmark_texts
    from codelupe_pipeline.curate.functions import register_curation_functions
    from codelupe_pipeline.curate.report import read_report
    from codelupe_pipeline.curate.snapshot import export_snapshot
    from codelupe_pipeline.curate.sql_models import load_models, load_vars, run_model, run_test

    sql_dir = REPO_ROOT / "dbt_like_sql"
    variables = load_vars(sql_dir)
    seconds: dict[str, float] = {}
    snapshots = workdir / "snapshots"
    shutil.rmtree(snapshots, ignore_errors=True)
    with _warehouse(workdir).connect() as con:
        register_curation_functions(con)
        start = time.perf_counter()
        texts = evaluation_benchmark_texts()
        write_benchmark_texts(con, texts)
        seconds["benchmark_texts"] = time.perf_counter() - start
        for model in load_models(sql_dir, known_sources=set(SOURCE_TABLES)).values():
            start = time.perf_counter()
            run_model(con, model, variables)
            for test in model.tests:
                run_test(con, model, test)
            seconds[model.name] = time.perf_counter() - start
        start = time.perf_counter()
        info = export_snapshot(con, snapshots, "curated_files")
        read_report(con)
        seconds["curated_snapshot"] = time.perf_counter() - start
        start = time.perf_counter()
        snapshot_checks.unredacted_secrets(info.data_path, float(variables["secret_min_entropy"]))
        snapshot_checks.contaminated_rows(
            info.data_path, texts, int(variables["decontamination_ngram"]),
            float(variables["decontamination_min_overlap"]),
        )  # fmt: skip
        snapshot_checks.language_bytes(info.data_path)
        seconds["snapshot_checks"] = time.perf_counter() - start

        def one(sql: str) -> Any:
            row = con.execute(sql).fetchone()
            return row[0] if row else None

        counts = {
            "raw_docs": one("SELECT count(*) FROM raw_files WHERE status = 'current'"),
            "raw_bytes": one("SELECT sum(size_bytes) FROM raw_files WHERE status = 'current'"),
            "deduped_docs": one("SELECT count(*) FROM deduped_files"),
            "deduped_bytes": one("SELECT sum(size_bytes) FROM deduped_files"),
            "curated_docs": info.row_count,
        }
        con.execute(
            f"""
            COPY (
                SELECT f.source, f.path, f.sha256 AS raw_sha256, v.drop_reason IS NULL AS passes_rules,
                       coalesce(d.drop_reason, '') NOT IN ('exact_duplicate', 'near_duplicate') AS survives_dedup
                FROM raw_files AS f
                JOIN file_verdicts AS v USING (source, path)
                JOIN file_decisions AS d USING (source, path)
                WHERE f.status = 'current'
            ) TO '{workdir / "ours_decisions.parquet"}' (FORMAT parquet)
            """
        )  # fmt: skip
    return {"seconds": seconds, **counts}


def _xxhash64_str(text: str) -> int:
    import xxhash

    return int(xxhash.xxh64_intdigest(text.encode()))


def _datatrove_worker(corpus: Path, workdir: Path, workers: int) -> dict[str, Any]:
    """datatrove's MinHash deduplication, its four stages timed one by one (writing its JSONL input is not)."""
    import datatrove.utils.hashes.xxhash as datatrove_xxhash
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    # datatrove 0.10 hands str to xxhash, which xxhash 4 refuses; xxhash 3 encoded it to UTF-8 itself.
    datatrove_xxhash.xxhash64 = _xxhash64_str

    root = workdir / "datatrove"
    shutil.rmtree(root, ignore_errors=True)
    (root / "input").mkdir(parents=True)
    table = pq.read_table(corpus, columns=["source", "path", "content"])
    keys = [f"{s}:{p}" for s, p in zip(table["source"].to_pylist(), table["path"].to_pylist(), strict=True)]
    contents = table["content"].to_pylist()
    del table
    shards = [list(range(i, len(keys), workers)) for i in range(workers)]
    for rank, rows in enumerate(shards):
        with open(root / "input" / f"{rank:05d}.jsonl", "w") as out:
            for i in rows:
                out.write(json.dumps({"id": keys[i], "text": contents[i]}) + "\n")
    del contents

    config = MinhashConfig()
    common = {"workers": workers, "start_method": "fork"}
    stages = {
        "signatures": LocalPipelineExecutor(
            [JsonlReader(str(root / "input")), MinhashDedupSignature(str(root / "sigs"), config=config)],
            tasks=workers, logging_dir=str(root / "logs/1"), **common,
        ),
        "buckets": LocalPipelineExecutor(
            [MinhashDedupBuckets(str(root / "sigs"), str(root / "buckets"), config=config)],
            tasks=config.num_buckets, logging_dir=str(root / "logs/2"), **common,
        ),
        "cluster": LocalPipelineExecutor(
            [MinhashDedupCluster(str(root / "buckets"), str(root / "remove"), config=config)],
            tasks=1, logging_dir=str(root / "logs/3"), **common,
        ),
        "filter": LocalPipelineExecutor(
            [
                JsonlReader(str(root / "input")),
                MinhashDedupFilter(str(root / "remove"), exclusion_writer=JsonlWriter(str(root / "removed"))),
            ],
            tasks=workers, logging_dir=str(root / "logs/4"), **common,
        ),
    }  # fmt: skip
    seconds = {}
    for name, executor in stages.items():
        start = time.perf_counter()
        executor.run()
        seconds[name] = time.perf_counter() - start
    # The removed documents, by id (the reader skips empty documents, so positions would not do).
    removed = []
    for file in sorted((root / "removed").glob("*.jsonl.gz")):
        with gzip.open(file, "rt") as lines:
            removed += [json.loads(line)["id"] for line in lines]
    return {"seconds": seconds, "docs": len(keys), "removed": removed}


# --- Recall


def recall(corpus: Path, passes_rules: dict[str, bool], survives: set[str]) -> dict[str, Any]:
    """Per kind of planted pair (both files passing our rules): the share where not both the copy and the
    original's content survive deduplication."""
    table = pq.read_table(corpus, columns=["source", "path", "sha256", "role", "original_source", "original_path"])
    sha = {f"{s}:{p}": h for s, p, h in zip(*(table[c].to_pylist() for c in ("source", "path", "sha256")), strict=True)}
    surviving = collections.Counter(sha[k] for k in survives)
    out: dict[str, Any] = {}
    for role in ("near_copy", "exact_copy"):
        caught = total = 0
        for row in table.filter(pc.equal(table["role"], role)).to_pylist():
            copy, original = f"{row['source']}:{row['path']}", f"{row['original_source']}:{row['original_path']}"
            if not (passes_rules[copy] and passes_rules[original]):
                continue
            total += 1
            # Files other than the copy itself that still hold the original's content.
            others = surviving[sha[original]] - (copy in survives and sha[copy] == sha[original])
            caught += not (copy in survives and others > 0)
        out[role] = caught / total if total else float("nan")
        out[f"{role}_pairs"] = total
    return out


# --- The tools, each in a fresh measured subprocess


def _worker_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.curation_throughput", "--worker", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def run_ours(corpus: Corpus, workdir: Path) -> dict[str, Any]:
    run_measured(_worker_cmd("load", str(corpus.path), str(workdir)), env=_env(), cwd=REPO_ROOT)
    stdout, _, peak = run_measured(_worker_cmd("ours", str(corpus.path), str(workdir)), env=_env(), cwd=REPO_ROOT)
    result = json.loads(stdout.strip().splitlines()[-1])
    decisions = pq.read_table(workdir / "ours_decisions.parquet").to_pylist()
    passes = {f"{d['source']}:{d['path']}": bool(d["passes_rules"]) for d in decisions}
    survives = {f"{d['source']}:{d['path']}" for d in decisions if d["survives_dedup"]}
    return {**result, "peak_mb": peak, "recall": recall(corpus.path, passes, survives), "passes_rules": passes}


def run_datatrove(corpus: Corpus, workdir: Path, workers: int, passes_rules: dict[str, bool]) -> dict[str, Any]:
    cmd = _worker_cmd("datatrove", str(corpus.path), str(workdir), "--workers", str(workers))
    stdout, _, peak = run_measured(cmd, env=_env(), cwd=REPO_ROOT)
    result = json.loads(stdout.strip().splitlines()[-1])
    survives = set(passes_rules) - set(result.pop("removed"))
    return {**result, "peak_mb": peak, "recall": recall(corpus.path, passes_rules, survives)}


# --- Report


def _row(stage: str, tool: str, docs: int, megabytes: float, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "stage": stage, "tool": tool, "docs": docs, "MB": megabytes, "seconds": seconds,
        "docs/s": docs / seconds, "MB/s": megabytes / seconds, **extra,
    }  # fmt: skip


def _pct(x: float) -> str:
    return "" if x != x else f"{100 * x:.1f} %"


def report(scales: dict[int, tuple[Corpus, dict[str, Any]]], datatrove: dict[int, dict[str, Any]]) -> list[str]:
    """Print the table and the per-model breakdown; return the target verdicts (also printed)."""
    rows: list[dict[str, Any]] = []
    for scale, (corpus, ours) in scales.items():
        s, r = ours["seconds"], ours["recall"]
        near_s = sum(s[m] for m in NEAR_DEDUP_MODELS)
        dt = datatrove.get(scale)
        dt_sig = dt["docs"] / dt["seconds"]["signatures"] if dt else None
        dt_all = dt["docs"] / sum(dt["seconds"].values()) if dt else None
        common = {"peak RSS MB": ours["peak_mb"]}
        mb = ours["raw_bytes"] / 1e6
        rows.append(
            _row(f"{scale}x whole curation", "ours", ours["raw_docs"], mb, sum(s.values()),
                 **{"recall near": _pct(r["near_copy"]), "recall exact": _pct(r["exact_copy"])}, **common)
        )  # fmt: skip
        dedup_mb = ours["deduped_bytes"] / 1e6
        near = _row(f"{scale}x near-dedup (5 models)", "ours", ours["deduped_docs"], dedup_mb, near_s)
        sig = _row(f"{scale}x MinHash signatures", "ours", ours["deduped_docs"], dedup_mb, s["minhash_signatures"])
        if dt:
            all_x, sig_x = near["docs/s"] / dt_all, near["docs/s"] / dt_sig
            near["ours/datatrove docs/s"] = f"{all_x:.1f}x all stages, {sig_x:.1f}x signatures"
            sig["ours/datatrove docs/s"] = f"{sig['docs/s'] / dt_sig:.1f}x"
        rows += [near, sig]
        if dt:
            dmb = corpus.bytes / 1e6
            rows.append(
                _row(f"{scale}x MinHash dedup (4 stages)", "datatrove", dt["docs"], dmb, sum(dt["seconds"].values()),
                     **{"recall near": _pct(dt["recall"]["near_copy"]),
                        "recall exact": _pct(dt["recall"]["exact_copy"]), "peak RSS MB": dt["peak_mb"]})
            )  # fmt: skip
            rows.append(_row(f"{scale}x MinHash signatures", "datatrove", dt["docs"], dmb, dt["seconds"]["signatures"]))
    print_table(rows)
    print("\nSeconds per curation step (model + its declared tests):\n")
    steps = list(next(iter(scales.values()))[1]["seconds"])
    print_table([{"step": m, **{f"{k}x": o["seconds"][m] for k, (_, o) in scales.items()}} for m in steps])
    pairs = {k: o["recall"] for k, (_, o) in scales.items()}
    print("\nPlanted pairs counted (both files pass our rules): " + ", ".join(
        f"{k}x {p['near_copy_pairs']:,} near / {p['exact_copy_pairs']:,} exact" for k, p in pairs.items()))  # fmt: skip

    verdicts = []
    for scale, dt in datatrove.items():
        ours = scales[scale][1]
        near_docs_s = ours["deduped_docs"] / sum(ours["seconds"][m] for m in NEAR_DEDUP_MODELS)
        speedup = near_docs_s / (dt["docs"] / dt["seconds"]["signatures"])
        verdicts.append(
            f"{scale}x near-dedup >= {TARGET_NEAR_SPEEDUP:.0f}x datatrove's signature stage docs/s: {speedup:.1f}x "
            f"-> {'MET' if speedup >= TARGET_NEAR_SPEEDUP else 'MISSED'}"
        )
        ours_r, dt_r = ours["recall"]["near_copy"], dt["recall"]["near_copy"]
        verdicts.append(
            f"{scale}x near-dup recall >= datatrove's: {_pct(ours_r)} vs {_pct(dt_r)} "
            f"-> {'MET' if ours_r >= dt_r else 'MISSED'}"
        )
    for scale, (_, ours) in scales.items():
        exact = ours["recall"]["exact_copy"]
        verdicts.append(f"{scale}x exact copies caught: {_pct(exact)} -> {'MET' if exact == 1.0 else 'MISSED'}")
        mb_s = ours["raw_bytes"] / 1e6 / sum(ours["seconds"].values())
        verdicts.append(
            f"{scale}x whole curation >= {TARGET_CURATION_MB_S:.0f} MB/s: {mb_s:.2f} MB/s "
            f"-> {'MET' if mb_s >= TARGET_CURATION_MB_S else 'MISSED'}"
        )
    ordered = sorted(scales)
    for small, big in itertools.pairwise(ordered):
        (c1, o1), (c2, o2) = scales[small], scales[big]
        growth, size = o2["peak_mb"] / o1["peak_mb"], c2.bytes / c1.bytes
        verdicts.append(
            f"peak RSS {small}x -> {big}x grows {growth:.2f}x for {size:.2f}x the bytes "
            # Allocator and buffer-pool granularity make a few percent noise: linear means within 5 % of the bytes.
            f"-> {'MET' if growth <= size * 1.05 else 'MISSED'} (no faster than linear, within 5 %)"
        )
    print("\nTargets:")
    for v in verdicts:
        print(f"- {v}")
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Curation throughput, dedup recall and peak memory: ours (DuckDB) vs datatrove's MinHash.",
    )
    parser.add_argument("--scales", default="1,2,4", help="corpus multiples to run, comma-separated (default 1,2,4)")
    parser.add_argument("--datatrove-scales", default="1", help="scales datatrove also runs at (default 1; '' = none)")
    parser.add_argument("--quick", action="store_true", help="a small run: the first 2,000 files, scales 1,2")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N files of the input")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="datatrove workers")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/codelupe-bench-curation"))
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, corpus_path, workdir = args.worker[0], Path(args.worker[1]), Path(args.worker[2])
        if kind == "load":
            result = _load_worker(corpus_path, workdir)
        elif kind == "ours":
            result = _ours_worker(workdir)
        else:
            result = _datatrove_worker(corpus_path, workdir, args.workers)
        print(json.dumps(result))
        return 0

    if args.quick:
        args.limit = args.limit or 2000
        args.scales = "1,2" if args.scales == "1,2,4" else args.scales
    scales = [int(s) for s in args.scales.split(",") if s]
    dt_scales = {int(s) for s in args.datatrove_scales.split(",") if s} & set(scales)
    print(f"Machine: {machine()}")
    print(f"Command: {' '.join([Path(sys.executable).name, '-m', 'benchmarks.curation_throughput', *sys.argv[1:]])}\n")
    base = _python_files(args.limit)
    results: dict[int, tuple[Corpus, dict[str, Any]]] = {}
    datatrove: dict[int, dict[str, Any]] = {}
    for scale in scales:
        workdir = args.workdir / f"{scale}x"
        corpus = build_corpus(base, scale, args.seed, workdir / "corpus.parquet")
        print(
            f"{scale}x: {corpus.docs:,} files, {corpus.bytes / 1e6:,.1f} MB "
            f"({corpus.near_copies:,} near-duplicates and {corpus.exact_copies:,} exact copies planted); "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        ours = run_ours(corpus, workdir)
        results[scale] = (corpus, ours)
        print(f"  ours: {sum(ours['seconds'].values()):.1f} s, peak {ours['peak_mb']:,.0f} MB", flush=True)
        if scale in dt_scales:
            datatrove[scale] = run_datatrove(corpus, workdir, args.workers, ours["passes_rules"])
            print(f"  datatrove: {sum(datatrove[scale]['seconds'].values()):.1f} s", flush=True)
    print(f"\nLoad average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    report(results, datatrove)
    return 0


if __name__ == "__main__":
    sys.exit(main())
