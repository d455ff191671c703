"""Trainer.fit against a plain PyTorch loop written in the tests: the same parameters, bit for bit."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from tests.support import assert_same_params, plain_loop, regression_data, tutorial_data
from torchwork.core.errors import InputError, TrainingDiverged, UnknownNameError
from torchwork.evaluation.metrics import regression_metrics
from torchwork.models.tabular import MLP
from torchwork.models.tutorial import LinearRegressionModel
from torchwork.training.callbacks import Callback, EarlyStopping, Progress
from torchwork.training.trainer import Trainer

OPTIMIZERS = {
    "sgd": ({}, lambda p: torch.optim.SGD(p, lr=0.05)),
    "sgd-momentum": (
        {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    ),
    # Adam and AdamW on the CPU are torch's fused kernels by default (training.components.device_options)
    "adam": ({}, lambda p: torch.optim.Adam(p, lr=0.05, fused=True)),
    "adam-forloop": ({"fused": False}, lambda p: torch.optim.Adam(p, lr=0.05)),
    "adamw": ({"weight_decay": 0.01}, lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.01, fused=True)),
}


@pytest.mark.parametrize("batch_size", [None, 32, 100])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_fit_equals_plain_loop(opt, batch_size):
    X, y = regression_data()
    Xtr, ytr, Xv, yv = X[:200], y[:200], X[200:], y[200:]
    torch.manual_seed(1)
    model = MLP(3, hidden=(16,))
    reference = copy.deepcopy(model)
    options, make_opt = OPTIMIZERS[opt]
    name = opt.split("-")[0]
    trainer = Trainer(loss="mse", optimizer=name, lr=0.05, optimizer_options=options, epochs=5,
                      batch_size=batch_size, seed=7, device="cpu")  # fmt: skip
    history = trainer.fit(model, (Xtr, ytr), (Xv, yv))
    train_ref, val_ref = plain_loop(reference, Xtr, ytr, Xv, yv, make_opt, nn.MSELoss(), 5, batch_size, seed=7)
    assert_same_params(model, reference)
    assert history["val_loss"] == val_ref  # same float32 values, read back exactly
    np.testing.assert_allclose(history["train_loss"], train_ref, rtol=1e-6)


def test_dropout_clipping_and_scheduler_equal_plain_loop():
    X, y = regression_data(300)
    torch.manual_seed(3)
    model = MLP(3, hidden=(32, 32), dropout=0.2)
    reference = copy.deepcopy(model)
    trainer = Trainer(loss="huber", optimizer="adam", lr=0.01, epochs=6, batch_size=64, seed=11,
                      clip_grad=0.5, scheduler="step", scheduler_options={"step_size": 2, "gamma": 0.5},
                      device="cpu")  # fmt: skip
    trainer.fit(model, (X[:250], y[:250]), (X[250:], y[250:]))
    torch.manual_seed(11)  # the trainer seeds torch (dropout's generator) with its seed
    plain_loop(reference, X[:250], y[:250], X[250:], y[250:], lambda p: torch.optim.Adam(p, lr=0.01, fused=True),
               nn.HuberLoss(), 6, 64, seed=11, clip=0.5,
               make_scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5))  # fmt: skip
    assert_same_params(model, reference)


def test_trains_any_module_and_reaches_least_squares():
    class Affine(nn.Module):  # a user's own module, not a torchwork one
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3, 1))
            self.b = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x @ self.w + self.b

    X, y = regression_data(500, noise=0.05)
    model = Affine()
    Trainer(loss="mse", optimizer="adam", lr=0.05, epochs=400, device="cpu").fit(model, (X, y))
    A = torch.cat([X, torch.ones(len(X), 1)], 1).double()
    solution = torch.linalg.lstsq(A, y.double()).solution
    np.testing.assert_allclose(model.w.detach().double().numpy(), solution[:3].numpy(), atol=2e-3)
    np.testing.assert_allclose(model.b.detach().double().numpy(), solution[3].numpy(), atol=2e-3)


def test_history_interval_and_columns():
    X, y = regression_data(50)
    trainer = Trainer(loss="mae", optimizer="sgd", lr=0.01, epochs=25, log_every=10, device="cpu", seed=0)
    history = trainer.fit(nn.Linear(3, 1), (X[:40], y[:40]), (X[40:], y[40:]))
    assert history["epoch"] == [1, 11, 21]  # counted from 1: the first epoch and every 10th after it
    assert all(type(e) is int for e in history["epoch"])
    assert history.columns == ["epoch", "train_loss", "val_loss", "lr", "seconds"]
    assert all(v == 0.01 for v in history["lr"])
    assert "epoch,train_loss,val_loss,lr,seconds" in history.to_csv()


def test_early_stopping_stops_and_restores_the_best_weights():
    X, y = regression_data(120)
    seen = []

    class Spy(Callback):
        def on_epoch_end(self, fit, logs):
            seen.append((logs.val_loss.item(), copy.deepcopy(fit.model.state_dict())))

    # A learning rate this high makes the validation loss go up after a few epochs.
    trainer = Trainer(loss="mse", optimizer="sgd", lr=0.9, epochs=200, callbacks=[EarlyStopping(5), Spy()],
                      device="cpu", seed=0)  # fmt: skip
    model = nn.Linear(3, 1)
    history = trainer.fit(model, (X[:100], y[:100]), (X[100:], y[100:]))
    best = min(range(len(seen)), key=lambda i: seen[i][0])
    assert len(history) == best + 6 < 200  # stopped 5 epochs after the best one
    for k, v in model.state_dict().items():
        assert torch.equal(v, seen[best][1][k])


def test_early_stopping_restores_best_weights_even_without_stopping():
    X, y = regression_data(120)
    es = EarlyStopping(patience=1000)
    model = nn.Linear(3, 1)
    Trainer(loss="mse", optimizer="sgd", lr=0.5, epochs=30, callbacks=[es], device="cpu", seed=0).fit(
        model, (X[:100], y[:100]), (X[100:], y[100:])
    )
    assert es.best_weights is not None
    for k, v in model.state_dict().items():
        assert torch.equal(v, es.best_weights[k])


def test_non_finite_loss_names_epoch_and_batch():
    X, y = regression_data(64)
    y[40] = float("nan")  # row 40 is in the third batch of 16 of the first epoch
    trainer = Trainer(loss="mse", optimizer="sgd", lr=0.01, epochs=3, batch_size=16, shuffle=False, device="cpu")
    with pytest.raises(TrainingDiverged, match=r"the training loss became nan at epoch 1, batch 3$") as caught:
        trainer.fit(nn.Linear(3, 1), (X, y))
    assert (caught.value.epoch, caught.value.batch, caught.value.quantity) == (1, 3, "training loss")
    assert math.isnan(caught.value.value) and caught.value.exit_code == 1


def test_exploding_training_is_caught():
    X, y = regression_data(64)
    trainer = Trainer(loss="mse", optimizer="sgd", lr=1e6, epochs=50, device="cpu", seed=0)
    with pytest.raises(TrainingDiverged, match=r"training diverged"):
        trainer.fit(nn.Linear(3, 1), (X * 1e3, y))


def test_shape_mismatch_is_an_error_not_a_broadcast():
    X, y = regression_data(32)
    with pytest.raises(InputError, match=r"output has shape \(32, 1\) but the targets have \(32,\)"):
        Trainer(loss="mse", epochs=1, device="cpu").fit(nn.Linear(3, 1), (X, y[:, 0]))


def test_predict_and_evaluate():
    X, y = regression_data(100)
    model = nn.Linear(3, 1)
    trainer = Trainer(device="cpu")
    preds = trainer.predict(model, X)
    with torch.inference_mode():
        assert torch.equal(preds, model(X))
    metrics = trainer.evaluate(model, X, y)
    err = preds.double() - y.double()
    assert math.isclose(metrics["mae"], err.abs().mean().item(), rel_tol=1e-12)
    assert math.isclose(metrics["rmse"], err.pow(2).mean().sqrt().item(), rel_tol=1e-12)
    # Batched prediction gives the same rows.
    assert torch.allclose(trainer.predict(model, X, batch_size=7), preds)


def test_metrics_match_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    t, p = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    m = regression_metrics(t, p)
    assert math.isclose(m["mae"], sklearn_metrics.mean_absolute_error(t, p))
    assert math.isclose(m["mse"], sklearn_metrics.mean_squared_error(t, p))
    assert math.isclose(m["r2"], sklearn_metrics.r2_score(t, p))


def test_options_are_checked_when_the_trainer_is_made():
    """Python users get Python's words, at construction, before any data is touched."""
    with pytest.raises(UnknownNameError, match=r"^Trainer\(loss=...\): unknown loss 'hinge'; valid names: l1 \(mae"):
        Trainer(loss="hinge")
    with pytest.raises(
        UnknownNameError, match=r"^Trainer\(optimizer=...\): unknown optimizer 'adamm'; valid names: sgd"
    ):
        Trainer(optimizer="adamm")
    with pytest.raises(InputError, match=r"optimizer_options=...\): optimizer 'sgd' takes no option 'betas'"):
        Trainer(optimizer="sgd", optimizer_options={"betas": (0.9, 0.9)})
    with pytest.raises(InputError, match=r"^Trainer\(epochs=...\): must be >= 1, got 0$"):
        Trainer(epochs=0)
    with pytest.raises(InputError, match=r"^Trainer\(lr=...\): must be > 0"):
        Trainer(lr=-1)
    with pytest.raises(InputError, match=r"^Trainer\(precision=...\): expected one of 32, bf16-mixed"):
        Trainer(precision="fp8")
    with pytest.raises(InputError, match=r"scheduler_options=...\).step_size: must be >= 1"):
        Trainer(scheduler="step", scheduler_options={"step_size": 0})
    with pytest.raises(InputError, match=r"^Trainer\(engine=...\): expected one of auto, eager, cuda_graphs"):
        Trainer(engine="warp")


