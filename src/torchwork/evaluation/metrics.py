"""Metrics of predictions against targets, computed in float64."""

from __future__ import annotations

from typing import Any

import numpy as np


def _as_2d(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1)


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """MAE, MSE, RMSE and R² (averaged over target columns, as scikit-learn's defaults do).

    R² is ``1 - SS_res / SS_tot``; a constant target gives R² of 1.0 for a perfect fit and
    0.0 otherwise, as in scikit-learn.
    """
    t, p = _as_2d(y_true), _as_2d(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"targets have shape {t.shape} but predictions {p.shape}")
    err = p - t
    mse = float(np.mean(err**2))
    ss_res = np.sum(err**2, axis=0)
    ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2_cols = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)
    r2_cols = np.where((ss_tot == 0) & (ss_res == 0), 1.0, r2_cols)
    return {
        "mae": float(np.mean(np.abs(err))),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "r2": float(np.mean(r2_cols)),
    }
