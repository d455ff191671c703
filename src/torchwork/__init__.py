"""torchwork: the whole PyTorch workflow as one fast and safe library and command-line tool.

Names are imported on first use, so that ``import torchwork`` (and ``torchwork --help``)
does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Trainer": "torchwork.trainer",
    "predict": "torchwork.trainer",
    "History": "torchwork.history",
    "make_line": "torchwork.data",
    "split": "torchwork.data",
    "LinearRegressionModel": "torchwork.models",
    "LinearRegressionModelV2": "torchwork.models",
    "MLP": "torchwork.models",
    "build_model": "torchwork.models",
    "model_spec": "torchwork.models",
    "get_loss": "torchwork.losses",
    "build_optimizer": "torchwork.optim",
    "Callback": "torchwork.callbacks",
    "EarlyStopping": "torchwork.callbacks",
    "regression_metrics": "torchwork.metrics",
    "LeastSquares": "torchwork.metrics",
    "plot_predictions": "torchwork.plots",
    "plot_loss_curves": "torchwork.plots",
    "save_state_dict": "torchwork.persistence",
    "load_state_dict": "torchwork.persistence",
    "load_into": "torchwork.persistence",
    "resolve_device": "torchwork.devices",
    "train": "torchwork.api",
    "load_run": "torchwork.api",
    "resume": "torchwork.api",
    "Run": "torchwork.runs",
    "TrainConfig": "torchwork.config",
    "Regressor": "torchwork.estimator",
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
    from torchwork.callbacks import Callback, EarlyStopping
    from torchwork.config import TrainConfig
    from torchwork.data import make_line, split
    from torchwork.devices import resolve_device
    from torchwork.estimator import Regressor
    from torchwork.history import History
    from torchwork.losses import get_loss
    from torchwork.metrics import LeastSquares, regression_metrics
    from torchwork.models import MLP, LinearRegressionModel, LinearRegressionModelV2, build_model, model_spec
    from torchwork.optim import build_optimizer
    from torchwork.persistence import load_into, load_state_dict, save_state_dict
    from torchwork.plots import plot_loss_curves, plot_predictions
    from torchwork.runs import Run
    from torchwork.trainer import Trainer, predict
