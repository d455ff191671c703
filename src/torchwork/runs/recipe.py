"""The one recipe from a table and a configuration to a fitted, evaluated model.

Used by ``torchwork train``, :func:`torchwork.train` and the scikit-learn estimators:

1. :func:`prepare`: read and check the data, split the rows, fit the preprocessing on the
   training rows only;
2. :func:`fit`: build the model (seeded) and the :class:`~torchwork.training.trainer.Trainer`
   the configuration describes, and train on the prepared tensors;
3. :func:`evaluate`: metrics on every split, for the model and for the baseline fitted on
   the same training rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork.core.errors import InputError
from torchwork.data.preprocess import Preprocessor
from torchwork.data.readers import read_table
from torchwork.data.split import split_indices
from torchwork.data.tables import Selected, Table, select
from torchwork.evaluation.baselines import LeastSquares
from torchwork.evaluation.metrics import regression_metrics
from torchwork.models.registry import build_model, model_spec
from torchwork.runs.config import TrainConfig
from torchwork.training.callbacks import Callback, EarlyStopping
from torchwork.training.history import History
from torchwork.training.predict import predict
from torchwork.training.trainer import Trainer

PARTS = ("train", "val", "test")


@dataclass
class Prepared:
    """Checked data split into parts, with the preprocessing fitted on the training part."""

    table: Table
    data: Selected
    parts: dict[str, np.ndarray]  # part name -> positions into data.X / data.y
    pre: Preprocessor

    def raw(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.parts[part]
        assert self.data.y is not None
        return self.data.X[idx], self.data.y[idx]

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The part's model inputs and targets as tensors; ``None`` if the part is empty."""
        if len(self.parts[part]) == 0:
            return None
        X, y = self.raw(part)
        return torch.from_numpy(self.pre.inputs(X)), torch.from_numpy(self.pre.targets(y))


def prepare(config: TrainConfig, data: Any = None, table: Table | None = None) -> Prepared:
    """Read ``data`` (or ``config.data``), select and check the columns, split, fit the preprocessing."""
    if table is None:
        source = data if data is not None else config.data
        if source is None:
            raise InputError("no data: give a data file (DATA or 'data' in the config file)")
        table = read_table(source)
    if config.target is None:
        raise InputError("no target: pass --target COLUMN (or 'target' in the config file)")
    selected = select(table, config.target, config.features, drop_missing=config.drop_missing)
    try:
        train, val, test = split_indices(len(selected.X), config.val, config.test, shuffle=config.shuffle,
                                         seed=config.seed)  # fmt: skip
    except InputError as exc:
        raise InputError(f"{table.source}: {exc}") from None
    assert selected.y is not None
    pre = Preprocessor.fit(selected.X[train], selected.y[train], selected.features, selected.target,
                           standardize=config.standardize)  # fmt: skip
    return Prepared(table, selected, {"train": train, "val": val, "test": test}, pre)


def spec_for(config: TrainConfig, pre: Preprocessor) -> dict[str, Any]:
    """The model spec (a registered name or a class, and its arguments) the configuration asks for."""
    if config.model == "mlp":
        args = {"hidden": list(config.hidden), "activation": config.activation, "dropout": config.dropout}
        return model_spec("mlp", pre.n_inputs, pre.n_outputs, **args, **config.model_args)
    return model_spec(config.model, pre.n_inputs, pre.n_outputs, **config.model_args)


def trainer_for(config: TrainConfig, callbacks: Sequence[Callback] = (), handle_signals: bool = False) -> Trainer:
    """The Trainer the configuration describes (options already checked by the config)."""
    options = dict(config.optimizer_args)
    if config.weight_decay:
        options["weight_decay"] = config.weight_decay
    early_stopping = EarlyStopping(config.early_stopping) if config.early_stopping else None
    return Trainer(
        loss=config.loss, optimizer=config.optimizer, lr=config.lr, optimizer_options=options,
        epochs=config.epochs, batch_size=config.batch_size, shuffle=config.shuffle, seed=config.seed,
        device=config.device, scheduler=config.scheduler, scheduler_options=config.scheduler_args,
        clip_grad=config.clip_grad, early_stopping=early_stopping,
        callbacks=callbacks, precision=config.precision, compile=config.compile, handle_signals=handle_signals,
    )  # fmt: skip


@dataclass
class Fitted:
    """A trained model and how its training went."""

    model: nn.Module
    spec: dict[str, Any]
    history: History
    epochs_run: int
    best_epoch: int | None
    stopped_early: bool
    device: str
    seconds: float
    notes: list[str] = field(default_factory=list)


def fit(
    config: TrainConfig,
    prepared: Prepared,
    *,
    callbacks: Sequence[Callback] = (),
    handle_signals: bool = False,
    resume: dict[str, Any] | None = None,
) -> Fitted:
    """Build the model and train it on the prepared train split, validating on the val split."""
    spec = spec_for(config, prepared.pre)
    model = build_model(spec, seed=config.seed)
    trainer = trainer_for(config, callbacks, handle_signals)
    started = time.perf_counter()
    history = trainer.fit(model, prepared.tensors("train"), prepared.tensors("val"), resume=resume)
    seconds = time.perf_counter() - started
    last = trainer.last_fit
    assert last is not None
    es = trainer.early_stopping
    return Fitted(
        model=model.cpu().eval(), spec=spec, history=history, epochs_run=last.state.epoch,
        best_epoch=es.best_epoch if es is not None else None,
        stopped_early=bool(last.state.stop and last.state.epoch < config.epochs),
        device=str(last.device), seconds=seconds, notes=list(last.notes),
    )  # fmt: skip


def predict_target(model: nn.Module, pre: Preprocessor, X: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Predictions (n, k) for raw feature rows, in the target's own units (float64)."""
    outputs = predict(model, torch.from_numpy(pre.inputs(X)), batch_size)
    return pre.outputs_to_target(outputs.double().numpy())


def evaluate(model: nn.Module, prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics per split for the model and for closed-form least squares fitted on train; the baseline."""
    X_train, y_train = prepared.raw("train")
    ls = LeastSquares().fit(X_train, y_train)
    metrics: dict[str, Any] = {"model": {}, "least_squares": {}, "rows": {}}
    for part in PARTS:
        if len(prepared.parts[part]) == 0:
            continue
        X, y = prepared.raw(part)
        metrics["model"][part] = regression_metrics(y, predict_target(model, prepared.pre, X))
        metrics["least_squares"][part] = regression_metrics(y, ls.predict(X))
        metrics["rows"][part] = len(X)
    baseline = {"coef": ls.coef_.tolist(), "intercept": ls.intercept_.tolist()}
    return metrics, baseline
