"""The CUDA-graph engine.

On the CPU, :class:`EagerGraph` stands in for a CUDA graph (its replay runs the captured
Python again), so the engine's bookkeeping (warm-up, steps per replay, index buffers, loss
slots, partial batches, checkpoints, fallbacks) is checked bit for bit against a plain
loop on every machine. Tests marked ``cuda`` run the real thing and skip without a GPU.
"""

from __future__ import annotations

import copy
import logging
from typing import ClassVar

import pytest
import torch
from torch import nn

from tests.support import assert_same_params, plain_loop, regression_data, tutorial_data
from torchwork.files.checkpoint import Checkpointer, load_checkpoint
from torchwork.models.tabular import MLP
from torchwork.models.tutorial import LinearRegressionModel
from torchwork.training.engines import CudaGraphEngine, EagerGraph, unsupported
from torchwork.training.trainer import Trainer


class CountingGraph(EagerGraph):
    made: ClassVar[list[CountingGraph]] = []

    def __init__(self, device, stream=None):
        super().__init__(device, stream)
        CountingGraph.made.append(self)


class FailingGraph(EagerGraph):
    def capture(self, body):
        raise RuntimeError("operation not permitted when stream is capturing")


@pytest.fixture(autouse=True)
def _reset():
    CountingGraph.made = []


def graphs(graph=CountingGraph) -> CudaGraphEngine:
    return CudaGraphEngine(graph=graph)


@pytest.mark.parametrize(("rows", "batch"), [(200, 32), (256, 16), (100, 100)])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_graphed_minibatches_equal_plain_loop(rows, batch, optimizer):
    X, y = regression_data(rows)
    torch.manual_seed(0)
    model = MLP(3, hidden=(16,), dropout=0.1)
    reference = copy.deepcopy(model)
    trainer = Trainer(loss="mse", optimizer=optimizer, lr=0.01, epochs=5, batch_size=batch, seed=4, device="cpu",
                      clip_grad=1.0, engine=graphs())  # fmt: skip
    history = trainer.fit(model, (X, y), (X[:20], y[:20]))
    make = {  # Adam on the CPU is torch's fused kernel by default
        "sgd": lambda p: torch.optim.SGD(p, lr=0.01),
        "adam": lambda p: torch.optim.Adam(p, lr=0.01, fused=True),
    }[optimizer]
    torch.manual_seed(4)
    ref_batch = None if batch >= rows else batch  # one full batch keeps the data's order, as documented
    _, val_ref = plain_loop(reference, X, y, X[:20], y[:20], make, nn.MSELoss(), 5, ref_batch, seed=4, clip=1.0)
    assert_same_params(model, reference)
    assert history["val_loss"] == val_ref
    assert sum(g.replays for g in CountingGraph.made) > 0  # the graph path ran
    assert trainer.last_fit.engine == "cuda_graphs"


def test_graphed_full_batch_tutorial_equals_plain_loop():
    Xtr, ytr, Xte, yte = tutorial_data()
    torch.manual_seed(42)
    model = LinearRegressionModel()
    reference = copy.deepcopy(model)
    trainer = Trainer(loss="l1", optimizer="sgd", lr=0.01, epochs=100, log_every=10, device="cpu", engine=graphs())
    history = trainer.fit(model, (Xtr, ytr), (Xte, yte))
    train_ref, val_ref = plain_loop(reference, Xtr, ytr, Xte, yte, lambda p: torch.optim.SGD(p, lr=0.01),
                                    nn.L1Loss(), 100)  # fmt: skip
    assert_same_params(model, reference)
    assert history["train_loss"] == train_ref[::10] and history["val_loss"] == val_ref[::10]
    (graph,) = CountingGraph.made
    assert graph.replays >= 90  # after a short warm-up, each epoch (step and testing loop) is one replay


