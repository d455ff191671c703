"""Plots written to PNG: the tutorial's ``plot_predictions`` and loss curves, and the diagnostics.

Figures use matplotlib's object API with the Agg canvas: no display, no global pyplot
state, safe in threads and on servers. Each function returns the PNG bytes or writes them
atomically to ``path``. Every figure is ``FIGSIZE`` inches wide, saved at ``DPI``, with the
same font sizes on each text element: the report shows plots at one width, so their text
shows at one size. Regression: predicted against actual, the residuals. Classification: the
confusion matrix, ROC and precision-recall curves, the classes in each split, the decision
regions over one or two features.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from torchwork.files.atomic import atomic_write

# ------------------------------------------------------------------ the style every plot shares
# The report shows a plot as wide as a phone's column (347 CSS px at 390 px, beside a scrollbar): a
# point of text is then 347 / (72 * 4.8) = 1.0 CSS px, so the smallest text here (10 pt) shows at
# 10 px, the title at 11.5. (At 5.6 inches and 8.5 pt, notes showed at 7.3 px.)
FIGSIZE = (4.8, 3.4)  # inches; every plot has this width (some are taller)
DPI = 150
TITLE_SIZE, LABEL_SIZE, TICK_SIZE, LEGEND_SIZE, NOTE_SIZE = 11.5, 10.5, 10.0, 10.0, 10.0

# The tutorial's colours: training data blue, testing data green, predictions red.
TRAIN_COLOUR, VAL_COLOUR, TEST_COLOUR, PRED_COLOUR = "#1f5fbf", "#d98a1a", "#2a9d3c", "#d62728"
SPLIT_COLOURS = {"train": TRAIN_COLOUR, "val": VAL_COLOUR, "test": TEST_COLOUR}
CURVE_COLOURS = ("#1f5fbf", "#d98a1a", "#7b4fb0", "#2a9d3c", "#c2417a", "#6b6b6b")
# Pale region colours, neither blue nor green, so that the data's markers stand out on them.
REGION_COLOURS = ("#f6c9a3", "#d8c6ee", "#f5b5c4", "#f1e29a", "#d9d9d9", "#cdb59c", "#bfe3e6", "#f0c2ee")
CLASS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


MAX_POINTS = 5000  # a scatter draws at most this many rows: more is one blot, and costs memory and time


def point_sample(n: int, limit: int = MAX_POINTS) -> np.ndarray | None:
    """Which of ``n`` rows a scatter draws: None for all of them, else ``limit`` rows drawn at random
    (seeded: the same rows every time), in row order."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))


def sample_note(ax: Any, shown: int, n: int) -> None:
    """Say on the plot that it draws a sample of the rows."""
    ax.annotate(f"{shown:,} of {n:,} rows shown, at random", xy=(0.01, 0.01), xycoords="axes fraction",
                fontsize=NOTE_SIZE, color="#555555", va="bottom", ha="left")  # fmt: skip


def new_figure(figsize: tuple[float, float] = FIGSIZE) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def style_axes(*axes: Any) -> None:
    """The same font sizes on every plot (set on each element: no global rcParams)."""
    for ax in axes:
        ax.title.set_fontsize(TITLE_SIZE)
        ax.xaxis.label.set_fontsize(LABEL_SIZE)
        ax.yaxis.label.set_fontsize(LABEL_SIZE)
        ax.tick_params(labelsize=TICK_SIZE)
        ax.xaxis.get_offset_text().set_fontsize(TICK_SIZE)
        ax.yaxis.get_offset_text().set_fontsize(TICK_SIZE)
        legend = ax.get_legend()
        if legend is not None:
            for text in legend.get_texts():
                text.set_fontsize(LEGEND_SIZE)


def plain(text: Any) -> str:
    """``text`` as matplotlib draws it letter for letter: a pair of ``$`` would start mathtext
    (``$x^$`` fails to parse; ``$\\alpha$`` draws α). Every ``$`` is escaped, so the text shows as
    it is spelled (a ``\\$`` too: matplotlib unescapes exactly once)."""
    return str(text).replace("$", r"\$")


def _plain_texts(fig: Any) -> None:
    """Every text of the figure as plain text (titles, axis labels, legends, notes, bar labels),
    except the tick labels and offsets, which the axes' formatters write at draw time: class
    names on ticks are escaped where they are set (:func:`plain`)."""
    from matplotlib.text import Text

    formatted = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            formatted.add(id(axis.get_offset_text()))
            for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks()):
                formatted.update((id(tick.label1), id(tick.label2)))
    for text in fig.findobj(Text):
        if id(text) not in formatted and "$" in text.get_text():
            text.set_text(plain(text.get_text()))


