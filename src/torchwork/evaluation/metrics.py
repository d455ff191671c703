"""Metrics of predictions against targets, computed in float64."""

from __future__ import annotations

from typing import Any

import numpy as np

from torchwork.core.errors import InputError
from torchwork.evaluation.calibration import calibration_bins, expected_calibration_error

TREES = "gradient_boosted_trees"  # the gradient-boosted trees baseline's key in metrics.json and run.json


def as_2d(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1)


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """MAE, MSE, RMSE and R² (averaged over target columns, as scikit-learn's defaults do).

    R² is ``1 - SS_res / SS_tot``; a constant target gives R² of 1.0 for a perfect fit and
    0.0 otherwise, as in scikit-learn. The sums of squares are taken of values divided by the
    column's largest deviation or error (R² does not change), so that targets near float64's
    limits (1e-300: squares that become 0; 1e300: squares that overflow) give the R² of their
    numbers, never 1 for a constant prediction; the RMSE is computed the same way. The MSE is
    what float64 holds (0 or infinite there).
    """
    t, p = as_2d(y_true), as_2d(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"targets have shape {t.shape} but predictions {p.shape}")
    with np.errstate(over="ignore", under="ignore"):
        err = p - t
        mse = float(np.mean(err**2))
        center = t - t.mean(axis=0)
        scale = np.maximum(np.abs(center).max(axis=0, initial=0.0), np.abs(err).max(axis=0, initial=0.0))
        scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
        ss_res = np.sum((err / scale) ** 2, axis=0)
        ss_tot = np.sum((center / scale) ** 2, axis=0)
        rmse = float(np.sqrt(mse))
        if len(err) and not (0 < mse < np.inf) and np.any(err != 0):  # squares under- or overflowed
            largest = float(np.abs(err).max())
            rmse = largest * float(np.sqrt(np.mean((err / largest) ** 2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        r2_cols = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)
    r2_cols = np.where((ss_tot == 0) & (ss_res == 0), 1.0, r2_cols)
    return {
        "mae": float(np.mean(np.abs(err))),
        "mse": mse,
        "rmse": rmse,
        "r2": float(np.mean(r2_cols)),
    }


def _as_array(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def as_codes(y: Any, n_classes: int, name: str = "y_true") -> np.ndarray:
    """Class codes 0..n_classes-1 as a 1-D int64 array; integer-valued floats and booleans are accepted."""
    raw = _as_array(y)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1:
        raise InputError(f"{name}: expected class codes of shape (n,), got shape {raw.shape}")
    if raw.dtype == bool:
        raw = raw.astype(np.int64)
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise InputError(f"{name}: expected integer class codes, got dtype {raw.dtype}")
    if np.issubdtype(raw.dtype, np.floating) and not np.all(np.isfinite(raw) & (raw == np.round(raw))):
        raise InputError(f"{name}: expected integer class codes, got non-integer values")
    codes = raw.astype(np.int64)
    if len(codes) and (codes.min() < 0 or codes.max() >= n_classes):
        raise InputError(f"{name}: class codes must lie in 0..{n_classes - 1}, got {codes.min()}..{codes.max()}")
    return codes


def _as_proba(proba: Any) -> np.ndarray:
    """Class probabilities (n, C) as float64, checked: finite, in [0, 1], rows summing to 1 (within 1e-4)."""
    p = _as_array(proba).astype(np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputError(f"proba: expected class probabilities of shape (n, C) with C >= 2, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise InputError("proba: has NaN or infinite values")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise InputError(f"proba: probabilities must lie in [0, 1], got {p.min()}..{p.max()}")
    if not np.allclose(p.sum(axis=1), 1.0, rtol=0.0, atol=1e-4):
        raise InputError("proba: rows must sum to 1 (class probabilities, e.g. a softmax)")
    return p


def _binary_inputs(y_binary: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    y = as_codes(y_binary, 2, "y_binary")
    s = _as_array(score).astype(np.float64).reshape(-1)
    if len(s) != len(y):
        raise InputError(f"score: has {len(s)} values but y_binary {len(y)}")
    if len(y) == 0:
        raise InputError("y_binary: no rows")
    if not np.all(np.isfinite(s)):
        raise InputError("score: has NaN or infinite values")
    return y, s


def _clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positives at each distinct score, highest first (``confusion_matrix_at_thresholds``)."""
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order].astype(np.float64)
    idx = np.r_[np.flatnonzero(np.diff(s)), len(y) - 1]
    tps = np.cumsum(y)[idx]
    fps = 1 + idx.astype(np.float64) - tps
    return fps, tps, s[idx]


def roc_curve(
    y_binary: Any, score: Any, *, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of scores against 0/1 labels, as ``sklearn.metrics.roc_curve``.

    ``thresholds[0]`` is ``inf`` (the curve starts at (0, 0)); collinear points are dropped unless
    ``drop_intermediate`` is False. With no negatives (positives) ``fpr`` (``tpr``) is all NaN, as in
    scikit-learn (which also warns; this does not).
    """
    fps, tps, thr = _clf_curve(*_binary_inputs(y_binary, score))
    if drop_intermediate and len(fps) > 2:
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    tps, fps, thr = np.r_[0.0, tps], np.r_[0.0, fps], np.r_[np.inf, thr]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thr


def precision_recall_curve(
    y_binary: Any, score: Any, *, drop_intermediate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)``, as ``sklearn.metrics.precision_recall_curve``.

    Recall decreases; the last point is (recall 0, precision 1) and has no threshold. With no
    positives, recall is 1 everywhere, as in scikit-learn.
    """
    fps, tps, thr = _clf_curve(*_binary_inputs(y_binary, score))
    if drop_intermediate and len(fps) > 2:
        keep = np.r_[True, np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])), True]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    precision = tps / (tps + fps)  # every threshold has at least one row above it
    recall = tps / tps[-1] if tps[-1] != 0 else np.ones_like(tps)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1].copy()


def _binary_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve of 0/1 labels holding both values (trapezoids: a tie counts one half)."""
    fpr, tpr, _ = roc_curve(y, s)
    return float((np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0).sum())  # np.trapezoid, which NumPy 1.26 lacks


def classification_metrics(y_true: Any, proba: Any) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, log loss, ROC AUC, the confusion matrix and per-class scores.

    ``y_true`` are class codes 0..C-1, shape (n,); ``proba`` class probabilities, shape (n, C), each
    row summing to 1 (within 1e-4; anything else is refused, not renormalized). The
    predicted class is the argmax (ties to the lowest code). Every value matches scikit-learn's
    (float64 inputs) and is a plain float or int:

    - ``balanced_accuracy``: mean recall over the classes present in ``y_true`` (``balanced_accuracy_score``).
    - ``f1_macro``, ``per_class``: over all C classes, 0 where undefined
      (``f1_score(labels=range(C), average="macro", zero_division=0)``).
    - ``log_loss``: mean of ``-log p[true class]`` with p clipped to [eps, 1 - eps], eps the float64
      machine epsilon, not renormalized (``log_loss(labels=range(C))`` in scikit-learn 1.9).
    - ``roc_auc``: binary, the AUC of class 1's probability; multiclass, the mean one-vs-rest AUC
      over the classes present in ``y_true`` (``roc_auc_score(multi_class="ovr", average="macro")``
      when all C are present; scikit-learn returns NaN when one is absent, this averages the
      defined ones). None when ``y_true`` holds a single class.
    - ``ece``: the expected calibration error of the top class's probability, 15 equal-width bins
      (:mod:`~torchwork.evaluation.calibration`; scikit-learn has no such function).
    """
    p = _as_proba(proba)
    n, n_classes = p.shape
    y = as_codes(y_true, n_classes)
    if len(y) != n:
        raise InputError(f"y_true has {len(y)} rows but proba {n}")
    if n == 0:
        raise InputError("y_true: no rows")
    pred = np.argmax(p, axis=1)
    cm = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(n_classes), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n_classes), where=support > 0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    present = support > 0
    eps = np.finfo(np.float64).eps
    p_true = np.clip(p[np.arange(n), y], eps, 1 - eps)
    roc_auc: float | None = None
    if present.sum() >= 2:
        if n_classes == 2:
            roc_auc = _binary_auc(y, p[:, 1])
        else:
            roc_auc = float(np.mean([_binary_auc((y == k).astype(np.int64), p[:, k]) for k in np.flatnonzero(present)]))
    return {
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": float(np.mean(recall[present])),
        "f1_macro": float(np.mean(f1)),
        "log_loss": float(np.mean(-np.log(p_true))),
        "ece": expected_calibration_error(calibration_bins(y, p)),
        "roc_auc": roc_auc,
        "confusion_matrix": cm.tolist(),
        "per_class": [
            {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k in range(n_classes)
        ],
    }
