"""The Trainer: the tutorial's training loop and testing loop, for any ``nn.Module``.

Each epoch runs the five steps of the tutorial on every batch (forward pass, loss, zero
the gradients, backward pass, optimizer step), then the testing loop on the evaluation
set under ``model.eval()`` and ``torch.inference_mode()``. Batches come from
:mod:`torchwork.batching`; losses stay on the device and are read at most once per epoch
(on a GPU only when something needs them), never once per step.
"""

from __future__ import annotations

import logging
import math
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork import cuda_graphs
from torchwork.batching import Batches, LoaderBatches, TensorBatches, eval_batches
from torchwork.callbacks import Callback, EarlyStopping, EpochLogs
from torchwork.devices import resolve_device
from torchwork.errors import InputError, TrainingDiverged, TrainingInterrupted
from torchwork.history import History
from torchwork.losses import get_loss
from torchwork.metrics import regression_metrics
from torchwork.optim import Schedule, build_optimizer, build_scheduler
from torchwork.seeding import rng_state, seed_everything, set_rng_state
from torchwork.steps import autocast_for, check_shapes, fast_loss, make_train_step

log = logging.getLogger("torchwork")

PRECISIONS = ("32", "bf16-mixed")


@dataclass
class FitState:
    """Where a fit stands: enough, with the weights and RNG states, to continue it exactly."""

    epoch: int = 0  # the epoch running now, or the next one to run
    batch: int = 0  # the next batch of that epoch
    step: int = 0  # optimizer steps taken in all
    seed: int = 0  # the shuffling seed
    stop: bool = False  # early stopping asked to stop
    epoch_lr: float | None = None  # the learning rate when this epoch began (for its history row)
    epoch_losses: list[torch.Tensor] = field(default_factory=list)  # batch losses of this epoch


