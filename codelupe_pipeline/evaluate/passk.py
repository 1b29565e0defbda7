"""The unbiased pass@k estimator (Chen et al., 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) passes.

    1 - C(n-c, k) / C(n, k), computed as a stable product instead of with huge binomials.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(per_task: Sequence[tuple[int, int]], k: int) -> float | None:
    """Mean pass@k over tasks given (n, c) per task; None when some task has fewer than k samples."""
    if not per_task or any(n < k for n, _ in per_task):
        return None
    return float(np.mean([pass_at_k(n, c, k) for n, c in per_task]))
