"""The baselines a run compares its model with: fitted on the training rows (in memory or
streamed), written as JSON and checked when read back."""

from __future__ import annotations

from typing import Any

import numpy as np

from torchwork.data.preprocess import Preprocessor
from torchwork.evaluation.baselines import LeastSquares, LogisticRegression, MajorityClass
from torchwork.runs.preparing import Prepared
from torchwork.runs.stream_table import stream_baselines


class Baselines:
    """The baselines fitted on the training rows' design matrix: least squares for regression;
    logistic regression and the majority class for classification."""

    def __init__(self, pre: Preprocessor, fitted: dict[str, Any]) -> None:
        self.pre, self.fitted = pre, fitted

    @classmethod
    def fit(cls, prepared: Prepared) -> Baselines:
        pre, s = prepared.pre, prepared.parts["train"]
        if prepared.stream is not None:
            return cls(pre, stream_baselines(prepared.stream, prepared.X[s], prepared.y[s]))
        design = pre.design(prepared.X[s])
        if pre.task == "regression":
            return cls(pre, {"least_squares": LeastSquares().fit(design, prepared.y[s])})
        n = len(pre.target.classes)
        return cls(pre, {"logistic_regression": LogisticRegression().fit(design, prepared.y[s], n),
                         "majority_class": MajorityClass().fit(prepared.y[s], n)})  # fmt: skip

    def predictions(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Each baseline's predictions: target units (regression) or class probabilities."""
        design = self.pre.design(X)
        out = {}
        for name, model in self.fitted.items():
            if name == "least_squares":
                out[name] = self.pre.decode(model.predict(design))
            else:
                out[name] = model.predict_proba(design)
        return out

    def linear_start(self, outputs: int) -> tuple[np.ndarray, np.ndarray]:
        """``(coef (p, outputs), intercept (outputs,))`` in the model's output space, to start from."""
        if "least_squares" in self.fitted:
            ls = self.fitted["least_squares"]
            return np.asarray(ls.coef_).reshape(-1, outputs), np.asarray(ls.intercept_).reshape(outputs)
        lr = self.fitted["logistic_regression"]
        coef, intercept = np.asarray(lr.coef_).T, np.asarray(lr.intercept_).reshape(-1)
        if outputs == coef.shape[1]:
            return coef, intercept
        if coef.shape[1] == 1 and outputs == 2:  # one logit to two: class 0 at zero
            return np.hstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
        full, bias = np.zeros((coef.shape[0], outputs)), np.full(outputs, -10.0)  # classes absent from training
        full[:, lr.classes_], bias[lr.classes_] = coef, intercept
        return full, bias

    def to_json(self) -> dict[str, Any]:
        return {name: model.to_json() for name, model in self.fitted.items()}

    @classmethod
    def from_json(cls, pre: Preprocessor, doc: dict[str, Any]) -> Baselines:
        kinds: dict[str, Any] = {
            "least_squares": LeastSquares,
            "logistic_regression": LogisticRegression,
            "majority_class": MajorityClass,
        }
        baselines = cls(pre, {name: kinds[name].from_json(value) for name, value in doc.items()})
        expected = {"least_squares"} if pre.task == "regression" else {"logistic_regression", "majority_class"}
        if set(baselines.fitted) != expected:
            raise ValueError(
                f"its baselines are {', '.join(sorted(baselines.fitted))}, not {', '.join(sorted(expected))}"
            )
        # one row of zeros through each: coefficients of the wrong shape fail here, in one line, not at predict
        outputs = len(pre.target.classes) if pre.task == "classification" else len(pre.target.names)
        try:
            with np.errstate(all="raise"):
                predictions = baselines.predictions(np.zeros((1, pre.n_inputs), dtype=np.float32))
        except FloatingPointError as exc:
            raise ValueError(f"its baselines overflow ({exc})") from None
        for name, out in predictions.items():
            if out.shape != (1, outputs) or not np.isfinite(out).all():
                raise ValueError(f"its {name} baseline gives {out.shape[1:]} finite outputs, not {outputs}")
        return baselines


def fit_baselines(prepared: Prepared) -> Baselines:
    """:meth:`Baselines.fit`; streamed data in a process group: rank 0 fits them (a pass over the
    training rows) and every rank gets them."""
    from torchwork.training.distributed import current, on_main

    group = current()
    if prepared.stream is None or group is None:
        return Baselines.fit(prepared)
    return Baselines(prepared.pre, on_main(group, lambda: Baselines.fit(prepared).fitted))