def test_same_seed_same_run():
    X, y = regression_data(200)

    def run():
        torch.manual_seed(0)
        model = MLP(3, hidden=(8,), dropout=0.1)
        Trainer(loss="mse", optimizer="adam", lr=0.01, epochs=3, batch_size=16, seed=5, device="cpu").fit(model, (X, y))
        return model

    assert_same_params(run(), run())


def test_tutorial_model_loop_matches_by_hand():
    """The tutorial's own model and settings, 100 epochs: identical to the hand-written loop."""
    Xtr, ytr, Xte, yte = tutorial_data()
    torch.manual_seed(42)
    model = LinearRegressionModel()
    reference = copy.deepcopy(model)
    Trainer(loss="l1", optimizer="sgd", lr=0.01, epochs=100, device="cpu").fit(model, (Xtr, ytr), (Xte, yte))
    plain_loop(reference, Xtr, ytr, Xte, yte, lambda p: torch.optim.SGD(p, lr=0.01), nn.L1Loss(), 100)
    assert_same_params(model, reference)


def test_progress_bar_on_a_terminal_and_lines_elsewhere():
    import io

    X, y = regression_data(64)
    bar, lines = io.StringIO(), io.StringIO()
    Trainer(loss="mse", epochs=3, device="cpu", callbacks=[Progress(3, file=bar, interactive=True)]).fit(
        nn.Linear(3, 1), (X, y), (X, y)
    )
    every = Progress(3, file=lines, interactive=False, interval=0)
    Trainer(loss="mse", epochs=3, device="cpu", callbacks=[every]).fit(nn.Linear(3, 1), (X, y), (X, y))
    assert "3/3" in bar.getvalue() and "epoch" in bar.getvalue() and "\r" in bar.getvalue()
    assert [line.split(" | ")[0] for line in lines.getvalue().splitlines()] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


