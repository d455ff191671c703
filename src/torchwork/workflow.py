"""From checked data and a configuration to a fitted model: split, scale, build, train.

This is the path a CSV takes through torchwork, shared by ``torchwork train``, the Python
API (:func:`torchwork.train`) and :class:`torchwork.Regressor`:

1. :func:`prepare`: read and check the data (:mod:`torchwork.tables`), split the rows, fit
   the scalers on the training rows only;
2. :func:`build` the model from the configuration (seeded);
3. :func:`make_trainer` and fit it on the scaled tensors;
4. :func:`predict_raw` maps predictions back to the target's units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork.callbacks import Callback
from torchwork.config import TrainConfig
from torchwork.data import split_indices
from torchwork.errors import InputError
from torchwork.models import build_model, model_spec
from torchwork.scaling import Standardizer
from torchwork.tables import Selected, Table, read_table, select
from torchwork.trainer import Trainer
from torchwork.trainer import predict as predict_tensor

PARTS = ("train", "val", "test")


@dataclass
class Prepared:
    """Checked data split into parts, with scalers fitted on the training part."""

    table: Table
    data: Selected
    parts: dict[str, np.ndarray]  # part name -> positions into data.X / data.y
    x_scaler: Standardizer
    y_scaler: Standardizer

    def raw(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.parts[part]
        assert self.data.y is not None
        return self.data.X[idx], self.data.y[idx]

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The part's features and targets, scaled, as float32 tensors; ``None`` if empty."""
        if len(self.parts[part]) == 0:
            return None
        X, y = self.raw(part)
        return (
            torch.from_numpy(self.x_scaler.transform(X).astype(np.float32)),
            torch.from_numpy(self.y_scaler.transform(y).astype(np.float32)),
        )


def prepare(config: TrainConfig, data: Any = None, table: Table | None = None) -> Prepared:
    """Read ``data`` (or ``config.data``), select and check the columns, split, fit scalers."""
    if table is None:
        source = data if data is not None else config.data
        if source is None:
            raise InputError("no data: give a data file (DATA or 'data' in the config file)")
        table = read_table(source)
    if config.target is None:
        raise InputError("no target: pass --target COLUMN (or 'target' in the config file)")
    selected = select(table, config.target, config.features, drop_missing=config.drop_missing)
    n = len(selected.X)
    try:
        train, val, test = split_indices(n, config.val, config.test, shuffle=config.shuffle, seed=config.seed)
    except InputError as exc:
        raise InputError(f"{table.source}: {exc}") from None
    parts = {"train": train, "val": val, "test": test}
    assert selected.y is not None
    if config.standardize:
        x_scaler, y_scaler = Standardizer.fit(selected.X[train]), Standardizer.fit(selected.y[train])
    else:
        x_scaler = Standardizer.identity(selected.X.shape[1])
        y_scaler = Standardizer.identity(selected.y.shape[1])
    return Prepared(table, selected, parts, x_scaler, y_scaler)


def architecture(config: TrainConfig, in_features: int, out_features: int) -> dict[str, Any]:
    """The model spec (name or class, and arguments) that a configuration asks for."""
    if config.model == "mlp":
        args = {"hidden": list(config.hidden), "activation": config.activation, "dropout": config.dropout}
        return model_spec("mlp", in_features, out_features, **args, **config.model_args)
    return model_spec(config.model, in_features, out_features, **config.model_args)


def build(spec: dict[str, Any], seed: int) -> nn.Module:
    """The model, with initial weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return build_model(spec)


def make_trainer(config: TrainConfig, callbacks: Sequence[Callback] = (), **extra: Any) -> Trainer:
    options = dict(config.optimizer_args)
    if config.weight_decay:
        options["weight_decay"] = config.weight_decay
    return Trainer(
        loss=config.loss,
        optimizer=config.optimizer,
        lr=config.lr,
        optimizer_options=options,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=config.shuffle,
        seed=config.seed,
        device=config.device,
        scheduler=config.scheduler,
        scheduler_options=config.scheduler_args,
        clip_grad=config.clip_grad,
        early_stopping=config.early_stopping or None,
        callbacks=callbacks,
        precision=config.precision,
        compile=config.compile,
        **extra,
    )


def predict_raw(
    model: nn.Module, X: np.ndarray, x_scaler: Standardizer, y_scaler: Standardizer, batch_size: int = 65536
) -> np.ndarray:
    """Predictions for raw feature rows, in the target's own units (float64)."""
    scaled = torch.from_numpy(x_scaler.transform(X).astype(np.float32))
    out = predict_tensor(model, scaled, batch_size).double().numpy()
    return y_scaler.inverse(out.reshape(len(out), -1))
