"""torchwork: the whole PyTorch workflow as one fast and safe library and command-line tool.

Names are imported on first use, so that ``import torchwork`` (and ``torchwork --help``)
does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from torchwork.core import __version__

_EXPORTS = {
    "Trainer": "torchwork.training.trainer",
    "predict": "torchwork.training.batching",
    "History": "torchwork.training.loop",
    "Callback": "torchwork.training.callbacks",
    "EarlyStopping": "torchwork.training.callbacks",
    "get_loss": "torchwork.training.components",
    "build_optimizer": "torchwork.training.components",
    "make_line": "torchwork.data.split",
    "split": "torchwork.data.split",
    "LinearRegressionModel": "torchwork.models.tutorial",
    "LinearRegressionModelV2": "torchwork.models.tutorial",
    "MLP": "torchwork.models.tabular",
    "build_model": "torchwork.models.registry",
    "model_spec": "torchwork.models.registry",
    "regression_metrics": "torchwork.evaluation.metrics",
    "LeastSquares": "torchwork.evaluation.baselines",
    "plot_predictions": "torchwork.report.plots",
    "plot_loss_curves": "torchwork.report.plots",
    "save_state_dict": "torchwork.files.weights",
    "load_state_dict": "torchwork.files.weights",
    "load_into": "torchwork.files.weights",
    "resolve_device": "torchwork.core.runtime",
    "train": "torchwork.runs.lifecycle",
    "load_run": "torchwork.runs.folder",
    "resume": "torchwork.runs.lifecycle",
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
    from torchwork.core.errors import (
        InputError,
        IntegrityError,
        TorchworkError,
        TrainingDiverged,
        TrainingInterrupted,
        UnsafeFileError,
    )
    from torchwork.core.runtime import resolve_device
    from torchwork.data.split import make_line, split
    from torchwork.estimator import Classifier, Regressor
    from torchwork.evaluation.baselines import LeastSquares
    from torchwork.evaluation.metrics import regression_metrics
    from torchwork.files.weights import load_into, load_state_dict, save_state_dict
    from torchwork.models.registry import build_model, model_spec
    from torchwork.models.tabular import MLP
    from torchwork.models.tutorial import LinearRegressionModel, LinearRegressionModelV2
    from torchwork.report.plots import plot_loss_curves, plot_predictions
    from torchwork.runs.config import TrainConfig
    from torchwork.runs.folder import load_run
    from torchwork.runs.lifecycle import resume, train
    from torchwork.runs.run import Run
    from torchwork.training.batching import predict
    from torchwork.training.callbacks import Callback, EarlyStopping
    from torchwork.training.components import build_optimizer, get_loss
    from torchwork.training.loop import History
    from torchwork.training.trainer import Trainer