def test_failed_capture_falls_back_with_a_note(caplog):
    X, y = regression_data(128)
    torch.manual_seed(0)
    a = MLP(3, hidden=(8,))
    b = copy.deepcopy(a)
    with caplog.at_level(logging.WARNING, logger="torchwork"):
        t1 = Trainer(loss="mse", optimizer="adam", epochs=2, batch_size=16, seed=0, device="cpu",
                     engine=graphs(FailingGraph))  # fmt: skip
        t1.fit(a, (X, y))
    Trainer(loss="mse", optimizer="adam", epochs=2, batch_size=16, seed=0, device="cpu").fit(b, (X, y))
    assert_same_params(a, b)
    assert t1.last_fit.notes == ["CUDA graphs off, training eagerly: capture failed (RuntimeError: operation not "
                                 "permitted when stream is capturing)"]  # fmt: skip
    assert "CUDA graphs off" in caplog.text


PLAIN = {"in_memory": True, "compiled": False, "scheduler": None, "optimizer": "adam", "optimizer_options": {}}


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ({"scheduler": "cosine"}, "a learning-rate scheduler changes the rate between steps"),
        ({"compiled": True}, "torch.compile is on"),
        ({"optimizer": lambda p, lr: torch.optim.SGD(p, lr=lr)}, "not one torchwork knows to be capturable"),
        ({"optimizer": "lbfgs"}, "not one torchwork knows to be capturable"),
        ({"optimizer_options": {"capturable": False}}, "asked for capturable=False"),
        ({"in_memory": False}, "comes through a DataLoader"),
    ],
)
def test_unsupported_options_say_why(option, reason):
    assert unsupported(**PLAIN) is None  # without the option, graphs would be used
    assert reason in unsupported(**{**PLAIN, **option})


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [({"scheduler": "cosine"}, "scheduler"), ({"optimizer": "lbfgs", "batch_size": None}, "capturable")],
)
def test_a_fit_that_cannot_use_graphs_trains_eagerly_and_says_why(kwargs, reason):
    X, y = regression_data(64)
    options = {"loss": "mse", "optimizer": "adam", "epochs": 2, "batch_size": 16, "device": "cpu", **kwargs}
    trainer = Trainer(**options, engine=graphs())
    trainer.fit(nn.Linear(3, 1), (X, y))
    assert trainer.last_fit.engine == "eager" and not CountingGraph.made
    assert len(trainer.last_fit.notes) == 1 and reason in trainer.last_fit.notes[0]


def test_step_checkpoints_and_resume_under_graphs(tmp_path):
    """Checkpoints every 3 steps need every step boundary: one step per replay; resume is exact."""
    X, y = regression_data(150)
    torch.manual_seed(0)
    model = MLP(3, hidden=(8,), dropout=0.2)
    full, partial = copy.deepcopy(model), copy.deepcopy(model)
    kwargs = {"loss": "mse", "optimizer": "adam", "epochs": 4, "batch_size": 32, "seed": 1, "device": "cpu"}
    Trainer(**kwargs, engine=graphs()).fit(full, (X, y))

    ckpt = tmp_path / "c.safetensors"

    class StopAt(Checkpointer):
        def on_step_end(self, fit):
            super().on_step_end(fit)
            if fit.state.step == 9:
                self.close()
                raise KeyboardInterrupt  # as if killed right after the checkpoint at step 9

    with pytest.raises(KeyboardInterrupt):
        Trainer(**kwargs, engine=graphs(), callbacks=[StopAt(ckpt, every_steps=3)]).fit(partial, (X, y))
    state, _ = load_checkpoint(ckpt)
    assert state["fit"]["step"] == 9 and state["fit"]["epoch"] == 1 and state["fit"]["batch"] == 4
    resumed = copy.deepcopy(model)
    Trainer(**kwargs, engine=graphs(), callbacks=[Checkpointer(ckpt, every_steps=3)]).fit(resumed, (X, y), resume=state)
    assert_same_params(resumed, full)


