"""The promotion gate: does a new model version take the `champion` alias?"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionPolicy:
    primary_metric: str = "pass@1"
    margin: float = 0.0  # the candidate must beat the champion's primary metric by more than this
    tolerance: float = 0.02  # other shared metrics may not drop by more than this (higher is better)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(candidate: Mapping[str, float], champion: Mapping[str, float] | None, policy: PromotionPolicy) -> Decision:
    """Promote on a real win: primary metric above the champion's by the margin, no other metric regressed."""
    key = policy.primary_metric
    if key not in candidate:
        return Decision(False, f"the candidate has no {key} score")
    if champion is None:
        return Decision(True, f"first version with a {key} score ({candidate[key]:.3f}): no champion yet")
    if key not in champion:
        return Decision(True, f"the champion has no {key} score; the candidate has {candidate[key]:.3f}")
    gain = candidate[key] - champion[key]
    if gain <= policy.margin:
        return Decision(
            False,
            f"{key} {candidate[key]:.3f} does not beat the champion's {champion[key]:.3f} "
            f"by more than the margin {policy.margin:.3f}",
        )
    regressions = [
        f"{name} {candidate[name]:.3f} < champion {champion[name]:.3f} - tolerance {policy.tolerance:.3f}"
        for name in sorted(set(candidate) & set(champion) - {key})
        if candidate[name] < champion[name] - policy.tolerance
    ]
    if regressions:
        return Decision(False, f"{key} improved by {gain:+.3f} but regressed: " + "; ".join(regressions))
    return Decision(True, f"{key} {candidate[key]:.3f} beats the champion's {champion[key]:.3f} ({gain:+.3f})")
