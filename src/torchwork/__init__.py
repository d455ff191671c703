"""torchwork: the whole PyTorch workflow as one fast and safe library and command-line tool.

Names are imported on first use, so that ``import torchwork`` (and ``torchwork --help``)
does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from torchwork.core.version import __version__

_EXPORTS = {
    "Trainer": "torchwork.training.trainer",
    "predict": "torchwork.training.predict",
    "History": "torchwork.training.history",
    "Callback": "torchwork.training.callbacks",
    "EarlyStopping": "torchwork.training.callbacks",
    "get_loss": "torchwork.training.losses",
    "build_optimizer": "torchwork.training.optim",
    "make_line": "torchwork.data.line",
    "split": "torchwork.data.split",
    "LinearRegressionModel": "torchwork.models.tutorial",
    "LinearRegressionModelV2": "torchwork.models.tutorial",
    "MLP": "torchwork.models.mlp",
    "build_model": "torchwork.models.registry",
    "model_spec": "torchwork.models.registry",
    "regression_metrics": "torchwork.evaluation.metrics",
    "LeastSquares": "torchwork.evaluation.baselines",
    "plot_predictions": "torchwork.report.plots",
    "plot_loss_curves": "torchwork.report.plots",
    "save_state_dict": "torchwork.files.weights",
    "load_state_dict": "torchwork.files.weights",
    "load_into": "torchwork.files.weights",
    "resolve_device": "torchwork.core.devices",
    "train": "torchwork.api",
    "load_run": "torchwork.api",
    "resume": "torchwork.api",
    "Run": "torchwork.runs.run",
    "TrainConfig": "torchwork.runs.config",
    "Regressor": "torchwork.estimator",
    "Classifier": "torchwork.estimator",
    "TorchworkError": "torchwork.core.errors",
    "InputError": "torchwork.core.errors",
    "IntegrityError": "torchwork.core.errors",
    "UnsafeFileError": "torchwork.core.errors",
    "TrainingDiverged": "torchwork.core.errors",
    "TrainingInterrupted": "torchwork.core.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'torchwork' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from torchwork.api import load_run, resume, train
    from torchwork.core.devices import resolve_device
    from torchwork.core.errors import (
        InputError,
        IntegrityError,
        TorchworkError,
        TrainingDiverged,
        TrainingInterrupted,
        UnsafeFileError,
    )
    from torchwork.data.line import make_line
    from torchwork.data.split import split
    from torchwork.estimator import Classifier, Regressor
    from torchwork.evaluation.baselines import LeastSquares
    from torchwork.evaluation.metrics import regression_metrics
    from torchwork.files.weights import load_into, load_state_dict, save_state_dict
    from torchwork.models.mlp import MLP
    from torchwork.models.registry import build_model, model_spec
    from torchwork.models.tutorial import LinearRegressionModel, LinearRegressionModelV2
    from torchwork.report.plots import plot_loss_curves, plot_predictions
    from torchwork.runs.config import TrainConfig
    from torchwork.runs.run import Run
    from torchwork.training.callbacks import Callback, EarlyStopping
    from torchwork.training.history import History
    from torchwork.training.losses import get_loss
    from torchwork.training.optim import build_optimizer
    from torchwork.training.predict import predict
    from torchwork.training.trainer import Trainer