def as_tensor(data: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor from a tensor, NumPy array or nested list, converted to ``dtype`` if given."""
    t = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t


def _is_dataset(data: Any) -> bool:
    return isinstance(data, torch.utils.data.Dataset) and not isinstance(data, tuple | list)


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class Trainer:
    """Fit, predict and evaluate any ``nn.Module`` with the tutorial's loops.

    Every argument is a plain value so that a run can record it; ``loss`` and
    ``optimizer`` also accept a loss module and an optimizer factory
    ``factory(params, lr=...)``. ``batch_size=None`` trains on the whole set at once, as
    the tutorial does; ``log_every`` is the history's interval in epochs.
    """

    def __init__(
        self,
        *,
        loss: str | nn.Module = "l1",
        optimizer: str | Callable[..., torch.optim.Optimizer] = "sgd",
        lr: float = 0.01,
        epochs: int = 100,
        batch_size: int | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        device: str | torch.device = "auto",
        log_every: int = 1,
        loss_options: dict[str, Any] | None = None,
        optimizer_options: dict[str, Any] | None = None,
        scheduler: str | None = None,
        scheduler_options: dict[str, Any] | None = None,
        clip_grad: float | None = None,
        early_stopping: int | EarlyStopping | None = None,
        callbacks: Sequence[Callback] = (),
        eval_batch_size: int | None = 65536,
        precision: str = "32",
        compile: bool = False,
        handle_signals: bool = False,
        num_workers: int = 0,
        cuda_graphs: bool = True,
        graph_cls: Any = None,
    ) -> None:
        if epochs < 1:
            raise InputError(f"--epochs must be >= 1, got {epochs}")
        if log_every < 1:
            raise InputError(f"log_every must be >= 1, got {log_every}")
        if clip_grad is not None and not clip_grad > 0:
            raise InputError(f"--clip-grad must be > 0, got {clip_grad}")
        if precision not in PRECISIONS:
            raise InputError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        if isinstance(early_stopping, int) and early_stopping < 1:
            raise InputError(f"--early-stopping patience must be >= 1, got {early_stopping}")
        self.loss, self.loss_options = loss, dict(loss_options or {})
        self.optimizer, self.lr, self.optimizer_options = optimizer, lr, dict(optimizer_options or {})
        self.epochs, self.batch_size, self.shuffle, self.seed = epochs, batch_size, shuffle, seed
        self.device, self.log_every = device, log_every
        self.scheduler, self.scheduler_options = scheduler, dict(scheduler_options or {})
        self.clip_grad, self.early_stopping = clip_grad, early_stopping
        self.callbacks = list(callbacks)
        self.eval_batch_size, self.precision, self.compile = eval_batch_size, precision, compile
        self.handle_signals, self.num_workers = handle_signals, num_workers
        # On CUDA, capture the training step in CUDA graphs when the fit allows it (see cuda_graphs).
        self.cuda_graphs, self.graph_cls = cuda_graphs, graph_cls
        # Set by fit(): the objects of the current or last fit.
        self.model: nn.Module
        self.state = FitState()
        self.history = History()
        self.stop_training = False

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        model: nn.Module,
        train: Any,
        val: Any = None,
        *,
        resume: dict[str, Any] | None = None,
    ) -> History:
        """Train ``model`` on ``train`` and run the testing loop on ``val`` after every epoch.

        ``train`` and ``val`` are ``(X, y)`` pairs of tensors or arrays (the fast in-memory
        path) or ``torch.utils.data.Dataset``s of ``(x, y)`` items. ``resume`` is a
        :meth:`state_dict` from a checkpoint: the fit continues exactly where it stopped.
        """
        device = resolve_device(self.device)
        if self.seed is not None:
            seed_everything(self.seed)
        self.device_ = device
        self.model = model.to(device)
        dtype = self.dtype_ = _model_dtype(model)
        self.state = FitState(seed=self.seed if self.seed is not None else secrets.randbits(62))
        self.history = History()
        self.stop_training = False
        self.notes: list[str] = []
        self._signal: int | None = None
        self._pending: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []

        self.loss_fn = get_loss(self.loss, **self.loss_options)
        if isinstance(self.loss_fn, nn.Module):
            self.loss_fn.to(device)
        self.batches = self._train_batches(train, device, dtype)
        self.val_data = self._eval_data(val, device, dtype)
        callbacks = list(self.callbacks)
        if self.early_stopping is not None:
            es = self.early_stopping
            callbacks.append(es if isinstance(es, EarlyStopping) else EarlyStopping(patience=es))
        self.callbacks_ = sorted(callbacks, key=lambda cb: cb.order)
        step_callbacks = [cb for cb in self.callbacks_ if type(cb).on_step_end is not Callback.on_step_end]

        # CUDA graphs on CUDA; elsewhere only with a stand-in graph class (the CPU tests of the engine).
        use_graphs = device.type == "cuda" or self.graph_cls is not None
        graph_problem = cuda_graphs.unsupported(self) if use_graphs else "not on CUDA"
        options = dict(self.optimizer_options)
        optimizer_name = self.optimizer.lower() if isinstance(self.optimizer, str) else None
        if graph_problem is None and device.type == "cuda" and optimizer_name != "sgd":
            options.setdefault("capturable", True)  # Adam's step count stays on the GPU
        if optimizer_name is not None and device.type == "cpu":
            options.setdefault("foreach", True)  # one dispatch per step for all tensors; same arithmetic
        self.optimizer_ = build_optimizer(self.optimizer, model.parameters(), self.lr, **options)
        self.schedule: Schedule | None = None
        if self.scheduler:
            self.schedule = build_scheduler(
                self.scheduler, self.optimizer_, self.epochs, self.batches.n_batches, **self.scheduler_options
            )
        self._forward = torch.compile(model) if self.compile else model
        self._autocast = autocast_for(self.precision, device, cache=graph_problem is not None)
        self._eval_loss = fast_loss(self.loss_fn)
        after = self.schedule.scheduler.step if self.schedule and self.schedule.interval == "step" else None
        self._step = make_train_step(
            self._forward, self._eval_loss, self.optimizer_, clip_grad=self.clip_grad, after_step=after,
            autocast=self._autocast,
        )  # fmt: skip
        if device.type == "cuda" and graph_problem is not None:
            self.note(f"CUDA graphs off: {graph_problem}")
        self._graphed = (
            cuda_graphs.GraphedTraining(self, step_callbacks, self.graph_cls) if graph_problem is None else None
        )
        self._loss_buffer = torch.zeros(self.batches.n_batches, dtype=dtype, device=device)
        self._open: int | None = None

        for cb in self.callbacks_:
            cb.reset()  # a callback used in an earlier fit starts afresh (a resume then loads its state)
        if resume is not None:
            self.load_state_dict(resume)
        for cb in self.callbacks_:
            cb.on_fit_start(self)
        try:
            with self._signals():
                while self.state.epoch < self.epochs and not self.state.stop:
                    self._run_epoch(step_callbacks)
            self.check_finite()
        except BaseException as exc:
            for cb in self.callbacks_:
                cb.on_exception(self, exc)
            raise
        for cb in self.callbacks_:
            cb.on_fit_end(self)
        return self.history

    def note(self, text: str) -> None:
        """A one-line remark about how the fit runs (e.g. why CUDA graphs are off)."""
        self.notes.append(text)
        log.warning("torchwork: note: %s", text)

    def _train_batches(self, train: Any, device: torch.device, dtype: torch.dtype) -> Batches:
        if isinstance(train, TensorBatches | LoaderBatches):
            return train
        if _is_dataset(train):
            return LoaderBatches(
                train, self.batch_size or 256, device, self.shuffle, self.state.seed, self.num_workers, dtype
            )
        X, y = self._pair(train, "train", device, dtype)
        return TensorBatches(X, y, self.batch_size, self.shuffle, self.state.seed)

    def _eval_data(self, data: Any, device: torch.device, dtype: torch.dtype) -> Any:
        if data is None or _is_dataset(data):
            return data
        return self._pair(data, "val", device, dtype)

    @staticmethod
    def _pair(data: Any, name: str, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        try:
            X, y = data
        except (TypeError, ValueError):
            raise InputError(f"{name} data must be an (X, y) pair or a Dataset") from None
        X, y = as_tensor(X, dtype).to(device), as_tensor(y, dtype).to(device)
        if len(X) != len(y):
            raise InputError(f"{name}: X has {len(X)} rows but y has {len(y)}")
        return X, y

    def _single_eval_batch(self, data: Any) -> bool:
        return isinstance(data, tuple) and (self.eval_batch_size is None or len(data[0]) <= self.eval_batch_size)

    def _run_epoch(self, step_callbacks: list[Callback]) -> None:
        state, model = self.state, self.model
        started = time.perf_counter()
        if state.batch == 0 or state.epoch_lr is None:  # a resumed epoch keeps the rate it began with
            state.epoch_lr = self.optimizer_.param_groups[0]["lr"]
        lr = state.epoch_lr
        model.train()
        graphed = self._graphed
        if graphed is not None and graphed.batches.full_batch and state.batch == 0:
            train_loss, val_loss = graphed.full_batch_epoch(state.epoch, self._eager_full_batch_epoch)
            state.epoch_losses = [train_loss]
            state.batch, state.step = 1, state.step + 1
            for cb in step_callbacks:
                cb.on_step_end(self)
            if self._signal is not None:
                self._interrupt()
        else:
            if graphed is not None:
                graphed.minibatch_epoch(state.epoch)
            else:
                self._eager_steps(step_callbacks)
            train_loss = self._epoch_mean(state.epoch_losses)
            val_loss = self.evaluate_loss(model, self.val_data) if self.val_data is not None else None
        logs = EpochLogs(state.epoch, train_loss, val_loss, lr, time.perf_counter() - started)

        # Keep what is needed to name a diverging batch; read it only when values are read.
        # Batch losses that live in a buffer the next epoch overwrites are copied (one cat).
        losses = state.epoch_losses
        single = len(losses) == 1 and losses[0].dim() == 0
        batch_losses = losses[0] if single else torch.cat([t.reshape(-1) for t in losses])
        self._pending.append((state.epoch, batch_losses, val_loss))
        if state.epoch % self.log_every == 0:
            self.check_finite()
            self.history.append(logs.values())
        if self.schedule is not None and self.schedule.interval == "epoch":
            if self.schedule.monitors_loss:
                self.schedule.scheduler.step(logs.monitored())
            else:
                self.schedule.scheduler.step()

        state.epoch += 1
        state.batch = 0
        state.epoch_losses = []
        for cb in self.callbacks_:
            cb.on_epoch_end(self, logs)
        if logs.read and not logs.finite():
            self.check_finite()
        if self.stop_training:
            state.stop = True
        if self._signal is not None:
            self._interrupt()

    def _eager_steps(self, step_callbacks: list[Callback]) -> None:
        state, step = self.state, self._step
        if self.batches.n_batches == 1:  # the tutorial: one full batch, its loss kept as it is
            for xb, yb in self.batches.epoch(state.epoch, state.batch):
                state.epoch_losses.append(step(xb, yb))
                state.batch, state.step = state.batch + 1, state.step + 1
                for cb in step_callbacks:
                    cb.on_step_end(self)
                if self._signal is not None:
                    self._interrupt()
            return
        # Each batch's loss goes into one buffer, in place: keeping a small tensor alive per step
        # fragments the C heap between the large per-step activations (RSS grows step by step).
        buf = self._loss_buffer
        start = self._open = state.batch
        for xb, yb in self.batches.epoch(state.epoch, start):
            buf.select(0, state.batch).copy_(step(xb, yb))
            state.batch += 1
            state.step += 1
            for cb in step_callbacks:
                cb.on_step_end(self)
            if self._signal is not None:
                self._interrupt()
        self._open = None
        state.epoch_losses.append(buf[start : state.batch])

    def _epoch_losses_so_far(self) -> list[torch.Tensor]:
        """The running epoch's batch losses, including those of a loop still in progress."""
        losses = list(self.state.epoch_losses)
        if self._open is not None and self.state.batch > self._open:
            losses.append(self._loss_buffer[self._open : self.state.batch])
        return losses

    def _eager_full_batch_epoch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        X, y = self.batches.X, self.batches.y  # type: ignore[attr-defined]
        train_loss = self._step(X, y)
        val_loss = self.evaluate_loss(self.model, self.val_data) if self.val_data is not None else None
        return train_loss, val_loss

    def _epoch_mean(self, losses: list[torch.Tensor]) -> torch.Tensor:
        """The epoch's training loss: the mean over rows of the batch losses."""
        if len(losses) == 1 and losses[0].dim() == 0:
            return losses[0]
        stacked = torch.cat([t.reshape(-1) for t in losses])
        B, n = self.batches.batch_size, self.batches.n_rows
        if n % B == 0:
            return stacked.mean()
        sizes = torch.full((len(stacked),), float(B), dtype=stacked.dtype, device=stacked.device)
        sizes[-1] = n % B
        return (stacked * sizes).sum() / n

    def check_finite(self) -> None:
        """Raise :class:`TrainingDiverged` if a loss since the last check is NaN or infinite.

        Losses stay on the device until this runs: at each history record, when a callback
        reads an epoch's values, before a checkpoint, and when fitting ends.
        """
        pending, self._pending = self._pending, []
        if not pending:
            return
        values = [t.reshape(-1) for _, t, v in pending] + [v.reshape(-1) for _, _, v in pending if v is not None]
        if bool(torch.isfinite(torch.cat(values)).all()):
            return
        for epoch, batch_losses, val_loss in pending:
            losses = batch_losses.reshape(-1)
            bad = torch.nonzero(~torch.isfinite(losses))
            if len(bad):
                batch = int(bad[0])
                value = float(losses[batch])
                raise TrainingDiverged(
                    f"training diverged: the training loss became {value} at epoch {epoch}, batch {batch}"
                )
            if val_loss is not None and not math.isfinite(float(val_loss)):
                raise TrainingDiverged(
                    f"training diverged: the validation loss became {float(val_loss)} at epoch {epoch}"
                )

    # ------------------------------------------------------------ signals
    @contextmanager
    def _signals(self) -> Iterator[None]:
        """On SIGINT/SIGTERM, finish the current step, let callbacks checkpoint, then stop."""
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            self._signal = signum
            signal.signal(signum, previous[signal.Signals(signum)])  # a second signal acts as it always does

        for s in previous:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _interrupt(self) -> None:
        for cb in self.callbacks_:
            cb.on_interrupt(self)
        signum = self._signal or signal.SIGINT
        error = TrainingInterrupted(
            f"interrupted by {signal.Signals(signum).name} at epoch {self.state.epoch}, batch {self.state.batch}"
        )
        error.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        raise error

    # ------------------------------------------------------ state (resume)
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this fit exactly: tensors and plain values only."""
        state = {f.name: getattr(self.state, f.name) for f in fields(FitState)}
        state["stop"] = self.state.stop or self.stop_training  # early stopping's decision at this epoch's end
        losses = self._epoch_losses_so_far()
        state["epoch_losses"] = torch.cat([t.reshape(-1) for t in losses]).cpu() if losses else torch.zeros(0)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer_.state_dict(),
            "scheduler": self.schedule.scheduler.state_dict() if self.schedule else None,
            "callbacks": {self._callback_key(i, cb): cb.state_dict() for i, cb in enumerate(self.callbacks_)},
            "fit": state,
            "history": list(self.history.rows),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer_.load_state_dict(state["optimizer"])
        # How to compute (not what): a checkpoint written on a GPU resumes on a CPU and back.
        for group in self.optimizer_.param_groups:
            for key in ("capturable", "foreach", "fused", "differentiable"):
                if key in self.optimizer_.defaults:
                    group[key] = self.optimizer_.defaults[key]
        if self.schedule is not None and state.get("scheduler") is not None:
            self.schedule.scheduler.load_state_dict(state["scheduler"])
        saved = state.get("callbacks", {})
        for i, cb in enumerate(self.callbacks_):
            key = self._callback_key(i, cb)
            if key in saved:
                cb.load_state_dict(saved[key])
        fit = dict(state["fit"])
        losses = fit.pop("epoch_losses")
        device = self.device_
        fit["epoch_losses"] = [t.to(device) for t in losses.unbind(0)] if losses.numel() else []
        self.state = FitState(**fit)
        if isinstance(self.batches, TensorBatches):
            self.batches.seed = self.state.seed
        elif isinstance(self.batches, LoaderBatches):
            self.batches.sampler.seed = self.state.seed
        self.history = History(state.get("history", []))
        self.stop_training = self.state.stop
        set_rng_state(state["rng"])

    @staticmethod
    def _callback_key(index: int, cb: Callback) -> str:
        return f"{index}:{type(cb).__name__}"

    # ---------------------------------------------- evaluation & inference
    def evaluate_loss(self, model: nn.Module, data: Any) -> torch.Tensor:
        """The testing loop: the mean loss over ``data`` under ``eval()`` and ``inference_mode()``."""
        model.eval()
        forward = self._forward if model is self.model else model
        loss_fn = self._eval_loss
        with torch.inference_mode(), self._autocast():
            if self._single_eval_batch(data):
                X, y = data
                y_pred = forward(X)
                check_shapes(y_pred, y)
                return loss_fn(y_pred, y)
            if isinstance(data, tuple):
                batches: Any = eval_batches(data[0], data[1], self.eval_batch_size)
            else:
                batches = torch.utils.data.DataLoader(data, batch_size=self.eval_batch_size or 4096)
            total, rows = torch.zeros((), device=self.device_), 0
            for xb, yb in batches:
                xb, yb = xb.to(self.device_, self.dtype_), yb.to(self.device_, self.dtype_)
                y_pred = forward(xb)
                check_shapes(y_pred, yb)
                total = total + loss_fn(y_pred, yb).float() * len(xb)
                rows += len(xb)
            return total / rows

    def predict(self, model: nn.Module, X: Any, batch_size: int | None = None) -> torch.Tensor:
        """Predictions for ``X`` on the CPU, made as the tutorial does (eval + inference mode)."""
        return predict(model, X, batch_size or self.eval_batch_size)

    def evaluate(self, model: nn.Module, X: Any, y: Any) -> dict[str, float]:
        """MAE, MSE, RMSE and R² of the model's predictions for ``X`` against ``y``."""
        return regression_metrics(as_tensor(y), self.predict(model, X))


def predict(model: nn.Module, X: Any, batch_size: int | None = 65536) -> torch.Tensor:
    """The model's predictions for ``X`` (on the model's device, returned on the CPU)."""
    device, dtype = _model_device(model), _model_dtype(model)
    X = as_tensor(X, dtype)
    model.eval()
    with torch.inference_mode():
        if batch_size is None or len(X) <= batch_size:
            return model(X.to(device)).cpu()
        parts = [model(X[i : i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)]
        return torch.cat(parts)
