"""The unbiased pass@k estimator against values computed by hand from 1 - C(n-c, k) / C(n, k)."""

from __future__ import annotations

from math import comb

import pytest

from codelupe_pipeline.evaluate.passk import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (5, 2, 1, 0.4),  # pass@1 is the fraction correct
        (10, 1, 5, 0.5),  # 1 - C(9,5)/C(10,5) = 1 - 126/252
        (20, 4, 10, 1 - 8008 / 184756),  # 1 - C(16,10)/C(20,10) = 0.95665...
        (200, 10, 10, 1 - comb(190, 10) / comb(200, 10)),
        (10, 3, 10, 1.0),  # fewer wrong samples than k: some draw always contains a correct one
        (20, 0, 10, 0.0),
    ],
)
def test_pass_at_k_matches_the_formula(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12)


def test_hand_computed_small_case() -> None:
    # n=4, c=1, k=2: of the 6 pairs of samples, 3 contain the correct one.
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n=4, c=2, k=2: 1 - C(2,2)/C(4,2) = 1 - 1/6.
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)


def test_mean_over_tasks_and_when_k_is_not_reported() -> None:
    assert mean_pass_at_k([(10, 0), (10, 10), (10, 5)], 1) == pytest.approx(0.5)
    assert mean_pass_at_k([(10, 1), (5, 1)], 10) is None  # a task has fewer than k samples
    assert mean_pass_at_k([], 1) is None


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="at least 10 samples"):
        pass_at_k(5, 1, 10)
