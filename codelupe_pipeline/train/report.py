"""The loss curve as a small PNG, for the Dagster UI and the MLflow run."""

from __future__ import annotations

import io
from collections.abc import Sequence


def loss_curve_png(
    train: Sequence[tuple[int, float]],
    validation: Sequence[tuple[int, float]],
    title: str,
    resumed_at: int = 0,
    best_step: int | None = None,
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.2), dpi=90)
    axes = figure.subplots()
    if train:
        axes.plot(*zip(*train, strict=True), label="train", linewidth=1.2)
    if validation:
        axes.plot(*zip(*validation, strict=True), label="validation", marker="o", markersize=3, linewidth=1.2)
    if resumed_at:
        axes.axvline(resumed_at, color="grey", linestyle=":", linewidth=1, label=f"resumed at step {resumed_at}")
    if best_step is not None:
        axes.axvline(best_step, color="green", linestyle="--", linewidth=1, label=f"best (step {best_step})")
    axes.set_xlabel("step")
    axes.set_ylabel("loss per target token")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
