"""Benchmark scripts: `python -m benchmarks.<name> --help`. Results and how they were made: RESULTS.md."""
