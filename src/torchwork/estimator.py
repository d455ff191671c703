"""``torchwork.Regressor``: a scikit-learn estimator around torchwork's training path.

Constructor arguments are the hyperparameters and are stored as given; everything learned
ends in ``_`` (``model_``, ``history_``, ``x_scaler_``, ...). It works in ``Pipeline`` and
``GridSearchCV`` and passes scikit-learn's own estimator checks (see the README for the
ones it skips). Needs scikit-learn: ``pip install 'torchwork[sklearn]'``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

try:
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("torchwork.Regressor needs scikit-learn: pip install 'torchwork[sklearn]'") from exc

from torchwork.data.tables import Table
from torchwork.runs.config import TrainConfig
from torchwork.runs.recipe import fit, predict_target, prepare


class Regressor(RegressorMixin, BaseEstimator):
    """A neural-network regressor: an MLP (or linear model) trained by torchwork's Trainer.

    Defaults are ``torchwork train``'s: standardized features and target, Adam, and early
    stopping on a validation fraction (``val``) of the training rows with the best weights
    restored. ``val=0`` trains on every row and early stopping watches the training loss.
    """

    def __init__(
        self,
        model: str = "mlp",
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        loss: str = "mse",
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        epochs: int = 1000,
        batch_size: int = 64,
        early_stopping: int = 30,
        val: float = 0.1,
        scheduler: str | None = None,
        clip_grad: float | None = None,
        standardize: bool = True,
        shuffle: bool = True,
        random_state: int | None = 0,
        device: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.model = model
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.val = val
        self.scheduler = scheduler
        self.clip_grad = clip_grad
        self.standardize = standardize
        self.shuffle = shuffle
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.non_deterministic = self.device != "cpu"  # GPU kernels may reorder sums
        return tags

    def _config(self, n_rows: int) -> TrainConfig:
        seed = self.random_state if self.random_state is not None else int(np.random.randint(2**31))
        # A validation split needs rows to spare; small data trains on everything.
        val = (
            self.val
            if self.early_stopping and n_rows * self.val >= 2 and n_rows - round(n_rows * self.val) >= 2
            else 0.0
        )
        values = {
            "target": "y", "model": self.model, "hidden": list(self.hidden), "activation": self.activation,
            "dropout": self.dropout, "loss": self.loss, "optimizer": self.optimizer, "lr": self.lr,
            "weight_decay": self.weight_decay, "epochs": self.epochs, "batch_size": self.batch_size,
            "early_stopping": self.early_stopping, "val": val, "test": 0.0, "scheduler": self.scheduler,
            "clip_grad": self.clip_grad, "standardize": self.standardize, "shuffle": self.shuffle,
            "seed": seed, "device": self.device,
        }  # fmt: skip
        return TrainConfig().updated(values, source="Regressor").validate()

    def fit(self, X: Any, y: Any) -> Regressor:
        X, y = validate_data(self, X, y, y_numeric=True, multi_output=True, ensure_min_samples=2, dtype=np.float64)
        y2 = y.reshape(len(y), -1)
        self._y_ndim = y.ndim
        names = [f"x{i}" for i in range(X.shape[1])]
        targets = ["y"] if y2.shape[1] == 1 else [f"y{j}" for j in range(y2.shape[1])]
        frame = pd.DataFrame(np.column_stack([X, y2]), columns=names + targets)
        config = self._config(len(X)).updated({"target": targets if len(targets) > 1 else "y"}, source="Regressor")
        prepared = prepare(config, table=Table(frame, "X"))
        callbacks = []
        if self.verbose:
            from torchwork.training.callbacks import Progress

            callbacks.append(Progress(config.epochs))
        fitted = fit(config, prepared, callbacks=callbacks)
        self.history_ = fitted.history
        self.model_ = fitted.model
        self.preprocessor_ = prepared.pre
        self.x_scaler_, self.y_scaler_ = prepared.pre.x_scaler, prepared.pre.y_scaler
        self.n_epochs_ = fitted.epochs_run
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        preds = predict_target(self.model_, self.preprocessor_, X)
        return preds.ravel() if self._y_ndim == 1 else preds