def png_bytes(fig: Any, path: str | os.PathLike[str] | None) -> bytes:
    _plain_texts(fig)  # names from the data (classes, features) never parse as mathtext
    buf = io.BytesIO()
    # No bbox_inches="tight": every PNG keeps the figure's exact width, so text scales alike on the page.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    data = buf.getvalue()
    if path is not None:
        atomic_write(path, data)
    return data


def as_numpy(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def shorten(name: Any, limit: int = 16) -> str:
    """A class name for a tick label or a legend: long ones cut, so that they leave room for the plot."""
    text = str(name)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def class_labels(class_names: Sequence[Any] | None, n: int) -> list[str]:
    """Class names as plots show them (cut to 16 characters)."""
    if class_names is None:
        return [f"class {k}" for k in range(n)]
    if len(class_names) != n:
        raise ValueError(f"class_names: expected {n} names, got {len(class_names)}")
    return [shorten(c) for c in class_names]


def percent_formatter() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)


# ------------------------------------------------------------------------- the tutorial's plots


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

    ``best_epoch`` draws a dashed line where early stopping found the best weights (0: the weights
    training started from, before epoch 1).
    """
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot(list(epochs), list(train_loss), color=TRAIN_COLOUR, label="Train loss")
    if test_loss is not None and any(v is not None for v in test_loss):
        ax.plot(list(epochs), [np.nan if v is None else v for v in test_loss], color=VAL_COLOUR, label=test_label)
    if best_epoch is not None:
        label = "Kept: the start (training did not beat it)" if best_epoch == 0 else f"Best epoch ({best_epoch})"
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=label)
    ax.set_title(title)
    ax.set_ylabel("Loss")
    ax.set_xlabel("Epochs")
    if log_scale:
        ax.set_yscale("log")
    ax.legend()
    style_axes(ax)
    return png_bytes(fig, path)


# ----------------------------------------------------------------------------- regression plots
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


# ------------------------------------------------------------------------- classification plots
def plot_confusion_matrix(
    matrix: Any,
    class_names: Sequence[Any] | None = None,
    title: str = "Confusion matrix",
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Rows: the actual class, columns: the predicted one; each cell's count, shaded by its share of the row."""
    from matplotlib.colors import Normalize

    cm = np.asarray(matrix, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"matrix: expected a square matrix of counts, got shape {cm.shape}")
    n = cm.shape[0]
    names = class_labels(class_names, n)
    totals = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    fig = new_figure()
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", norm=Normalize(0.0, 1.0), aspect="auto", interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("Share of the actual class", fontsize=LABEL_SIZE)
    bar.ax.tick_params(labelsize=TICK_SIZE)
    bar.ax.yaxis.set_major_formatter(percent_formatter())
    if n <= 20:
        size = NOTE_SIZE if n <= 8 else NOTE_SIZE * 8 / n + 3
        for i in range(n):
            for j in range(n):
                text = f"{int(cm[i, j])}" + (f"\n{share[i, j]:.0%}" if n <= 8 and totals[i, 0] > 0 else "")
                colour = "white" if share[i, j] > 0.55 else "#1d2330"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=size, linespacing=1.1)
    step = max(1, n // 20)
    ticks = list(range(0, n, step))
    ticks_shown = [plain(names[k]) for k in ticks]
    ax.set_xticks(ticks, ticks_shown, rotation=30 if max(map(len, names)) > 6 else 0, ha="right")
    if max(map(len, names)) <= 6:
        for label in ax.get_xticklabels():
            label.set_ha("center")
    ax.set_yticks(ticks, ticks_shown)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("Actual class")
    ax.set_title(title)
    style_axes(ax)
    return png_bytes(fig, path)


def _unit_square(
    fig: Any, ax: Any, xlabel: str, ylabel: str, title: str, legend: str, path: Any, top: float = 1.01
) -> bytes:
    """Finish a plot of rates on [0, 1] x [0, 1] (ROC, precision-recall, reliability): limits with
    a hair of margin, labels, title, legend, style; its PNG bytes."""
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, top))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc=legend)
    style_axes(ax)
    return png_bytes(fig, path)


