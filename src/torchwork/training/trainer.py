"""The training step and the testing loop's loss, built once per fit with the fewest dispatches.

The arithmetic is exactly PyTorch's (the tests compare bit for bit with a plain loop); what
is removed is Python overhead that does no arithmetic:

- L1/MSE losses with ``reduction="mean"`` call the ATen function directly, skipping
  ``torch.nn.functional``'s broadcast and warning checks (the trainer checks shapes itself);
- ``optimizer.step()`` skips its profiler record and hook loop when no hook is registered and
  no profiler runs (the update itself is the optimizer's own ``step``);
- gradients are reset by setting them to ``None`` (``zero_grad(set_to_none=True)``).
"""

from __future__ import annotations

import logging
import secrets
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from torchwork.core.checks import check, check_options, choice
from torchwork.core.errors import InputError, TrainingInterrupted
from torchwork.core.runtime import resolve_device, seed_everything
from torchwork.evaluation.metrics import regression_metrics
from torchwork.training.batching import (
    Batches,
    LoaderBatches,
    OnDevice,
    TensorBatches,
    as_pair,
    as_tensor,
    eval_batches,
    is_batches,
    is_dataset,
    model_dtype,
    predict,
    train_batches,
)
from torchwork.training.callbacks import Callback, EarlyStopping, Signals, catch_signals, step_interval
from torchwork.training.components import (
    LOSSES,
    OPTIMIZERS,
    SCHEDULERS,
    Schedule,
    build_optimizer,
    build_scheduler,
    device_options,
    get_loss,
    target_kind,
    uses_closure,
)
from torchwork.training.distributed import Group, current, distribute, lost, rank_training_data, shared_testing_loss
from torchwork.training.engines import CudaGraphEngine, Engine, EpochJob, choose_engine
from torchwork.training.loop import EpochLogs, EpochLosses, Fit, History

# ---------------------------------------------------------------------------- the training step
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fast_loss(loss_fn: Any) -> Loss:
    """The ATen function behind an ``L1Loss``/``MSELoss`` module, else the loss itself."""
    aten = getattr(torch._C, "_nn", None)
    if aten is None or type(loss_fn) not in (nn.L1Loss, nn.MSELoss):  # exact types: not a subclass's forward
        return loss_fn  # type: ignore[no-any-return]
    try:
        reduction = torch.nn._reduction.get_enum(loss_fn.reduction)
    except (AttributeError, ValueError):
        return loss_fn  # type: ignore[no-any-return]
    kernel = aten.l1_loss if type(loss_fn) is nn.L1Loss else aten.mse_loss
    return lambda y_pred, y: kernel(y_pred, y, reduction)


def raw_optimizer_step(optimizer: torch.optim.Optimizer) -> Callable[[], Any]:
    """``optimizer.step`` without the per-call profiler record and hook loop, when none is in use."""
    from torch.optim import optimizer as optim_module

    unwrapped = getattr(type(optimizer).step, "__wrapped__", None)
    hooks = (
        getattr(optim_module, "_global_optimizer_pre_hooks", None),
        getattr(optim_module, "_global_optimizer_post_hooks", None),
        getattr(optimizer, "_optimizer_step_pre_hooks", None),
        getattr(optimizer, "_optimizer_step_post_hooks", None),
    )
    patched = "step" in vars(optimizer)  # e.g. an LR scheduler counting calls
    if unwrapped is None or patched or any(h is None or len(h) for h in hooks):
        return optimizer.step
    if torch.autograd.profiler._is_profiler_enabled:
        return optimizer.step
    return lambda: unwrapped(optimizer)


def check_shapes(y_pred: torch.Tensor, y: torch.Tensor, targets: str = "values") -> None:
    """The output fits the targets: the same shape, or ``(n, classes)`` for ``n`` class indices."""
    if targets == "classes":
        if y_pred.dim() == 2 and y.dim() == 1 and y_pred.shape[0] == y.shape[0]:
            return
        raise InputError(
            f"the model's output has shape {tuple(y_pred.shape)} but the targets have {tuple(y.shape)}: "
            "a loss over class indices needs outputs (n, classes) and targets (n,)"
        )
    if y_pred.shape != y.shape:
        raise InputError(
            f"the model's output has shape {tuple(y_pred.shape)} but the targets have "
            f"{tuple(y.shape)}: they must match (no silent broadcasting)"
        )


def autocast_for(precision: str, device: torch.device, *, cache: bool = True) -> Callable[[], Any]:
    """A context factory for the precision: nothing for ``32``, bf16 autocast for ``bf16-mixed``."""
    if precision == "bf16-mixed":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext


