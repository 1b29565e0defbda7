"""When has the curated dataset grown enough to train again? Plain logic, tested without Dagster."""

from dataclasses import dataclass


@dataclass(frozen=True)
class SnapshotState:
    version: str
    rows: int
    timestamp: float = 0.0  # when it was materialized (or requested for training)


@dataclass(frozen=True)
class GrowthPolicy:
    min_new_rows: int = 1000  # 0 disables this threshold
    min_growth_fraction: float = 0.0  # 0 disables this threshold

    def describe(self) -> str:
        parts = []
        if self.min_new_rows > 0:
            parts.append(f"{self.min_new_rows:,} rows")
        if self.min_growth_fraction > 0:
            parts.append(f"{self.min_growth_fraction:.0%} of the last trained snapshot")
        return " or ".join(parts) or "any new snapshot"


def growth_decision(
    current: SnapshotState | None, baseline: SnapshotState | None, policy: GrowthPolicy
) -> tuple[bool, str]:
    """(train?, why): train when the snapshot grew past any enabled threshold since `baseline`."""
    if current is None:
        return False, "no curated snapshot has been materialized yet"
    if baseline is not None and current.version == baseline.version:
        return False, f"snapshot {current.version} ({current.rows:,} rows) is already trained or requested"
    base_rows = baseline.rows if baseline else 0
    grew = current.rows - base_rows
    since = f"since snapshot {baseline.version} ({base_rows:,} rows)" if baseline else "with nothing trained yet"
    checks = []
    if policy.min_new_rows > 0:
        checks.append(grew >= policy.min_new_rows)
    if policy.min_growth_fraction > 0:
        checks.append(base_rows > 0 and grew >= policy.min_growth_fraction * base_rows)
    if any(checks) if checks else grew >= 0:
        return (
            True,
            f"snapshot {current.version} grew by {grew:,} rows {since}: threshold {policy.describe()}",
        )
    return False, f"grew by {grew:,} rows {since}, threshold {policy.describe()}"
