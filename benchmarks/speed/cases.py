"""The benchmark cases and their references, each a function that returns seconds.

Every reference is written the way its users write it; torchwork runs the same work
through :class:`torchwork.Trainer`. The tutorial case is 50 points, 1000 epochs, a testing
loop every epoch and a history every 10; the tabular case is in-memory rows with Adam.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchwork.core.runtime import synchronize
from torchwork.data.split import make_line, split
from torchwork.models.tabular import MLP
from torchwork.models.tutorial import LinearRegressionModel
from torchwork.training.trainer import Trainer


def tutorial_data(device: torch.device) -> tuple[Any, ...]:
    X, y = make_line()
    (Xtr, ytr), _, (Xte, yte) = split(X, y, test=0.2)
    return tuple(t.to(device) for t in (Xtr, ytr, Xte, yte))


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


# ----------------------------------------------------------------- tutorial
def tutorial_setup(device: torch.device) -> tuple[Any, ...]:
    """The tutorial's data, model (seed 42), L1 loss and SGD(lr=0.01), on ``device``."""
    Xtr, ytr, Xte, yte = tutorial_data(device)
    torch.manual_seed(42)
    model = LinearRegressionModel().to(device)
    return Xtr, ytr, Xte, yte, model, nn.L1Loss(), torch.optim.SGD(model.parameters(), lr=0.01)


def tutorial_hand_loop(device: torch.device, epochs: int = 1000) -> float:
    """The tutorial's loop as written, recording losses every 10 epochs."""
    Xtr, ytr, Xte, yte, model, loss_fn, optimizer = tutorial_setup(device)
    history: list[tuple[int, float, float]] = []

    def run() -> None:
        for epoch in range(epochs):
            model.train()
            y_pred = model(Xtr)
            loss = loss_fn(y_pred, ytr)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            model.eval()
            with torch.inference_mode():
                test_loss = loss_fn(model(Xte), yte)
            if epoch % 10 == 0:
                history.append((epoch, loss.item(), test_loss.item()))

    return timed(run, device)


def steady(run: Callable[[int], float], epochs: int, device: torch.device) -> float:
    """Seconds for ``epochs`` epochs in steady state: on a GPU, a fit's set-up (warm-up steps,
    CUDA-graph capture) is taken out by timing 1x and 2x the epochs and keeping the difference."""
    if device.type != "cuda":
        return run(epochs)
    return run(2 * epochs) - run(epochs)


def tutorial_torchwork(device: torch.device, epochs: int = 1000, callbacks: list[Any] | None = None) -> float:
    Xtr, ytr, Xte, yte = tutorial_data(device)
    torch.manual_seed(42)
    model = LinearRegressionModel()
    trainer = Trainer(loss="l1", optimizer="sgd", lr=0.01, epochs=epochs, log_every=10, seed=42, device=device,
                      callbacks=callbacks or [])  # fmt: skip
    return timed(lambda: trainer.fit(model, (Xtr, ytr), (Xte, yte)), device)


def tutorial_cuda_graph(device: torch.device, epochs: int = 1000) -> float:
    """The tutorial's epoch (step + testing loop) captured once in a CUDA graph, replayed."""
    Xtr, ytr, Xte, yte, model, loss_fn, optimizer = tutorial_setup(device)
    train_losses = torch.zeros(epochs, device=device)
    test_losses = torch.zeros(epochs, device=device)
    slot = torch.zeros((), dtype=torch.long, device=device)

    def epoch_body() -> None:
        model.train()
        loss = loss_fn(model(Xtr), ytr)
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            test = loss_fn(model(Xte), yte)
        train_losses.index_copy_(0, slot.view(1), loss.detach().view(1))
        test_losses.index_copy_(0, slot.view(1), test.view(1))
        slot.add_(1)

    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        optimizer.zero_grad(set_to_none=True)
        epoch_body()  # warm-up (the first epoch, for real)
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        epoch_body()

    def run() -> None:
        for epoch in range(1, epochs):
            graph.replay()
            if epoch % 10 == 0:
                train_losses[epoch].item()

    return timed(run, device)


# ------------------------------------------------------------------ tabular
def tabular_data(rows: int, features: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(rows, features, generator=g)
    w = torch.randn(features, 1, generator=g)
    y = X @ w + 0.1 * torch.randn(rows, 1, generator=g)
    return X, y


def tabular_model(kind: str, features: int = 32) -> nn.Module:
    torch.manual_seed(1)
    return nn.Linear(features, 1) if kind == "linear" else MLP(features, hidden=(64, 64))


def tabular_dataloader(X: torch.Tensor, y: torch.Tensor, kind: str, batch: int, device: torch.device,
                       max_rows: int | None = None) -> tuple[float, int]:  # fmt: skip
    """``DataLoader(TensorDataset(X, y), shuffle=True)``: what tutorials and most trainers do."""
    model = tabular_model(kind, X.shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=batch, shuffle=True)
    rows = [0]

    def run() -> None:
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            rows[0] += len(xb)
            if max_rows and rows[0] >= max_rows:
                break

    return timed(run, device), rows[0]


def tabular_index_loop(
    X: torch.Tensor, y: torch.Tensor, kind: str, batch: int, device: torch.device
) -> tuple[float, int]:
    """A hand-written loop: data on the device, batches by indexing a permutation."""
    X, y = X.to(device), y.to(device)
    model = tabular_model(kind, X.shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()

    def run() -> None:
        perm = torch.randperm(len(X), device=device)
        for i in range(0, len(X), batch):
            idx = perm[i : i + batch]
            loss = loss_fn(model(X[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return timed(run, device), len(X)


def tabular_cuda_graph(
    X: torch.Tensor, y: torch.Tensor, kind: str, batch: int, device: torch.device
) -> tuple[float, int]:
    """The hand loop with its whole step (gather, forward, loss, backward, Adam) in a CUDA graph."""
    X, y = X.to(device), y.to(device)
    model = tabular_model(kind, X.shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    loss_fn = nn.MSELoss()
    idx = torch.zeros(batch, dtype=torch.long, device=device)

    def step() -> None:
        loss = loss_fn(model(X.index_select(0, idx)), y.index_select(0, idx))
        loss.backward()
        optimizer.step()

    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    full = len(X) // batch * batch

    def run() -> None:
        perm = torch.randperm(len(X), device=device)
        for i in range(0, full, batch):
            idx.copy_(perm[i : i + batch])
            graph.replay()

    return timed(run, device), full


def tabular_torchwork(X: torch.Tensor, y: torch.Tensor, kind: str, batch: int, device: torch.device,
                      callbacks: list[Any] | None = None, epochs: int = 1) -> tuple[float, int]:  # fmt: skip
    X, y = X.to(device), y.to(device)
    model = tabular_model(kind, X.shape[1])
    trainer = Trainer(loss="mse", optimizer="adam", lr=1e-3, epochs=epochs, batch_size=batch, seed=0, device=device,
                      callbacks=callbacks or [])  # fmt: skip
    return timed(lambda: trainer.fit(model, (X, y)), device), len(X) * epochs


def overhead_callbacks(
    tmp: str, epochs: int, every_epochs: int | None = None, every_steps: int | None = None
) -> list[Any]:
    """Progress lines and checkpoints (atomic, fsynced): what a real run has on."""
    from torchwork.files.checkpoint import Checkpointer
    from torchwork.training.callbacks import Progress

    progress = Progress(epochs, file=io.StringIO(), interactive=False)
    return [progress, Checkpointer(f"{tmp}/last.safetensors", every_epochs, every_steps)]
