"""The promotion gate: does a new model version take the `champion` alias?

Scores are compared only when they come from the same evaluation (same benchmark files, generation
settings and sandbox limits): the evaluation re-scores the champion, or reuses its cached scores, under the
candidate's exact setup. Rates (pass@k, exact match, edit similarity) are higher-is-better and compared in
absolute points; perplexity is lower-is-better and compared relatively.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

LOWER_IS_BETTER_SUFFIXES = ("perplexity",)


def higher_is_better(metric: str) -> bool:
    return not metric.endswith(LOWER_IS_BETTER_SUFFIXES)


@dataclass(frozen=True)
class PromotionPolicy:
    primary_metric: str = "humaneval_pass_at_1"
    margin: float = 0.0  # the primary metric must beat the champion's by more than this
    tolerance: float = 0.02  # any other rate may drop by at most this many points (0.02 = 2 points)
    perplexity_tolerance: float = 0.05  # perplexity may rise by at most this fraction

    def __post_init__(self) -> None:
        if self.margin < 0 or self.tolerance < 0 or self.perplexity_tolerance < 0:
            raise ValueError("margin and tolerances cannot be negative")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    reference: str  # what the candidate was compared with: "champion v3", "the base model" or ""
    regressions: tuple[str, ...] = ()  # metrics worse than the reference beyond tolerance


def regressions(candidate: Mapping[str, float], reference: Mapping[str, float], policy: PromotionPolicy) -> list[str]:
    """Each shared metric on which the candidate is worse than the reference by more than the tolerance."""
    found = []
    for name in sorted(set(candidate) & set(reference)):
        new, old = candidate[name], reference[name]
        if higher_is_better(name):
            if new < old - policy.tolerance:
                found.append(f"{name} {new:.4f} < {old:.4f} - {policy.tolerance:g}")
        elif new > old * (1 + policy.perplexity_tolerance):
            found.append(f"{name} {new:.4g} > {old:.4g} + {policy.perplexity_tolerance:.0%}")
    return found


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    base: Mapping[str, float] | None,
    policy: PromotionPolicy,
    champion_label: str = "the champion",
    champion_error: str | None = None,
) -> Decision:
    """Promote on a real win over the champion. Without a champion, the first version is promoted unless its
    primary metric is worse than the base model's beyond tolerance (other regressions are reported)."""
    key = policy.primary_metric
    if key not in candidate:
        shown = ", ".join(sorted(candidate)) or "none"
        return Decision(False, f"the candidate has no {key} score (its scores: {shown})", "")
    score = candidate[key]
    if champion_error is not None or champion is None:
        worse = tuple(regressions(candidate, base, policy)) if base else ()
        reference = "the base model" if base else ""
        if champion_error is not None:
            reason = f"{champion_label} could not be scored the same way, so it stays champion ({champion_error})"
            return Decision(False, reason, reference, worse)
        if base is None or key not in base:
            return Decision(True, f"first version with a {key} score ({score:.4f}): no champion yet", reference)
        if score < base[key] - policy.tolerance:
            reason = f"no champion yet, but {key} {score:.4f} is below the base model's {base[key]:.4f}"
            return Decision(False, reason, reference, worse)
        # Nothing serves yet: the primary metric decides; other regressions fail the no_regression check.
        others = f"; worse than the base model on {'; '.join(worse)}" if worse else ""
        reason = f"no champion yet; {key} {score:.4f} against the base model's {base[key]:.4f}{others}"
        return Decision(True, reason, reference, worse)
    if key not in champion:
        return Decision(False, f"{champion_label} has no {key} score to compare with", champion_label)
    worse = tuple(regressions(candidate, champion, policy))
    gain = score - champion[key]
    if gain <= policy.margin:
        reason = (
            f"{key} {score:.4f} does not beat {champion_label}'s {champion[key]:.4f} "
            f"by more than the margin {policy.margin:g}"
        )
        return Decision(False, reason, champion_label, worse)
    if worse:
        return Decision(
            False, f"{key} improved by {gain:+.4f} but regressed: " + "; ".join(worse), champion_label, worse
        )
    return Decision(
        True, f"{key} {score:.4f} beats {champion_label}'s {champion[key]:.4f} ({gain:+.4f})", champion_label
    )