def make_train_step(
    forward: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: Loss,
    optimizer: torch.optim.Optimizer,
    *,
    clip_grad: float | None = None,
    after_step: Callable[[], Any] | None = None,
    autocast: Callable[[], Any] = nullcontext,
    targets: str = "values",
    closure: bool = False,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The tutorial's five steps on one batch; returns the batch's loss (detached).

    ``closure=True`` (L-BFGS) hands the optimizer a closure that runs steps 1 to 4 again for
    each evaluation its line search needs; the loss returned is the first evaluation's.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    step_fn = raw_optimizer_step(optimizer)
    mixed = autocast is not nullcontext

    if closure:

        def closure_step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            def evaluate() -> torch.Tensor:
                with autocast():
                    y_pred = forward(xb)
                    check_shapes(y_pred, yb, targets)
                    loss = loss_fn(y_pred, yb)
                for p in params:
                    p.grad = None
                loss.backward()
                if clip_grad is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_grad)
                return loss

            loss: Any = optimizer.step(evaluate)  # type: ignore[arg-type]  # the closure returns the loss tensor
            if after_step is not None:
                after_step()
            return loss.detach()  # type: ignore[no-any-return]

        return closure_step

    def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if mixed:
            with autocast():
                y_pred = forward(xb)
                check_shapes(y_pred, yb, targets)
                loss = loss_fn(y_pred, yb)
        else:
            y_pred = forward(xb)  # 1. forward pass
            check_shapes(y_pred, yb, targets)
            loss = loss_fn(y_pred, yb)  # 2. the loss
        for p in params:  # 3. zero the gradients
            p.grad = None
        loss.backward()  # 4. backpropagation
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        step_fn()  # 5. gradient descent
        if after_step is not None:
            after_step()
        return loss.detach()

    return step


# ----------------------------------------------------------------------------- the testing loop
@dataclass
class TestingLoop:
    """What the testing loop needs of a fit: the model, how to run it and how to score it."""

    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    autocast: Callable[[], Any]
    targets: str  # "values" or "classes"
    device: torch.device
    dtype: torch.dtype
    eval_batch_size: int | None
    group: Group | None = None

    def one_batch(self, data: Any) -> bool:
        """``data`` is a tensor pair small enough for a single forward pass."""
        return isinstance(data, tuple) and (self.eval_batch_size is None or len(data[0]) <= self.eval_batch_size)

    def single_step(self, data: tuple[torch.Tensor, torch.Tensor]) -> Callable[[], torch.Tensor]:
        """The testing loop on one batch, as a function an engine can run (or capture) after its steps."""

        def testing_step() -> torch.Tensor:
            self.model.eval()
            with torch.no_grad(), self.autocast():
                return self.loss_fn(self.forward(data[0]), data[1])

        return testing_step

    def __call__(self, data: Any) -> torch.Tensor:
        """The mean loss over ``data``, on the device (read only when something needs it)."""
        if self.group is not None:
            if callable(getattr(data, "epoch", None)):  # this rank's share of streamed rows, chunk by chunk
                long = self.targets == "classes"
                data = ((X.to(self.device, self.dtype), y.to(self.device, torch.long if long else self.dtype))
                        for X, y in data.epoch(0))  # fmt: skip
            return shared_testing_loss(self.model, self.loss_fn, data, self.group, self.autocast, self.eval_batch_size,
                                       lambda y_pred, y: check_shapes(y_pred, y, self.targets))  # fmt: skip
        self.model.eval()
        forward, loss_fn, device = self.forward, self.loss_fn, self.device
        with torch.inference_mode(), self.autocast():
            if self.one_batch(data):
                X, y = data
                y_pred = forward(X)
                check_shapes(y_pred, y, self.targets)
                return loss_fn(y_pred, y)
            if isinstance(data, tuple):
                batches: Any = eval_batches(data[0], data[1], self.eval_batch_size)
            elif callable(getattr(data, "epoch", None)):  # streamed: chunks, each cut into batches
                batches = (b for X, y in data.epoch(0) for b in eval_batches(X, y, self.eval_batch_size))
            else:
                batches = torch.utils.data.DataLoader(data, batch_size=self.eval_batch_size or 4096)
            total, rows = torch.zeros((), device=device), 0
            for xb, yb in batches:
                xb = xb.to(device, self.dtype)
                yb = yb.to(device, torch.long if self.targets == "classes" else self.dtype)
                y_pred = forward(xb)
                check_shapes(y_pred, yb, self.targets)
                total = total + loss_fn(y_pred, yb).float() * len(xb)
                rows += len(xb)
            return total / rows