def test_progress_writes_every_epoch_at_most_ten_times_a_second_whatever_the_epoch_rate(monkeypatch):
    """Off a terminal every epoch has its line (issue 18, item 29), written in batches: the first
    epoch, then the epochs of each 0.1 s together, and what is left when the fit ends."""
    import io

    from torchwork.training import callbacks

    class Counted(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            super().flush()

    clock = iter(i * 0.001 for i in range(10**6))  # every epoch takes 1 ms of this clock
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: next(clock))
    X, y = regression_data(16)
    out = Counted()
    Trainer(loss="mse", epochs=1000, device="cpu", callbacks=[Progress(1000, file=out, interactive=False)]).fit(
        nn.Linear(3, 1), (X, y)
    )
    epochs = [int(line.split(" | ")[0].split()[1].split("/")[0]) for line in out.getvalue().splitlines()]
    assert epochs == list(range(1, 1001))
    assert 10 <= out.flushes <= 12  # 1 s of this clock: the first epoch, one write per 0.1 s, and the rest


def test_datasets_train_as_tensors_do_and_float64_models_stay_float64():
    """A Dataset goes through a DataLoader in the same order as tensors: the same parameters.

    Its batches are cast to the model's dtype; a float64 model keeps float64 losses.
    """
    X, y = regression_data(64)
    torch.manual_seed(0)
    from_dataset, from_tensors = nn.Linear(3, 1), nn.Linear(3, 1)
    from_tensors.load_state_dict(from_dataset.state_dict())
    kwargs = {"loss": "mse", "optimizer": "adam", "lr": 0.01, "epochs": 3, "batch_size": 16, "seed": 4, "device": "cpu"}
    Trainer(**kwargs).fit(from_dataset, torch.utils.data.TensorDataset(X.double(), y.double()))
    Trainer(**kwargs).fit(from_tensors, (X, y))
    assert_same_params(from_dataset, from_tensors)

    X64, y64 = X.double(), y.double()
    model64 = nn.Linear(3, 1).double()
    reference = copy.deepcopy(model64)
    history = Trainer(loss="mse", optimizer="sgd", lr=0.01, epochs=1, batch_size=16, shuffle=False,
                      device="cpu").fit(model64, (X64, y64))  # fmt: skip
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.01)
    losses = []
    for i in range(0, 64, 16):
        loss = nn.functional.mse_loss(reference(X64[i : i + 16]), y64[i : i + 16])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert history["train_loss"][0] == pytest.approx(sum(losses) / 4, rel=1e-14)  # not float32-rounded
    assert_same_params(model64, reference)


