"""Plots written to PNG: the tutorial's ``plot_predictions``, loss curves, and diagnostics.

Figures use matplotlib's object API with the Agg canvas: no display, no global pyplot
state, safe in threads and on servers. Each function returns the PNG bytes or writes
them atomically to ``path``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from torchwork.files.atomic import atomic_write


def _figure(figsize: tuple[float, float] = (10, 7)) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any, path: str | os.PathLike[str] | None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = buf.getvalue()
    if path is not None:
        atomic_write(path, data)
    return data


def _np(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def plot_predictions(
    train_data: Any,
    train_labels: Any,
    test_data: Any,
    test_labels: Any,
    predictions: Any = None,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> bytes:
    """The tutorial's plot: training data in blue, testing data in green, predictions in red."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(_np(train_data), _np(train_labels), c="b", s=4, label="Training data")
    ax.scatter(_np(test_data), _np(test_labels), c="g", s=4, label="Testing data")
    if predictions is not None:
        # Predictions were made on the test data.
        ax.scatter(_np(test_data), _np(predictions), c="r", s=4, label="Predictions")
    if title:
        ax.set_title(title)
    ax.legend(prop={"size": 14})
    return _png(fig, path)


def plot_loss_curves(
    epochs: Sequence[float],
    train_loss: Sequence[float],
    test_loss: Sequence[float | None] | None = None,
    path: str | os.PathLike[str] | None = None,
    title: str = "Training and test loss curves",
    test_label: str = "Test loss",
    log_scale: bool = False,
    best_epoch: int | None = None,
) -> bytes:
    """Train (and test or validation) loss against epochs, as the tutorial plots them.

    ``best_epoch`` draws a dashed line where early stopping found the best weights.
    """
    fig = _figure((10, 6))
    ax = fig.add_subplot()
    ax.plot(list(epochs), list(train_loss), label="Train loss")
    if test_loss is not None and any(v is not None for v in test_loss):
        ax.plot(list(epochs), [np.nan if v is None else v for v in test_loss], label=test_label)
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"Best epoch ({best_epoch})")
    ax.set_title(title)
    ax.set_ylabel("Loss")
    ax.set_xlabel("Epochs")
    if log_scale:
        ax.set_yscale("log")
    ax.legend()
    return _png(fig, path)


def plot_pred_vs_actual(
    y_true: Any, y_pred: Any, path: str | os.PathLike[str] | None = None, title: str = "Predicted vs actual"
) -> bytes:
    """Each test row as a point (actual, predicted); the diagonal is a perfect prediction."""
    t, p = _np(y_true).reshape(-1), _np(y_pred).reshape(-1)  # type: ignore[union-attr]
    fig = _figure((7, 5.5))
    ax = fig.add_subplot()
    ax.scatter(t, p, s=8, alpha=0.6, c="tab:blue", label="Rows")
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], c="tab:red", lw=1, label="Perfect prediction")
    ax.set_xlabel("Actual")
    ax.set_ylabel("Predicted")
    ax.set_title(title)
    ax.legend()
    return _png(fig, path)


def plot_residuals(
    y_true: Any, y_pred: Any, path: str | os.PathLike[str] | None = None, title: str = "Residuals"
) -> bytes:
    """Residuals (actual - predicted) against the prediction, and their histogram."""
    t, p = _np(y_true).reshape(-1), _np(y_pred).reshape(-1)  # type: ignore[union-attr]
    r = t - p
    fig = _figure((12, 5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.scatter(p, r, s=8, alpha=0.6, c="tab:blue")
    ax1.axhline(0.0, c="tab:red", lw=1)
    ax1.set_xlabel("Predicted")
    ax1.set_ylabel("Residual (actual - predicted)")
    ax1.set_title(title)
    ax2.hist(r, bins=min(50, max(5, len(r) // 5)), color="tab:blue")
    ax2.set_xlabel("Residual")
    ax2.set_ylabel("Rows")
    ax2.set_title("Residual distribution")
    return _png(fig, path)