# ---------------------------------------------------------------------------------- the Trainer
log = logging.getLogger("torchwork")

PRECISIONS = ("32", "bf16-mixed")
SIGNAL_EVERY = 16  # in a process group, a signal is looked for in every process every this many steps
ENGINES = ("auto", "eager", "cuda_graphs")


@dataclass
class _Loop:
    """The parts of a fit that only the loop uses."""

    engine: Engine
    batches: Batches
    val: Any
    testing: TestingLoop  # the model, how to run it, how to score it
    schedule: Schedule | None
    step_callbacks: list[Callback]
    interval: int | None  # step callbacks run every this many steps
    signals: Signals
    group: Group | None  # the process group of a fit in several processes


class Trainer:
    """Fit, predict and evaluate any ``nn.Module`` with the tutorial's loops.

    Every argument is a plain value that a run can record, checked here; ``loss`` and
    ``optimizer`` also accept a loss module and an optimizer factory ``factory(params, lr=...)``.
    ``batch_size=None`` trains on the whole set at once, as the tutorial does; ``log_every``
    records the first epoch and every ``log_every``-th after it in the history. ``engine``
    is ``"auto"`` (CUDA graphs on CUDA when the fit allows, else eager), ``"eager"``,
    ``"cuda_graphs"``, or an engine object.
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
        engine: str | Engine = "auto",
    ) -> None:
        def where(name: str) -> str:
            return f"Trainer({name}=...)"

        self.loss = LOSSES.canonical(loss, where("loss")) if isinstance(loss, str) else loss
        self.loss_options = check_options(LOSSES, self.loss, loss_options, where("loss_options"))
        self.optimizer = (
            OPTIMIZERS.canonical(optimizer, where("optimizer")) if isinstance(optimizer, str) else optimizer
        )
        self.optimizer_options = check_options(
            OPTIMIZERS, self.optimizer, optimizer_options, where("optimizer_options")
        )
        self.scheduler = SCHEDULERS.canonical(scheduler, where("scheduler")) if scheduler is not None else None
        self.scheduler_options = check_options(
            SCHEDULERS, self.scheduler, scheduler_options, where("scheduler_options")
        )
        self.lr = check(lr, "positive", where("lr"))
        self.epochs = check(epochs, "count", where("epochs"))
        self.batch_size = check(batch_size, "count?", where("batch_size"))
        self.shuffle = check(shuffle, "bool", where("shuffle"))
        self.seed = check(seed, "int?", where("seed"))
        self.device = device if isinstance(device, torch.device) else resolve_device(device, where("device"))
        self.log_every = check(log_every, "count", where("log_every"))
        self.clip_grad = check(clip_grad, "positive?", where("clip_grad"))
        if isinstance(early_stopping, EarlyStopping) or early_stopping is None:
            self.early_stopping = early_stopping
        else:
            self.early_stopping = EarlyStopping(check(early_stopping, "count", where("early_stopping")))
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise InputError(f"{where('callbacks')}: {cb!r} is not a torchwork.Callback")
        self.eval_batch_size = check(eval_batch_size, "count?", where("eval_batch_size"))
        self.precision = choice(precision, PRECISIONS, where("precision"))
        self.compile = check(compile, "bool", where("compile"))
        self.handle_signals = check(handle_signals, "bool", where("handle_signals"))
        self.num_workers = check(num_workers, "count0", where("num_workers"))
        self.engine = engine if not isinstance(engine, str) else choice(engine, ENGINES, where("engine"))
        self.last_fit: Fit | None = None  # the fit running now, or the last one

    # ------------------------------------------------------------------ fit
    def fit(self, model: nn.Module, train: Any, val: Any = None, *, resume: dict[str, Any] | None = None) -> History:
        """Train ``model`` on ``train`` and run the testing loop on ``val`` after every epoch.

        ``train`` and ``val`` are ``(X, y)`` pairs of tensors or arrays (the fast in-memory
        path) or ``torch.utils.data.Dataset``s of ``(x, y)`` items. ``resume`` is a
        :meth:`Fit.state_dict` from a checkpoint: the fit continues exactly where it stopped.
        """
        fit, loop = self._start(model, train, val)
        self.last_fit = fit
        for cb in fit.callbacks:
            cb.reset()  # a callback used in an earlier fit starts afresh (a resume then loads its state)
        if resume is not None:
            fit.load_state_dict(resume)
        loop.engine.start(self._job(fit, loop))
        if resume is None and self.early_stopping is not None and loop.val is not None:
            self.early_stopping.start(fit, float(loop.testing(loop.val)))
        for cb in fit.callbacks:
            cb.on_fit_start(fit)
        try:
            with catch_signals(self.handle_signals, repeat_acts=loop.group is None, caught=loop.signals):
                while fit.state.epoch < self.epochs and not fit.state.stop:
                    self._epoch(fit, loop)
            fit.check_finite()
        except BaseException as exc:
            failed = lost(exc) if loop.group is not None else None  # DDP's all-reduce in backward()
            for cb in fit.callbacks:
                cb.on_exception(fit, failed or exc)
            if failed is not None:
                raise failed from None
            raise
        for cb in fit.callbacks:
            cb.on_fit_end(fit)
        return fit.history

    def _start(self, model: nn.Module, train: Any, val: Any) -> tuple[Fit, _Loop]:
        group = current()
        device = group.device_for(self.device) if group is not None else self.device
        if self.seed is not None:
            seed_everything(self.seed)
        seed = self.seed if self.seed is not None else secrets.randbits(62)
        if group is not None:
            seed = group.broadcast(seed)  # one shuffling order for every rank
        model = model.to(device)
        dtype, targets = model_dtype(model), target_kind(self.loss)
        loss_module = get_loss(self.loss, **self.loss_options)
        if isinstance(loss_module, nn.Module):
            loss_module.to(device)
        streamed = val is None or is_dataset(val) or callable(getattr(val, "epoch", None))
        val_data = None if streamed else as_pair(val, "val", device, dtype, targets)
        forward: Any = torch.compile(model) if self.compile else model
        loss_fn = fast_loss(loss_module)
        if group is None:
            batches = train_batches(
                train, self.batch_size, self.shuffle, seed, self.num_workers, device, dtype, targets
            )
            engine, note = choose_engine(
                self.engine, device, in_memory=isinstance(batches, TensorBatches), compiled=self.compile,
                scheduler=self.scheduler, optimizer=self.optimizer, optimizer_options=self.optimizer_options,
            )  # fmt: skip
        else:
            pair = rank_training_data(group, train, val, device, dtype, targets)
            d = distribute(group, forward, loss_fn, pair, val_data, self.batch_size, self.shuffle, seed, device)
            batches, val_data, engine, note, forward, loss_fn = d.batches, d.val, d.engine, d.note, d.forward, d.loss_fn
        if is_batches(train) and not isinstance(train, TensorBatches | LoaderBatches) and device.type != "cpu":
            batches = OnDevice(batches, device)  # streamed batches are made on the CPU
        callbacks = list(self.callbacks)
        if self.early_stopping is not None:
            callbacks.append(self.early_stopping)
        callbacks.sort(key=lambda cb: cb.order)
        notes = [note] if note else []
        graphs = isinstance(engine, CudaGraphEngine)
        options = device_options(self.optimizer, self.optimizer_options, device, graphs)
        optimizer = build_optimizer(self.optimizer, model.parameters(), self.lr, **options)
        batches_per_epoch = batches.n_batches
        schedule = None
        if self.scheduler is not None:
            schedule = build_scheduler(
                self.scheduler, optimizer, self.epochs, batches_per_epoch, **self.scheduler_options
            )
        step_callbacks, interval = step_interval(callbacks)
        testing = TestingLoop(model, forward, loss_fn, autocast_for(self.precision, device, cache=not graphs),
                              targets, device, dtype, self.eval_batch_size, group)  # fmt: skip
        loop = _Loop(
            engine=engine,
            batches=batches,
            val=val if val_data is None else val_data,
            testing=testing,
            schedule=schedule,
            step_callbacks=step_callbacks,
            interval=interval,
            signals=Signals(),
            group=group,
        )
        losses = EpochLosses(batches.batch_sizes(), dtype, device)
        fit = Fit(
            model=model, optimizer=optimizer, scheduler=schedule.scheduler if schedule else None, device=device,
            epochs=self.epochs, callbacks=callbacks, losses=losses, seed=seed, engine=engine.name,
            note=lambda text: log.warning("torchwork: note: %s", text), group=group,
        )  # fmt: skip
        for text in notes:
            fit.note(text)
        return fit, loop

    def _job(self, fit: Fit, loop: _Loop) -> EpochJob:
        after = loop.schedule.scheduler.step if loop.schedule and loop.schedule.interval == "step" else None
        testing = loop.testing
        step = make_train_step(
            testing.forward, testing.loss_fn, fit.optimizer, clip_grad=self.clip_grad, after_step=after,
            autocast=testing.autocast, targets=testing.targets, closure=uses_closure(self.optimizer),
        )  # fmt: skip
        batches = loop.batches
        batches.set_seed(fit.state.seed)  # a resumed fit shuffles as the original did
        # The hooks hold what they use, never the loop: the loop holds the engine, which holds the
        # hooks, and such a cycle would outlive the fit until the garbage collector ran (keeping a
        # DistributedDataParallel alive past its group, which can abort the process at exit).
        state, callbacks, interval = fit.state, loop.step_callbacks, loop.interval
        signals, group = loop.signals, loop.group

        def after_steps(k: int) -> None:
            state.batch += k
            state.step += k
            for cb in callbacks:
                if cb.every_n_steps is None or state.step % cb.every_n_steps == 0:
                    cb.on_step_end(fit)
            if signals.arrived(group, state.step % SIGNAL_EVERY == 0):
                self._interrupt(fit, signals)

        def until_boundary() -> int | None:
            return None if interval is None else interval - state.step % interval

        val = loop.val
        testing_step = testing.single_step(val) if testing.one_batch(val) else None
        params = [p for group in fit.optimizer.param_groups for p in group["params"]]
        return EpochJob(
            step=step, batches=batches, losses=fit.losses, after_steps=after_steps, step_interval=interval,
            until_boundary=until_boundary, testing_step=testing_step, params=params, device=fit.device,
            dtype=fit.losses.buffer.dtype, epochs=self.epochs, log_every=self.log_every, note=fit.note,
        )  # fmt: skip

    # --------------------------------------------------------------- epochs
    def _epoch(self, fit: Fit, loop: _Loop) -> None:
        state = fit.state
        started = time.perf_counter()
        if state.batch == 0 or state.epoch_lr is None:  # a resumed epoch keeps the rate it began with
            state.epoch_lr = fit.optimizer.param_groups[0]["lr"]
        lr = state.epoch_lr
        fit.model.train()
        val_loss = loop.engine.run_epoch(state.epoch, state.batch)
        train_loss = fit.losses.mean()
        if val_loss is None and loop.val is not None:
            val_loss = loop.testing(loop.val)
        self._end_epoch(fit, loop, EpochLogs(state.epoch + 1, train_loss, val_loss, lr, time.perf_counter() - started))

    def _end_epoch(self, fit: Fit, loop: _Loop, logs: EpochLogs) -> None:
        state, losses = fit.state, fit.losses
        # Keep what is needed to name a diverging batch; read it only when values are read.
        batch_losses = losses.single if losses.single is not None and losses.n == 1 else losses.buffer.clone()
        fit.pending.append((logs.epoch, batch_losses, logs.val_loss))
        if (logs.epoch - 1) % self.log_every == 0:
            fit.check_finite()
            fit.history.append(logs.values())
        if loop.schedule is not None and loop.schedule.interval == "epoch":
            if loop.schedule.monitors_loss:
                loop.schedule.scheduler.step(logs.monitored())
            else:
                loop.schedule.scheduler.step()
        state.epoch += 1
        state.batch = 0
        for cb in fit.callbacks:
            cb.on_epoch_end(fit, logs)
        if logs.read and not logs.finite():
            fit.check_finite()
        if loop.group is not None:  # every rank stops (or is interrupted) at the same epoch
            fit.stop_training = loop.group.any(fit.stop_training)
        if fit.stop_training:
            state.stop = True
        if loop.signals.arrived(loop.group, True):
            self._interrupt(fit, loop.signals)

    def _interrupt(self, fit: Fit, signals: Signals) -> None:
        signum = signals.received or signal.SIGTERM  # another process of the group was signalled
        for cb in fit.callbacks:
            cb.on_interrupt(fit)
        raise TrainingInterrupted(signum, fit.state.epoch + 1, fit.state.batch)

    # ---------------------------------------------- evaluation & inference
    def predict(self, model: nn.Module, X: Any, batch_size: int | None = None) -> torch.Tensor:
        """The model's outputs for ``X`` on the CPU, made as the tutorial does (eval + inference mode)."""
        return predict(model, X, batch_size or self.eval_batch_size)

    def evaluate(self, model: nn.Module, X: Any, y: Any) -> dict[str, float]:
        """MAE, MSE, RMSE and R² of the model's predictions for ``X`` against ``y``."""
        return regression_metrics(as_tensor(y), self.predict(model, X))
