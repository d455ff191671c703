"""The same work through PyTorch Lightning, skorch and Keras 3 (torch backend), when installed.

None of them is a dependency: a peer that does not import is left out of the table. Each
runs as its users configure it, with logging, checkpointing and progress bars off.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks.speed.cases import tabular_model, timed, tutorial_data
from torchwork.models.tutorial import LinearRegressionModel


def available() -> dict[str, bool]:
    out = {}
    for name in ("lightning", "skorch", "keras"):
        try:
            if name == "keras":
                os.environ.setdefault("KERAS_BACKEND", "torch")
            module = __import__(name)
            out[name] = name != "keras" or module.backend.backend() == "torch"
        except Exception:
            out[name] = False
    return out


@contextlib.contextmanager
def quiet() -> Any:
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)
        yield


# ----------------------------------------------------------------- lightning
def _lightning_trainer(epochs: int, device: torch.device, limit: int | None = None) -> Any:
    import lightning as L

    return L.Trainer(
        max_epochs=epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_train_batches=limit or 1.0, num_sanity_val_steps=0,
    )  # fmt: skip


def _lightning_module(model: nn.Module, loss_fn: nn.Module, make_opt: Callable[..., Any]) -> Any:
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch: Any, _: int) -> Any:
            X, y = batch
            return loss_fn(self.model(X), y)

        def validation_step(self, batch: Any, _: int) -> None:
            X, y = batch
            self.log("test_loss", loss_fn(self.model(X), y))

        def configure_optimizers(self) -> Any:
            return make_opt(self.parameters())

    return Module()


def lightning_tutorial(device: torch.device, epochs: int = 1000) -> float:
    Xtr, ytr, Xte, yte = (t.cpu() for t in tutorial_data(torch.device("cpu")))
    torch.manual_seed(42)
    module = _lightning_module(LinearRegressionModel(), nn.L1Loss(), lambda p: torch.optim.SGD(p, lr=0.01))
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xtr, ytr), batch_size=40)
    test = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xte, yte), batch_size=10)
    with quiet():
        trainer = _lightning_trainer(epochs, device)
        return timed(lambda: trainer.fit(module, train, test), device)


def lightning_tabular(X: torch.Tensor, y: torch.Tensor, kind: str, batch: int, device: torch.device,
                      max_rows: int) -> tuple[float, int]:  # fmt: skip
    module = _lightning_module(tabular_model(kind, X.shape[1]), nn.MSELoss(), lambda p: torch.optim.Adam(p, lr=1e-3))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=batch, shuffle=True)
    steps = max(1, max_rows // batch)
    with quiet():
        trainer = _lightning_trainer(1, device, limit=steps)
        return timed(lambda: trainer.fit(module, loader), device), steps * batch


# -------------------------------------------------------------------- skorch
def skorch_tutorial(device: torch.device, epochs: int = 1000) -> float:
    from skorch import NeuralNetRegressor
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split

    Xtr, ytr, Xte, yte = (t.cpu() for t in tutorial_data(torch.device("cpu")))
    torch.manual_seed(42)
    net = NeuralNetRegressor(
        LinearRegressionModel, criterion=nn.L1Loss, optimizer=torch.optim.SGD, lr=0.01, max_epochs=epochs,
        batch_size=40, train_split=predefined_split(Dataset(Xte, yte)), iterator_train__shuffle=False,
        verbose=0, device=device.type,
    )  # fmt: skip
    with quiet():
        return timed(lambda: net.fit(Xtr, ytr), device)


def skorch_tabular(X: torch.Tensor, y: torch.Tensor, kind: str, batch: int, device: torch.device,
                   max_rows: int) -> tuple[float, int]:  # fmt: skip
    from skorch import NeuralNetRegressor

    net = NeuralNetRegressor(
        tabular_model(kind, X.shape[1]), criterion=nn.MSELoss, optimizer=torch.optim.Adam, lr=1e-3, max_epochs=1,
        batch_size=batch, train_split=None, iterator_train__shuffle=True, verbose=0, device=device.type,
    )  # fmt: skip
    Xs, ys = X[:max_rows], y[:max_rows]
    with quiet():
        return timed(lambda: net.fit(Xs, ys), device), len(Xs)


# --------------------------------------------------------------------- keras
def _keras_model(kind: str, features: int, loss: str, optimizer: Any) -> Any:
    import keras

    layers = [keras.Input((features,))]
    if kind == "mlp":
        layers += [keras.layers.Dense(64, activation="relu"), keras.layers.Dense(64, activation="relu")]
    layers.append(keras.layers.Dense(1))
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer, loss=loss)
    return model


def keras_tutorial(device: torch.device, epochs: int = 1000) -> float:
    import keras

    Xtr, ytr, Xte, yte = (t.cpu().numpy() for t in tutorial_data(torch.device("cpu")))
    keras.utils.set_random_seed(42)
    model = _keras_model("linear", 1, "mae", keras.optimizers.SGD(learning_rate=0.01))
    with quiet():
        return timed(
            lambda: model.fit(
                Xtr, ytr, batch_size=40, epochs=epochs, validation_data=(Xte, yte), verbose=0, shuffle=False
            ),
            device,
        )


def keras_tabular(X: torch.Tensor, y: torch.Tensor, kind: str, batch: int, device: torch.device,
                  max_rows: int) -> tuple[float, int]:  # fmt: skip
    import keras

    keras.utils.set_random_seed(1)
    model = _keras_model(kind, X.shape[1], "mse", keras.optimizers.Adam(learning_rate=1e-3))
    Xs, ys = X[:max_rows].numpy(), y[:max_rows].numpy()
    with quiet():
        return timed(lambda: model.fit(Xs, ys, batch_size=batch, epochs=1, shuffle=True, verbose=0), device), len(Xs)


TUTORIAL = {"lightning": lightning_tutorial, "skorch": skorch_tutorial, "keras": keras_tutorial}
TABULAR = {"lightning": lightning_tabular, "skorch": skorch_tabular, "keras": keras_tabular}
