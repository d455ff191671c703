"""Plots written to PNG: the tutorial's ``plot_predictions``, loss curves, and diagnostics.

Figures use matplotlib's object API with the Agg canvas: no display, no global pyplot
state, safe in threads and on servers. Each function returns the PNG bytes or writes
them atomically to ``path``.

Every figure is ``FIGSIZE`` inches wide, saved at ``DPI``, with the font sizes of ``report.figures``
set on each text element: the report shows plots at one width, so their text shows at one size.
This module holds the tutorial's two plots and exports every plot; the diagnostics are in
``report.regression_plots`` and ``report.classification_plots``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from torchwork.report.classification_plots import (
    plot_class_balance,
    plot_confusion_matrix,
    plot_decision_regions,
    plot_pr_curves,
    plot_roc_curves,
)
from torchwork.report.figures import (
    DPI,
    FIGSIZE,
    TRAIN_COLOUR,
    VAL_COLOUR,
    as_numpy,
    new_figure,
    png_bytes,
    point_sample,
    sample_note,
    style_axes,
)
from torchwork.report.regression_plots import plot_pred_vs_actual, plot_residuals

__all__ = [
    "DPI",
    "FIGSIZE",
    "plot_class_balance",
    "plot_confusion_matrix",
    "plot_decision_regions",
    "plot_loss_curves",
    "plot_pr_curves",
    "plot_pred_vs_actual",
    "plot_predictions",
    "plot_residuals",
    "plot_roc_curves",
]


def plot_predictions(
    train_data: Any,
    train_labels: Any,
    test_data: Any,
    test_labels: Any,
    predictions: Any = None,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> bytes:
    """The tutorial's plot: training data in blue, testing data in green, predictions in red.

    At most :data:`~torchwork.report.figures.MAX_POINTS` rows of each split are drawn (a seeded
    sample, said on the plot).
    """
    fig = new_figure()
    ax = fig.add_subplot()
    train = [np.asarray(as_numpy(a)) for a in (train_data, train_labels)]
    test = [np.asarray(as_numpy(a)) for a in (test_data, test_labels, predictions) if a is not None]
    keep_train, keep_test = point_sample(len(train[0])), point_sample(len(test[0]))
    if keep_train is not None or keep_test is not None:
        shown = sum(len(k) if k is not None else len(part[0]) for k, part in ((keep_train, train), (keep_test, test)))
        sample_note(ax, shown, len(train[0]) + len(test[0]))
    train = [a if keep_train is None else a[keep_train] for a in train]
    test = [a if keep_test is None else a[keep_test] for a in test]
    ax.scatter(train[0], train[1], c="b", s=4, label="Training data")
    ax.scatter(test[0], test[1], c="g", s=4, label="Testing data")
    if predictions is not None:
        # Predictions were made on the test data.
        ax.scatter(test[0], test[2], c="r", s=4, label="Predictions")
    if title:
        ax.set_title(title)
    ax.legend(markerscale=2.5)
    style_axes(ax)
    return png_bytes(fig, path)


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
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot(list(epochs), list(train_loss), color=TRAIN_COLOUR, label="Train loss")
    if test_loss is not None and any(v is not None for v in test_loss):
        ax.plot(list(epochs), [np.nan if v is None else v for v in test_loss], color=VAL_COLOUR, label=test_label)
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"Best epoch ({best_epoch})")
    ax.set_title(title)
    ax.set_ylabel("Loss")
    ax.set_xlabel("Epochs")
    if log_scale:
        ax.set_yscale("log")
    ax.legend()
    style_axes(ax)
    return png_bytes(fig, path)