def test_replays_stop_at_checkpoint_boundaries(tmp_path):
    X, y = regression_data(40 * 16 + 7)  # 40 full batches of 16, and a partial one
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    reference = copy.deepcopy(model)
    seen: list[int] = []

    class Every5(Checkpointer):
        def on_step_end(self, fit):
            seen.append(fit.state.step)
            super().on_step_end(fit)

    kwargs = {"loss": "mse", "optimizer": "adam", "epochs": 2, "batch_size": 16, "seed": 2, "device": "cpu"}
    engine = graphs()
    Trainer(**kwargs, engine=engine, callbacks=[Every5(tmp_path / "c.safetensors", every_steps=5)]).fit(model, (X, y))
    Trainer(**kwargs).fit(reference, (X, y))
    assert_same_params(model, reference)
    assert set(engine.graphs) == {("steps", 16), ("steps", 1)}
    assert seen == list(range(5, 83, 5))  # called exactly at every 5th step, each a replay boundary


# ----------------------------------------------------------------- on a GPU
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def max_rel_diff(a: nn.Module, b: nn.Module) -> float:
    worst = 0.0
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        worst = max(worst, ((p.float() - q.float()).norm() / (q.float().norm() + 1e-12)).item())
    return worst


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_cuda_graphs_match_plain_loop_on_gpu(optimizer):
    X, y = regression_data(4096 * 4 + 100)
    torch.manual_seed(0)
    model = MLP(3, hidden=(64, 64))
    reference = copy.deepcopy(model).cuda()
    trainer = Trainer(loss="mse", optimizer=optimizer, lr=1e-3, epochs=3, batch_size=512, seed=3, device="cuda")
    trainer.fit(model, (X, y), (X[:500], y[:500]))
    assert trainer.last_fit.engine == "cuda_graphs" and not trainer.last_fit.notes
    # The trainer runs Adam with capturable=True on CUDA (its step count stays on the GPU): the
    # same arithmetic as the plain loop's, in another order, so float tolerance, not bits.
    options = {} if optimizer == "sgd" else {"capturable": True}
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    Xc, yc = X.cuda(), y.cuda()
    plain_loop(
        reference, Xc, yc, Xc[:500], yc[:500], lambda p: cls(p, lr=1e-3, **options), nn.MSELoss(), 3, 512, seed=3
    )
    assert max_rel_diff(model, reference) < 1e-5
    default = copy.deepcopy(model)  # and against the default (non-capturable) optimizer
    torch.manual_seed(0)
    default.load_state_dict(MLP(3, hidden=(64, 64)).state_dict())
    default.cuda()
    plain_loop(default, Xc, yc, Xc[:500], yc[:500], lambda p: cls(p, lr=1e-3), nn.MSELoss(), 3, 512, seed=3)
    assert max_rel_diff(model, default) < 1e-3


@pytest.mark.cuda
@cuda
def test_cuda_graph_tutorial_on_gpu():
    Xtr, ytr, Xte, yte = tutorial_data()
    torch.manual_seed(42)
    model = LinearRegressionModel()
    reference = copy.deepcopy(model)
    trainer = Trainer(loss="l1", optimizer="sgd", lr=0.01, epochs=1000, log_every=10, device="cuda")
    history = trainer.fit(model, (Xtr, ytr), (Xte, yte))
    assert trainer.last_fit.engine == "cuda_graphs"
    plain_loop(reference, Xtr, ytr, Xte, yte, lambda p: torch.optim.SGD(p, lr=0.01), nn.L1Loss(), 1000)
    # L1's gradient is a sign: a residual at zero may round either way on another device.
    assert max_rel_diff(model.cpu(), reference) < 5e-4
    assert len(history) == 100


@pytest.mark.cuda
@cuda
def test_uncapturable_model_falls_back_on_gpu():
    class Syncs(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def forward(self, x):
            if x.sum().item() > 1e9:  # a host sync: cannot be captured
                return x[:, :1]
            return self.lin(x)

    X, y = regression_data(1024)
    torch.manual_seed(0)
    model = Syncs()
    trainer = Trainer(loss="mse", optimizer="adam", epochs=2, batch_size=64, seed=0, device="cuda")
    trainer.fit(model, (X, y))
    assert trainer.last_fit.notes and "capture failed" in trainer.last_fit.notes[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())
