"""``torchwork.Regressor`` and ``torchwork.Classifier``: scikit-learn estimators around the one recipe.

Constructor arguments are the hyperparameters and are stored as given; everything learned
ends in ``_`` (``model_``, ``history_``, ``preprocessor_``, ``classes_``, ...). They take
NumPy arrays or pandas DataFrames, with text and categorical columns and missing values
as they are (the same preprocessing as ``torchwork train``), work in ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``, and pass scikit-learn's own estimator checks (see
the README for the one they skip). Needs scikit-learn: ``pip install 'torchwork[sklearn]'``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_array
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("torchwork's estimators need scikit-learn: pip install 'torchwork[sklearn]'") from exc

from torchwork.data.tables import Table
from torchwork.runs.config import TrainConfig
from torchwork.runs.prepare import prepare
from torchwork.runs.recipe import fit, model_predictions

TARGET = "__target__"


class _Estimator(BaseEstimator):
    """What the regressor and the classifier share: the hyperparameters and the fit."""

    _task = "regression"

    def __init__(
        self,
        model: str = "mlp",
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        loss: str = "auto",
        optimizer: str = "auto",
        lr: float | None = None,
        weight_decay: float = 0.0,
        epochs: int = 1000,
        batch_size: int | None = None,
        early_stopping: int = 30,
        val: float = 0.15,
        scheduler: str | None = None,
        clip_grad: float | None = None,
        standardize: bool = True,
        shuffle: bool = True,
        categorical: tuple[str, ...] = (),
        warm_start: bool = True,
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
        self.categorical = categorical
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values are filled in as in training
        tags.non_deterministic = self.device != "cpu"  # GPU kernels may reorder sums
        return tags

    def _options(self) -> dict[str, Any]:
        return {}

    def _config(self, n_rows: int, targets: list[str]) -> TrainConfig:
        seed = self.random_state if self.random_state is not None else int(np.random.randint(2**31))
        # A validation split needs rows to spare; small data trains on everything.
        enough = n_rows * self.val >= 2 and n_rows - round(n_rows * self.val) >= 2
        val = self.val if self.early_stopping and enough else 0.0
        values = {
            "target": targets, "task": self._task, "model": self.model, "hidden": list(self.hidden),
            "activation": self.activation, "dropout": self.dropout, "loss": self.loss, "optimizer": self.optimizer,
            "lr": self.lr, "weight_decay": self.weight_decay, "epochs": self.epochs, "batch_size": self.batch_size,
            "early_stopping": self.early_stopping, "val": val, "test": 0.0, "scheduler": self.scheduler,
            "clip_grad": self.clip_grad, "standardize": self.standardize, "shuffle": self.shuffle,
            "categorical": list(self.categorical), "warm_start": self.warm_start, "seed": seed, "device": self.device,
            **self._options(),
        }  # fmt: skip
        return TrainConfig().updated(values, source=type(self).__name__).validate()

    def _frame(self, X: Any, *, reset: bool) -> pd.DataFrame:
        """``X`` as a DataFrame: a DataFrame's columns as they are, an array's as numbers (x0, x1, ...)."""
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=reset, skip_check_array=True)
            frame = X.reset_index(drop=True).copy()
            frame.columns = [str(c) for c in frame.columns]
            return frame
        A = validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite="allow-nan")
        return pd.DataFrame(A, columns=[f"x{i}" for i in range(A.shape[1])])

    def _fit(self, X: Any, y: np.ndarray, targets: list[str]) -> None:
        frame = self._frame(X, reset=True)
        if len(frame) != len(y):
            raise ValueError(f"X has {len(frame)} rows but y has {len(y)}")
        if len(frame) < 2:
            raise ValueError(f"Found array with {len(frame)} sample(s) while a minimum of 2 is required.")
        for j, name in enumerate(targets):
            frame[name] = y[:, j] if y.ndim == 2 else y
        config = self._config(len(frame), targets)
        prepared = prepare(config, table=Table(frame, "X"))
        callbacks = []
        if self.verbose:
            from torchwork.training.callbacks import Progress

            callbacks.append(Progress(config.epochs))
        fitted = fit(config, prepared, callbacks=callbacks)
        self.model_ = fitted.model
        self.preprocessor_ = prepared.pre
        self.baselines_ = fitted.baselines
        self.history_ = fitted.history
        self.n_epochs_ = fitted.epochs_run

    def _outputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        frame = self._frame(X, reset=False)
        return model_predictions(self.model_, self.preprocessor_, self.preprocessor_.inputs(frame, "X").X)


class Regressor(RegressorMixin, _Estimator):
    """A neural-network regressor: an MLP (or linear model) trained by torchwork's Trainer.

    Defaults are ``torchwork train``'s: categories embedded, missing values filled in,
    standardized features and target, an MLP starting from the least-squares line, Adam, and
    early stopping on a validation fraction (``val``, 0.15) of the training rows with the
    best weights restored. ``val=0`` trains on every row (early stopping then watches the
    training loss).
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> Regressor:
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        self._y_ndim = y.ndim
        targets = [TARGET] if y.ndim == 1 else [f"{TARGET}{j}" for j in range(y.shape[1])]
        self._fit(X, y, targets)
        return self

    def predict(self, X: Any) -> np.ndarray:
        preds = self._outputs(X)
        return preds.ravel() if self._y_ndim == 1 else preds


class Classifier(ClassifierMixin, _Estimator):
    """A neural-network classifier: the same recipe, with a cross-entropy (or, for two classes,
    binary cross-entropy) loss, a stratified validation split, and an MLP that starts from the
    logistic regression fitted in closed form. ``classes_`` are the labels, sorted;
    ``predict_proba`` gives one column per class; ``score`` is the accuracy.
    """

    _task = "classification"

    def __init__(
        self,
        model: str = "mlp",
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        loss: str = "auto",
        optimizer: str = "auto",
        lr: float | None = None,
        weight_decay: float = 0.0,
        epochs: int = 1000,
        batch_size: int | None = None,
        early_stopping: int = 30,
        val: float = 0.15,
        scheduler: str | None = None,
        clip_grad: float | None = None,
        standardize: bool = True,
        shuffle: bool = True,
        categorical: tuple[str, ...] = (),
        warm_start: bool = True,
        random_state: int | None = 0,
        device: str = "auto",
        verbose: bool = False,
        class_weight: str | None = None,
        max_classes: int = 100,
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
        self.categorical = categorical
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.class_weight = class_weight
        self.max_classes = max_classes

    def _options(self) -> dict[str, Any]:
        weight = self.class_weight
        if isinstance(weight, dict):  # by label, as scikit-learn takes it; torchwork sees the codes
            weight = {str(i): float(weight.get(label, 1.0)) for i, label in enumerate(self.classes_)}
        return {"class_weight": weight, "max_classes": self.max_classes}

    def fit(self, X: Any, y: Any) -> Classifier:
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        y = check_array(y, ensure_2d=False, dtype=None, ensure_all_finite=True, input_name="y")
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"Classifier needs samples of at least 2 classes in the data; got 1 class ({self.classes_[0]!r})"
            )
        self._fit(X, codes.astype(np.int64), [TARGET])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._outputs(X)

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
