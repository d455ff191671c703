"""The one recipe from a table and a configuration to a fitted, evaluated model.

Used by ``torchwork train``, :func:`torchwork.train` and the scikit-learn estimators:

1. :func:`prepare`: read the data, pick the columns and rows, infer each column's kind and
   the task, split (stratified for classes), and fit the preprocessing on the training rows;
2. :func:`fit`: fit the baseline in closed form (least squares, or logistic regression by
   L-BFGS), build the model (seeded; the linear model and the MLP's linear path start from
   the baseline), build the :class:`~torchwork.training.trainer.Trainer` the configuration
   describes, and train on the prepared tensors;
3. :func:`evaluate`: metrics on every split for the model and the baselines.

Each step is a module of its own: :mod:`~torchwork.runs.preparing`, :mod:`~torchwork.runs.fitting`
(with :mod:`~torchwork.runs.baselines`) and :mod:`~torchwork.runs.evaluating`; this module names
the recipe's parts together.
"""

from __future__ import annotations

from torchwork.runs.baselines import Baselines, fit_baselines
from torchwork.runs.evaluating import evaluate, model_predictions, score
from torchwork.runs.fitting import (
    MIN_PATIENCE_STEPS,
    Fitted,
    build,
    fit,
    loss_for,
    resolve,
    restore,
    spec_for,
    trainer_for,
)
from torchwork.runs.preparing import PARTS, Prepared, input_encoding, prepare

__all__ = [  # the recipe's parts, importable from here as before
    "MIN_PATIENCE_STEPS",
    "PARTS",
    "Baselines",
    "Fitted",
    "Prepared",
    "build",
    "evaluate",
    "fit",
    "fit_baselines",
    "input_encoding",
    "loss_for",
    "model_predictions",
    "prepare",
    "resolve",
    "restore",
    "score",
    "spec_for",
    "trainer_for",
]
