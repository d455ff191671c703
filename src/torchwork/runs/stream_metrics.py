"""Metrics of streamed data, accumulated chunk by chunk: exact, except ROC-AUC, which comes from
the sample."""

from __future__ import annotations

from typing import Any

import numpy as np

from torchwork.evaluation.metrics import classification_metrics


class StreamMetrics:
    """Metrics accumulated chunk by chunk: exact sums for regression; the confusion matrix and
    log loss for classes (ROC-AUC comes from the sample)."""

    def __init__(self, regression: bool, n_classes: int) -> None:
        self.regression, self.n_classes, self.n = regression, n_classes, 0
        self.sums: dict[str, Any] = {}
        self.shift: np.ndarray | None = None

    def add(self, truth: np.ndarray, out: np.ndarray) -> None:
        if self.regression:
            t, p = truth.reshape(len(truth), -1), out.reshape(len(out), -1)
            if self.shift is None:
                self.shift = t.mean(axis=0)
            err = p - t
            for key, value in (
                ("abs", np.abs(err).sum(axis=0)),
                ("sq", (err**2).sum(axis=0)),
                ("t", (t - self.shift).sum(axis=0)),
                ("tt", ((t - self.shift) ** 2).sum(axis=0)),
            ):
                self.sums[key] = self.sums.get(key, 0.0) + value  # fmt: skip
        else:
            C = self.n_classes
            pred = np.argmax(out, axis=1)
            cm = np.bincount(truth * C + pred, minlength=C * C).reshape(C, C)
            eps = np.finfo(np.float64).eps
            loss = -np.log(np.clip(out[np.arange(len(truth)), truth], eps, 1 - eps)).sum()
            self.sums["cm"] = self.sums.get("cm", 0) + cm
            self.sums["log_loss"] = self.sums.get("log_loss", 0.0) + loss
        self.n += len(truth)

    def result(self) -> dict[str, Any]:
        n = self.n
        if self.regression:
            s = self.sums
            mse_cols = s["sq"] / n
            ss_tot = s["tt"] - s["t"] ** 2 / n
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = np.where(ss_tot > 0, 1 - s["sq"] / np.where(ss_tot > 0, ss_tot, 1), 0.0)
            r2 = np.where((ss_tot <= 0) & (s["sq"] == 0), 1.0, r2)
            mse = float(np.mean(mse_cols))
            return {"mae": float(np.mean(s["abs"] / n)), "mse": mse, "rmse": float(np.sqrt(mse)),
                    "r2": float(np.mean(r2))}  # fmt: skip
        cm = self.sums["cm"]
        tp = np.diag(cm).astype(np.float64)
        support, predicted = cm.sum(axis=1).astype(np.float64), cm.sum(axis=0).astype(np.float64)
        recall = np.divide(tp, support, out=np.zeros(len(tp)), where=support > 0)
        denom = support + predicted
        f1 = np.divide(2 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)
        return {"accuracy": float(tp.sum() / n), "balanced_accuracy": float(recall[support > 0].mean()),
                "f1_macro": float(f1.mean()), "log_loss": float(self.sums["log_loss"] / n), "roc_auc": None,
                "confusion_matrix": cm.tolist()}  # fmt: skip


def roc_auc_on_sample(truth: np.ndarray, proba: np.ndarray) -> float | None:
    if len(truth) == 0:
        return None
    return classification_metrics(truth, proba)["roc_auc"]
