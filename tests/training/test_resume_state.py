"""What a checkpoint holds is enough to continue exactly, in every path of the Trainer.

Each test interrupts a fit right after a checkpoint (as a SIGKILL there would), resumes from
that checkpoint, and compares with a fit that was never interrupted.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from tests.support import KillAfter, Killed, assert_same_params, regression_data, tutorial_data
from torchwork.core.errors import TrainingDiverged
from torchwork.files.checkpoint import Checkpointer, load_checkpoint
from torchwork.models.tabular import MLP
from torchwork.models.tutorial import LinearRegressionModel
from torchwork.training.callbacks import EarlyStopping
from torchwork.training.engines import CudaGraphEngine, EagerGraph
from torchwork.training.trainer import Trainer


def interrupted_then_resumed(make_model, data, kwargs, ckpt, kill, resume_kwargs=None):
    torch.manual_seed(0)
    model = make_model()
    full, part = copy.deepcopy(model), copy.deepcopy(model)
    full_history = Trainer(**kwargs).fit(full, *data)
    options, extra = dict(kwargs), list(kwargs.get("callbacks", []))  # early stopping, say: in every fit
    with pytest.raises(Killed):
        Trainer(**{**options, "callbacks": [*extra, kill]}).fit(part, *data)
    state, _ = load_checkpoint(ckpt)
    resumed = copy.deepcopy(model)
    options.update(resume_kwargs or {})
    history = Trainer(**{**options, "callbacks": [*extra, Checkpointer(ckpt)]}).fit(resumed, *data, resume=state)
    return full, full_history, resumed, history


def test_early_stopping_decision_is_in_the_checkpoint(tmp_path):
    X, y = regression_data(120)
    kwargs = {"loss": "mse", "optimizer": "sgd", "lr": 0.9, "epochs": 50, "callbacks": [EarlyStopping(3)], "seed": 0,
              "device": "cpu"}  # fmt: skip
    probe = Trainer(**kwargs)
    torch.manual_seed(0)  # the model interrupted_then_resumed builds
    probe.fit(nn.Linear(3, 1), (X[:100], y[:100]), (X[100:], y[100:]))
    last = probe.last_fit.state.epoch  # early stopping ended the fit here
    ckpt = tmp_path / "c.safetensors"
    kill = KillAfter(ckpt, at_epoch=last, every_epochs=1)
    data = ((X[:100], y[:100]), (X[100:], y[100:]))
    full, full_history, resumed, history = interrupted_then_resumed(lambda: nn.Linear(3, 1), data, kwargs, ckpt, kill)
    assert len(history) == len(full_history) == last
    assert_same_params(resumed, full)


def test_full_batch_graph_path_resumes_after_its_step(tmp_path):
    """Interrupted after the step of an epoch but before its testing loop (full batch, graphs)."""
    Xtr, ytr, Xte, yte = tutorial_data()
    kwargs = {"loss": "l1", "optimizer": "sgd", "lr": 0.01, "epochs": 12, "device": "cpu",
              "engine": CudaGraphEngine(EagerGraph)}  # fmt: skip
    ckpt = tmp_path / "c.safetensors"
    kill = KillAfter(ckpt, at_step=7, every_steps=1)
    data = ((Xtr, ytr), (Xte, yte))
    full, full_history, resumed, history = interrupted_then_resumed(LinearRegressionModel, data, kwargs, ckpt, kill)
    assert_same_params(resumed, full)
    assert history["val_loss"] == full_history["val_loss"]


def test_a_checkpoint_with_gpu_optimizer_flags_resumes_on_the_cpu(tmp_path):
    X, y = regression_data(64)
    kwargs = {"loss": "mse", "optimizer": "adam", "epochs": 4, "batch_size": 16, "seed": 1, "device": "cpu"}
    ckpt = tmp_path / "c.safetensors"
    torch.manual_seed(0)
    model = MLP(3, hidden=(8,))
    full = copy.deepcopy(model)
    Trainer(**kwargs).fit(full, (X, y))
    part = copy.deepcopy(model)
    with pytest.raises(Killed):
        Trainer(**kwargs, callbacks=[KillAfter(ckpt, at_epoch=2, every_epochs=1)]).fit(part, (X, y))
    state, _ = load_checkpoint(ckpt)
    for group in state["optimizer"]["param_groups"]:  # as a CUDA-graph fit on a GPU saves them
        group["capturable"], group["foreach"] = True, True
    resumed = copy.deepcopy(model)
    Trainer(**kwargs).fit(resumed, (X, y), resume=state)
    assert_same_params(resumed, full)


def test_an_early_stopping_object_used_twice_starts_afresh():
    X, y = regression_data(120)
    es = EarlyStopping(patience=3)
    trainer = Trainer(loss="mse", optimizer="sgd", lr=0.05, epochs=20, callbacks=[es], device="cpu", seed=0)
    trainer.fit(nn.Linear(3, 1), (X[:100], y[:100]), (X[100:], y[100:]))
    first_best = es.best
    history = trainer.fit(nn.Linear(3, 1), (X[:100], y[:100]), (X[100:], y[100:]))
    assert len(history) > 3 and es.best_epoch >= 1 and first_best > 0


def test_learning_rate_column_after_a_mid_epoch_resume(tmp_path):
    X, y = regression_data(200)
    kwargs = {"loss": "mse", "optimizer": "adam", "lr": 0.01, "epochs": 3, "batch_size": 16, "seed": 2,
              "scheduler": "onecycle", "device": "cpu"}  # fmt: skip
    ckpt = tmp_path / "c.safetensors"
    kill = KillAfter(ckpt, at_step=17, every_steps=1)  # 13 batches an epoch: inside epoch 1
    full, full_history, resumed, history = interrupted_then_resumed(
        lambda: MLP(3, hidden=(8,)), ((X, y),), kwargs, ckpt, kill
    )
    assert_same_params(resumed, full)
    assert history["lr"] == full_history["lr"]


def test_dataset_input_with_dropout_resumes_exactly(tmp_path):
    X, y = regression_data(96)
    dataset = torch.utils.data.TensorDataset(X, y)
    kwargs = {"loss": "mse", "optimizer": "adam", "epochs": 3, "batch_size": 16, "seed": 3, "device": "cpu"}
    ckpt = tmp_path / "c.safetensors"
    kill = KillAfter(ckpt, at_step=8, every_steps=1)
    full, _, resumed, _ = interrupted_then_resumed(lambda: MLP(3, hidden=(16,), dropout=0.3), (dataset,), kwargs,
                                                   ckpt, kill)  # fmt: skip
    assert_same_params(resumed, full)


def test_a_step_checkpoint_never_stores_a_non_finite_loss(tmp_path):
    X, y = regression_data(64)
    y[5] = float("inf")  # an L1 loss is infinite for that batch while every weight stays finite
    ckpt = tmp_path / "c.safetensors"
    trainer = Trainer(loss="l1", optimizer="sgd", lr=1e-9, epochs=2, batch_size=16, shuffle=False, device="cpu",
                      callbacks=[Checkpointer(ckpt, every_steps=2)])  # fmt: skip
    with pytest.raises(TrainingDiverged, match=r"inf at epoch 1, batch 1; no checkpoint was written$"):
        trainer.fit(nn.Linear(3, 1), (X, y))
    assert not ckpt.exists()


def test_the_history_comes_back_from_a_checkpoint_row_for_row(tmp_path):
    """Rows with and without a validation loss, every value a float but the epoch (an int): as the fit recorded
    them (the checkpoint stores them as one tensor of columns)."""
    X, y = regression_data(120)
    ckpt = tmp_path / "c.safetensors"
    trainer = Trainer(loss="mse", optimizer="adam", epochs=5, seed=0, device="cpu", callbacks=[Checkpointer(ckpt, 5)])
    history = trainer.fit(nn.Linear(3, 1), (X[:100], y[:100]), (X[100:], y[100:]))
    state, _ = load_checkpoint(ckpt)
    assert state["history"] == history.rows and len(history) == 5
    assert all(type(row["epoch"]) is int and type(row["val_loss"]) is float for row in state["history"])
    no_val = Trainer(loss="mse", optimizer="adam", epochs=3, seed=0, device="cpu", callbacks=[Checkpointer(ckpt, 3)])
    history = no_val.fit(nn.Linear(3, 1), (X, y))
    state, _ = load_checkpoint(ckpt)
    assert state["history"] == history.rows and all("val_loss" not in row for row in state["history"])


def test_early_stopping_resumes_whatever_other_callbacks_the_two_fits_had(tmp_path):
    """Callback state is keyed by name, not position: a fit with the progress display,
    resumed without it (``-q``), keeps early stopping's counters and best weights."""
    from torchwork.training.callbacks import Progress

    X, y = regression_data(120)
    kwargs = {"loss": "mse", "optimizer": "adam", "lr": 0.05, "epochs": 30, "seed": 0, "device": "cpu",
              "batch_size": 32}  # fmt: skip
    data = ((X[:100], y[:100]), (X[100:], y[100:]))
    torch.manual_seed(0)
    model = MLP(3, hidden=(16,))
    full, part, resumed = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    full_history = Trainer(**kwargs, callbacks=[EarlyStopping(4)]).fit(full, *data)
    ckpt = tmp_path / "c.safetensors"
    quiet = io.StringIO()
    with pytest.raises(Killed):
        Trainer(**kwargs, callbacks=[Progress(30, file=quiet), EarlyStopping(4), KillAfter(ckpt, at_epoch=6,
                every_epochs=1)]).fit(part, *data)  # fmt: skip
    state, _ = load_checkpoint(ckpt)
    history = Trainer(**kwargs, callbacks=[EarlyStopping(4), Checkpointer(ckpt)]).fit(resumed, *data, resume=state)
    assert history.best_epoch == full_history.best_epoch is not None
    assert history["val_loss"] == full_history["val_loss"]
    assert_same_params(resumed, full)
