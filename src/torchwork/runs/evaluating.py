"""Step three of the recipe: metrics on every split for the model and the baselines (of streamed
data, in one more pass)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork.data.preprocess import Preprocessor
from torchwork.evaluation.metrics import classification_metrics, regression_metrics
from torchwork.runs.baselines import Baselines
from torchwork.runs.preparing import PARTS, Prepared
from torchwork.runs.stream_metrics import roc_auc_on_sample
from torchwork.training.predict import predict


def model_predictions(model: nn.Module, pre: Preprocessor, X: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Predictions for encoded rows: target units (float64 (n, k)), or class probabilities (n, C)."""
    outputs = predict(model, torch.from_numpy(np.ascontiguousarray(X)), batch_size)
    return pre.decode(outputs.double().numpy())


def score(pre: Preprocessor, truth: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """Regression metrics (target units) or classification metrics (codes against probabilities)."""
    if pre.task == "regression":
        return regression_metrics(truth, predictions)
    return classification_metrics(truth, predictions)


def evaluate(model: nn.Module, baselines: Baselines, prepared: Prepared) -> dict[str, Any]:
    """Metrics per split for the model and for each baseline fitted on the training rows."""
    pre = prepared.pre
    metrics: dict[str, Any] = {"task": pre.task}
    if pre.task == "classification":
        metrics["classes"] = pre.target.classes
    if prepared.stream is not None:
        return metrics | _evaluate_streamed(model, baselines, prepared)
    metrics["model"] = {}
    for name in baselines.fitted:
        metrics[name] = {}
    metrics["rows"] = {}
    for part in PARTS:
        if prepared.size(part) == 0:
            continue
        s = prepared.parts[part]
        X, truth = prepared.X[s], prepared.truth[s]
        metrics["model"][part] = score(pre, truth, model_predictions(model, pre, X))
        for name, predicted in baselines.predictions(X).items():
            metrics[name][part] = score(pre, truth, predicted)
        metrics["rows"][part] = len(X)
    return metrics


def _evaluate_streamed(model: nn.Module, baselines: Baselines, prepared: Prepared) -> dict[str, Any]:
    """Metrics of every row of each part, in one more pass; ROC-AUC from the sample (see runs.streamed)."""
    pre = prepared.pre

    def everyone(X: np.ndarray) -> dict[str, np.ndarray]:  # the model's and each baseline's, design built once
        return {"model": model_predictions(model, pre, X), **baselines.predictions(X)}

    result: dict[str, Any] = prepared.stream.evaluate(["model", *baselines.fitted], everyone)
    if pre.task == "classification":
        for part in PARTS:
            if prepared.size(part) == 0 or part not in result["model"]:
                continue
            s = prepared.parts[part]
            for name, proba in everyone(prepared.X[s]).items():
                result[name][part]["roc_auc"] = roc_auc_on_sample(prepared.truth[s], proba)
                result[name][part]["roc_auc_rows"] = prepared.size(part)
    result["rows"] = {p: prepared.rows_in(p) for p in PARTS if prepared.rows_in(p)}
    return result