def test_a_finished_fit_leaves_no_reference_cycle_behind():
    """Once fit returns and its trainer goes, the fit (batches, engine, buffers; a DistributedDataParallel
    in a process group) is freed by reference counting, not left for the garbage collector: the steps
    the trainer wires into a fit (which hold the trainer) are released when it ends."""
    import gc

    from torchwork.training.loop import Fit

    X, y = regression_data(n=120, d=3, seed=1)
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            progress = Progress(3, file=io.StringIO(), interactive=False)
            trainer = Trainer(loss="mse", optimizer="adam", epochs=3, batch_size=16, seed=0,
                              callbacks=[EarlyStopping(2), progress])  # fmt: skip
            trainer.fit(nn.Linear(3, 1), (X[:100], y[:100]), (X[100:], y[100:]))
        del trainer
        alive = sum(type(o) is Fit for o in gc.get_objects())
    finally:
        gc.enable()
    assert alive <= 1  # one may be held by a cycle inside torch (its first optimizer's frames); never one per fit


# --------------------------------------------------- the step is a method you can override
class DictModel(nn.Module):
    """A model that takes a dict and returns its prediction and an auxiliary loss."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 1), nn.Linear(1, 1)

    def forward(self, inputs):
        pred = self.a(inputs["x"]) + self.b(inputs["z"])
        return pred, 0.1 * self.a.weight.pow(2).sum()


class DictTrainer(Trainer):
    def training_step(self, batch):
        pred, aux = self.model({"x": batch["x"], "z": batch["z"]})
        return self.loss_fn(pred, batch["y"]) + aux


def test_an_overridden_step_trains_a_dict_model_with_an_auxiliary_loss_as_a_plain_loop_does():
    from tests.support import documented_order

    g = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(40, 2, generator=g), "z": torch.randn(40, 1, generator=g)}
    data["y"] = data["x"] @ torch.tensor([[0.5], [-1.0]]) + 2 * data["z"]
    torch.manual_seed(0)
    model = DictModel()
    by_hand = copy.deepcopy(model)
    history = DictTrainer(loss="mse", optimizer="sgd", lr=0.05, epochs=5, batch_size=16, seed=3,
                          device="cpu").fit(model, data)  # fmt: skip
    optimizer = torch.optim.SGD(by_hand.parameters(), lr=0.05)
    for epoch in range(5):
        order = documented_order(40, 3, epoch)
        for i in range(0, 40, 16):
            idx = order[i : i + 16]
            pred, aux = by_hand({"x": data["x"][idx], "z": data["z"][idx]})
            loss = nn.functional.mse_loss(pred, data["y"][idx]) + aux
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert_same_params(model, by_hand)
    assert len(history) == 5 and all(math.isfinite(v) for v in history["train_loss"])


def test_a_fit_leaves_the_callers_random_generators_as_they_were():
    import random

    X, y = regression_data(64)
    model = MLP(3, hidden=(8,), dropout=0.5)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state())
    Trainer(loss="mse", optimizer="adam", epochs=3, batch_size=16, seed=1, device="cpu").fit(model, (X, y))
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.random.get_rng_state(), before[2])


class ThreadsSeen(Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, fit, logs):
        self.seen.append((torch.get_num_threads(), fit.threads))


@pytest.mark.parametrize(
    ("rows", "width", "threads", "expected"),
    [(64, 16, None, 1), (4096, 2048, None, 2), (64, 16, 2, 2)],
    ids=["small work: one thread", "large work: the caller's threads", "threads given"],
)
def test_training_threads_are_sized_to_the_work_and_the_callers_count_is_restored(rows, width, threads, expected):
    X, y = regression_data(rows)
    model = MLP(3, hidden=(width, width))  # 4096 rows x ~4.2M parameters: over two threads' worth
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        seen = ThreadsSeen()
        Trainer(loss="mse", optimizer="adam", epochs=1, batch_size=rows, seed=0, device="cpu", threads=threads,
                callbacks=[seen]).fit(model, (X, y))  # fmt: skip
        assert seen.seen == [(expected, expected)]
        assert torch.get_num_threads() == 2  # as the caller had it
    finally:
        torch.set_num_threads(previous)


def test_threads_for_gives_one_thread_per_share_of_work_within_the_limit():
    from torchwork.core.runtime import WORK_PER_THREAD, threads_for

    assert threads_for(64 * 5000, 16) == 1
    assert threads_for(3 * WORK_PER_THREAD, 16) == 3
    assert threads_for(100 * WORK_PER_THREAD, 4) == 4
    assert threads_for(0, 4) == 1


class Counter(Callback):
    stateful = True

    def __init__(self):
        self.seen = 0

    def on_epoch_end(self, fit, logs):
        self.seen += 1

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


def test_resuming_without_the_state_a_stateful_callback_needs_is_one_line():
    X, y = regression_data(64)
    first = Trainer(loss="mse", epochs=2, device="cpu", seed=0)
    first.fit(nn.Linear(3, 1), (X, y))
    state = first.last_fit.state_dict()
    with pytest.raises(InputError) as info:
        Trainer(loss="mse", epochs=4, device="cpu", seed=0, callbacks=[Counter()]).fit(
            nn.Linear(3, 1), (X, y), resume=state
        )
    assert "Counter" in str(info.value) and "\n" not in str(info.value)
