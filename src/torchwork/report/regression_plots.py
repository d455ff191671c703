"""The regression diagnostics: predicted against actual, and the residuals."""

from __future__ import annotations

import os
from typing import Any

from torchwork.report.figures import (
    PRED_COLOUR,
    TRAIN_COLOUR,
    as_numpy,
    new_figure,
    png_bytes,
    point_sample,
    sample_note,
    style_axes,
)


def plot_pred_vs_actual(
    y_true: Any, y_pred: Any, path: str | os.PathLike[str] | None = None, title: str = "Predicted vs actual"
) -> bytes:
    """Each test row as a point (actual, predicted); the diagonal is a perfect prediction.

    At most :data:`~torchwork.report.figures.MAX_POINTS` rows are drawn (a seeded random sample,
    said on the plot); the diagonal spans every row.
    """
    t, p = as_numpy(y_true).reshape(-1), as_numpy(y_pred).reshape(-1)  # type: ignore[union-attr]
    fig = new_figure()
    ax = fig.add_subplot()
    keep = point_sample(len(t))
    ax.scatter(*((t, p) if keep is None else (t[keep], p[keep])), s=8, alpha=0.6, c=TRAIN_COLOUR, label="Rows")
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], c=PRED_COLOUR, lw=1, label="Perfect prediction")
    ax.set_xlabel("Actual")
    ax.set_ylabel("Predicted")
    ax.set_title(title)
    ax.legend(loc="upper left")
    if keep is not None:
        sample_note(ax, len(keep), len(t))
    style_axes(ax)
    return png_bytes(fig, path)


def plot_residuals(
    y_true: Any, y_pred: Any, path: str | os.PathLike[str] | None = None, title: str = "Residuals"
) -> bytes:
    """Residuals (actual - predicted) against the prediction, and their distribution beside them.

    The scatter draws a seeded sample of at most :data:`~torchwork.report.figures.MAX_POINTS`
    rows (said on the plot); the histogram counts every row.
    """
    t, p = as_numpy(y_true).reshape(-1), as_numpy(y_pred).reshape(-1)  # type: ignore[union-attr]
    r = t - p
    fig = new_figure()
    ax1, ax2 = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    keep = point_sample(len(r))
    ax1.scatter(*((p, r) if keep is None else (p[keep], r[keep])), s=8, alpha=0.6, c=TRAIN_COLOUR)
    if keep is not None:
        sample_note(ax1, len(keep), len(r))
    ax1.axhline(0.0, c=PRED_COLOUR, lw=1)
    ax1.set_xlabel("Predicted")
    ax1.set_ylabel("Residual (actual − predicted)")
    ax1.set_title(title)
    ax2.hist(r, bins=min(50, max(5, len(r) // 5)), color=TRAIN_COLOUR, orientation="horizontal")
    ax2.axhline(0.0, c=PRED_COLOUR, lw=1)
    ax2.set_xlabel("Rows")
    ax2.tick_params(labelleft=False)
    style_axes(ax1, ax2)
    return png_bytes(fig, path)