def plot_roc_curves(
    curves: Mapping[str, tuple[Any, Any, float | None]],
    title: str = "ROC curves",
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """One ROC curve per label: ``curves`` maps a label (``"model"``) to ``(fpr, tpr, auc)``."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="Chance (AUC 0.500)")
    for k, (label, (fpr, tpr, auc)) in enumerate(curves.items()):
        name = label if auc is None else f"{label} (AUC {auc:.3f})"
        ax.plot(as_numpy(fpr), as_numpy(tpr), color=CURVE_COLOURS[k % len(CURVE_COLOURS)], lw=1.8, label=name)
    return _unit_square(fig, ax, "False positive rate", "True positive rate", title, "lower right", path)


def plot_pr_curves(
    curves: Mapping[str, tuple[Any, Any, float | None]],
    title: str = "Precision-recall curves",
    path: str | os.PathLike[str] | None = None,
    chance: float | None = None,
) -> bytes:
    """One precision-recall curve per label: ``curves`` maps a label to ``(recall, precision, average_precision)``.

    ``chance`` (the positive class's share of the rows) draws the precision of guessing.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    if chance is not None:
        ax.axhline(chance, color="grey", lw=1, ls="--", label=f"Chance ({chance:.3f})")
    for k, (label, (recall, precision, ap)) in enumerate(curves.items()):
        name = label if ap is None else f"{label} (AP {ap:.3f})"
        colour = CURVE_COLOURS[k % len(CURVE_COLOURS)]
        ax.plot(as_numpy(recall), as_numpy(precision), color=colour, lw=1.8, drawstyle="steps-post", label=name)
    return _unit_square(fig, ax, "Recall", "Precision", title, "lower left", path, top=1.02)


def plot_reliability(
    bins: Mapping[str, tuple[Any, float]],
    title: str = "Reliability",
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Accuracy against confidence per bin of the top class's probability, one line per label:
    ``bins`` maps a label to ``(calibration_bins(...) (3, B), ece)``; on the diagonal a
    probability means what it says. Empty bins are left out."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="Calibrated")
    for k, (label, (table, ece)) in enumerate(bins.items()):
        rows, confidence, right = np.asarray(table, dtype=np.float64)
        seen = rows > 0
        colour = CURVE_COLOURS[k % len(CURVE_COLOURS)]
        ax.plot(confidence[seen] / rows[seen], right[seen] / rows[seen], color=colour, lw=1.8, marker="o", ms=4,
                label=f"{label} (ECE {ece:.3f})")  # fmt: skip
    xlabel, ylabel = "Mean probability of the predicted class", "Share predicted right"
    return _unit_square(fig, ax, xlabel, ylabel, title, "upper left", path)


def plot_class_balance(
    counts: Mapping[str, Sequence[int]],
    class_names: Sequence[Any] | None = None,
    title: str = "Classes in each split",
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Each class's share of each split's rows, as grouped bars; ``counts`` maps a split to per-class counts."""
    splits = list(counts)
    if not splits:
        raise ValueError("counts: no splits")
    n = len(counts[splits[0]])
    names = class_labels(class_names, n)
    fig = new_figure()
    ax = fig.add_subplot()
    width = 0.8 / len(splits)
    x = np.arange(n)
    for k, split in enumerate(splits):
        c = np.asarray(counts[split], dtype=np.float64)
        if len(c) != n:
            raise ValueError(f"counts[{split!r}]: expected {n} counts, got {len(c)}")
        total = c.sum()
        share = c / total if total > 0 else np.zeros(n)
        colour = SPLIT_COLOURS.get(split, CURVE_COLOURS[k % len(CURVE_COLOURS)])
        bars = ax.bar(x + (k - (len(splits) - 1) / 2) * width, share, width, color=colour,
                      label=f"{split} ({int(total)} rows)")  # fmt: skip
        if n * len(splits) <= 12:
            ax.bar_label(bars, labels=[f"{int(v)}" for v in c], fontsize=NOTE_SIZE, padding=2)
    ax.yaxis.set_major_formatter(percent_formatter())
    ax.set_ylim(0, min(1.0, ax.get_ylim()[1] * 1.12))
    ax.set_xticks(x, [plain(name) for name in names], rotation=30 if n > 6 or max(map(len, names)) > 10 else 0)
    ax.set_ylabel("Share of the split's rows")
    ax.set_title(title)
    ax.legend()
    style_axes(ax)
    return png_bytes(fig, path)


def _class_codes(y: Any, names: list[str]) -> np.ndarray:
    """Class codes 0..n-1 from codes or from the class names themselves."""
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    raw = np.asarray(y).reshape(-1)
    if raw.dtype.kind in "OUS":
        index = {name: k for k, name in enumerate(names)}
        return np.array([index[str(v)] for v in raw], dtype=np.int64)
    return raw.astype(np.int64)


def _predicted_codes(predict_proba_fn: Callable[[np.ndarray], Any], X: np.ndarray, n_classes: int) -> np.ndarray:
    out = predict_proba_fn(X)
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    out = np.asarray(out)
    if out.ndim == 2 and out.shape[1] > 1:
        return np.argmax(out, axis=1)
    out = out.reshape(-1)
    if out.dtype.kind in "iub":
        return out.astype(np.int64)
    if n_classes == 2:  # the probability of class 1
        return (out > 0.5).astype(np.int64)
    return np.rint(out).astype(np.int64)


def plot_decision_regions(
    predict_proba_fn: Callable[[np.ndarray], Any],
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    class_names: Sequence[Any],
    feature_names: Sequence[str],
    title: str = "Decision regions",
    path: str | os.PathLike[str] | None = None,
    resolution: int = 200,
) -> bytes:
    """The class the model predicts over one or two numeric features, shaded, with the data on top.

    ``predict_proba_fn`` maps an array of feature values, shape (n, 1 or 2), to class probabilities
    (n, C) (or class codes (n,)). Training data are blue, testing data green, one marker per class.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    names = [str(c) for c in class_names]
    n_classes = len(names)
    Xtr, Xte = np.asarray(as_numpy(X_train)), np.asarray(as_numpy(X_test))
    Xtr, Xte = Xtr.reshape(len(Xtr), -1), Xte.reshape(len(Xte), -1)
    d = Xtr.shape[1]
    if d not in (1, 2) or Xte.shape[1] != d or len(feature_names) != d:
        raise ValueError(f"plot_decision_regions: needs one or two features, got {d} (and {len(feature_names)} names)")
    ytr, yte = _class_codes(y_train, names), _class_codes(y_test, names)
    both = np.vstack([Xtr, Xte])
    lo, hi = both.min(axis=0), both.max(axis=0)
    pad = np.where(hi > lo, (hi - lo) * 0.06, 1.0)
    lo, hi = lo - pad, hi + pad
    colours = [REGION_COLOURS[k % len(REGION_COLOURS)] for k in range(n_classes)]
    cmap = ListedColormap(colours)
    fig = new_figure((FIGSIZE[0], FIGSIZE[1] + 0.2 + 0.2 * ((n_classes + 2 + 2) // 3)))  # room for the legend below
    ax = fig.add_subplot()
    if d == 2:
        gx, gy = np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
        mx, my = np.meshgrid(gx, gy)
        pred = _predicted_codes(predict_proba_fn, np.column_stack([mx.ravel(), my.ravel()]), n_classes)
        ax.imshow(pred.reshape(mx.shape), cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, origin="lower",
                  extent=(lo[0], hi[0], lo[1], hi[1]), aspect="auto", interpolation="nearest")  # fmt: skip
        xy_tr, xy_te = (Xtr[:, 0], Xtr[:, 1]), (Xte[:, 0], Xte[:, 1])
        ax.set_ylabel(feature_names[1])
    else:
        gx = np.linspace(lo[0], hi[0], resolution * 2)
        pred = _predicted_codes(predict_proba_fn, gx.reshape(-1, 1), n_classes)
        ax.imshow(pred.reshape(1, -1), cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, origin="lower",
                  extent=(lo[0], hi[0], -0.5, n_classes - 0.5), aspect="auto", interpolation="nearest")  # fmt: skip
        # One row per class: training points just above the class's line, testing points just below.
        xy_tr, xy_te = (Xtr[:, 0], ytr + 0.15), (Xte[:, 0], yte - 0.15)
        ax.set_yticks(range(n_classes), [plain(shorten(name)) for name in names])
        ax.set_ylabel("Actual class")
    # At most MAX_POINTS rows of each split are drawn (a seeded sample, said on the plot); the
    # shading and the axes' extent come from every row.
    keep_tr, keep_te = point_sample(len(ytr)), point_sample(len(yte))
    if keep_tr is not None:
        xy_tr, ytr = (xy_tr[0][keep_tr], xy_tr[1][keep_tr]), ytr[keep_tr]
    if keep_te is not None:
        xy_te, yte = (xy_te[0][keep_te], xy_te[1][keep_te]), yte[keep_te]
    if keep_tr is not None or keep_te is not None:
        sample_note(ax, len(ytr) + len(yte), len(Xtr) + len(Xte))
    for k in range(n_classes):
        marker = CLASS_MARKERS[k % len(CLASS_MARKERS)]
        for (x, y), codes, colour in ((xy_tr, ytr, TRAIN_COLOUR), (xy_te, yte, TEST_COLOUR)):
            mask = codes == k
            ax.scatter(x[mask], y[mask], s=22, marker=marker, c=colour, edgecolors="white", linewidths=0.5)
    ax.set_xlim(lo[0], hi[0])
    ax.set_xlabel(feature_names[0])
    ax.set_title(title)
    handles: list[Any] = [
        (Patch(facecolor=colours[k], edgecolor="#8a8f99"),
         Line2D([], [], ls="", marker=CLASS_MARKERS[k % len(CLASS_MARKERS)], color="#1d2330", markersize=5))
        for k in range(n_classes)
    ]  # fmt: skip
    labels = [shorten(name) for name in names]
    handles += [Line2D([], [], ls="", marker="o", color=c, markersize=6) for c in (TRAIN_COLOUR, TEST_COLOUR)]
    labels += ["Training data", "Testing data"]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=LEGEND_SIZE,
               title="Class (shading: predicted, marker: actual)", title_fontsize=LEGEND_SIZE)  # fmt: skip
    style_axes(ax)
    return png_bytes(fig, path)
