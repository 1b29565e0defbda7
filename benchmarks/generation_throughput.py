"""Batched generation against one prompt at a time, same model, same prompts, same greedy settings.

The evaluation generates HumanEval completions batched across tasks (longest prompts first, left padding,
each batch stopping once every member hit a stop sequence). The baseline is the same backend with a batch of
one: what a harness that loops over prompts does. On a CPU the model is the tiny profile (random weights, a
tokenizer trained on the standard library): random weights rarely emit a stop sequence, so nearly every
completion runs to `--max-new-tokens`, the worst case for both. On a GPU, pass `--model` a real model directory.

    python -m benchmarks.generation_throughput [--tasks 64] [--max-new-tokens 64] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import machine
from codelupe_pipeline.evaluate.benchmarks import humaneval_path
from codelupe_pipeline.evaluate.generation import GenerationParams, Request, TransformersBackend
from codelupe_pipeline.evaluate.languages import DEFAULT_STOPS
from codelupe_pipeline.train.base_model import build_tiny_model
from codelupe_pipeline.train.profiles import resolve_profile


def tiny_model(out_dir: Path) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [p.read_text(errors="replace") for p in sorted(stdlib.glob("*.py"))[:300]]
    return build_tiny_model(resolve_profile("tiny"), texts, out_dir)


def humaneval_requests(limit: int) -> list[Request]:
    with gzip.open(humaneval_path(), "rt") as fh:
        rows = [json.loads(line) for line in fh][:limit]
    return [Request(row["prompt"], tuple(DEFAULT_STOPS["python"])) for row in rows]


def timed(backend: TransformersBackend, requests: list[Request], params: GenerationParams) -> tuple[float, list[str]]:
    started = time.perf_counter()
    out = dict(backend.generate(requests, params, None))
    return time.perf_counter() - started, [out[i] for i in range(len(requests))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=64, help="HumanEval prompts (default 64)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", help="a model directory (default: the tiny profile, built here)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(tiny_model(Path(tmp) / "tiny"))
        backend = TransformersBackend(model, {}, args.device)
        requests = humaneval_requests(args.tasks)
        timed(backend, requests[:2], GenerationParams(max_new_tokens=4, batch_size=2))  # warm-up
        rows = []
        for label, batch in (("one prompt at a time (baseline)", 1), (f"batched x{args.batch_size}", args.batch_size)):
            params = GenerationParams(max_new_tokens=args.max_new_tokens, batch_size=batch)
            seconds, completions = timed(backend, requests, params)
            tokens = sum(len(backend.tokenizer(c, add_special_tokens=False).input_ids) for c in completions)
            rows.append((label, seconds, tokens, completions))
        backend.close()

    base_seconds, base_completions = rows[0][1], rows[0][3]
    same = sum(a == b for a, b in zip(base_completions, rows[1][3], strict=True))
    print(
        f"\nGeneration, {args.tasks} HumanEval prompts, greedy, max {args.max_new_tokens} new tokens, "
        f"{args.device}, torch threads {torch.get_num_threads()}\n{machine()}\n"
    )
    print("| mode | seconds | prompts/s | new tokens/s | speed-up vs baseline |")
    print("|---|---|---|---|---|")
    for label, seconds, tokens, _ in rows:
        print(
            f"| {label} | {seconds:.1f} | {args.tasks / seconds:.2f} | {tokens / seconds:.0f} | "
            f"{base_seconds / seconds:.2f}x |"
        )
    print(f"\nidentical greedy completions, batched vs one at a time: {same}/{args.tasks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
