"""The Trainer: the tutorial's training loop and testing loop, for any ``nn.Module``.

``fit`` builds one :class:`~torchwork.training.loop.Fit` (the model, optimizer, schedule,
batches, counters, losses on the device, history and callbacks), then for each epoch: the
engine runs the training steps on every batch, the testing loop runs on the validation data
under ``model.eval()`` and ``torch.inference_mode()``, and the epoch ends (history, schedule,
callbacks, signals). Losses stay on the device and are read only when something needs them,
never once per step.

A training step is the tutorial's five: forward pass, loss, zero the gradients, backward
pass, optimizer step. The first two are :meth:`Trainer.training_step`, a method you can
override (a model that takes a dict, returns an auxiliary loss, or needs a loss of its own);
the Trainer wraps it with the other three, and every engine (eager, CUDA graphs, DDP) runs that.
:meth:`Trainer.validation_step` is the testing loop's loss on one batch.

A fit draws its random numbers (dropout, anything in the model) inside
``torch.random.fork_rng``, seeded from the fit's seed: the caller's generators are as they were
when ``fit`` returns, and a checkpoint holds the fit's own.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from torchwork.core.checks import check, check_options, choice
from torchwork.core.errors import InputError
from torchwork.core.runtime import generator_devices, resolve_device, threads_for
from torchwork.evaluation.metrics import regression_metrics
from torchwork.training.batching import (
    LoaderBatches,
    OnDevice,
    TensorBatches,
    as_batch,
    as_tensor,
    eval_batches,
    is_batches,
    is_dataset,
    model_dtype,
    predict,
    rows_of,
    to_device,
    train_batches,
)
from torchwork.training.callbacks import Callback, Signals, catch_signals, step_interval
from torchwork.training.components import (
    LOSSES,
    OPTIMIZERS,
    SCHEDULERS,
    build_optimizer,
    build_scheduler,
    device_options,
    get_loss,
    target_kind,
    uses_closure,
)
from torchwork.training.distributed import current, distribute, lost, rank_seed, rank_training_data, shared_testing_loss
from torchwork.training.engines import CudaGraphEngine, Engine, choose_engine
from torchwork.training.loop import EpochLogs, Fit, History

log = logging.getLogger("torchwork")

PRECISIONS = ("32", "bf16-mixed")
ENGINES = ("auto", "eager", "cuda_graphs")


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


class Trainer:
    """Fit, predict and evaluate any ``nn.Module`` with the tutorial's loops.

    Every argument is a plain value that a run can record, checked here; ``loss`` and
    ``optimizer`` also accept a loss module and an optimizer factory ``factory(params, lr=...)``.
    ``batch_size=None`` trains on the whole set at once, as the tutorial does; ``log_every``
    records the first epoch and every ``log_every``-th after it in the history. ``engine``
    is ``"auto"`` (CUDA graphs on CUDA when the fit allows, else eager), ``"eager"``,
    ``"cuda_graphs"``, or an engine object. Early stopping is a callback:
    ``callbacks=[EarlyStopping(patience)]``. ``threads``: torch's intra-op CPU threads during the
    fit (restored after it); ``None`` sizes them to one step's work: one thread for small batches
    and models, which would otherwise wait on each other (10 to 25 times slower on a busy machine).

    During a fit, ``self.model`` is the model to call in :meth:`training_step` (wrapped as the fit
    trains it: compiled with ``compile=True``, in ``DistributedDataParallel`` in a process group;
    in the testing loop, without DDP) and ``self.loss_fn`` the loss module.
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
        callbacks: Sequence[Callback] = (),
        eval_batch_size: int | None = 65536,
        precision: str = "32",
        compile: bool = False,
        handle_signals: bool = False,
        num_workers: int = 0,
        engine: str | Engine = "auto",
        threads: int | None = None,
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
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise InputError(f"{where('callbacks')}: {cb!r} is not a torchwork.Callback")
        keys = [cb.key for cb in self.callbacks if cb.stateful]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise InputError(f"{where('callbacks')}: two callbacks keep their state under the key {twice[0]!r}; "
                             "give one another key (callback.key = 'name')")  # fmt: skip
        self.eval_batch_size = check(eval_batch_size, "count?", where("eval_batch_size"))
        self.precision = choice(precision, PRECISIONS, where("precision"))
        self.compile = check(compile, "bool", where("compile"))
        self.handle_signals = check(handle_signals, "bool", where("handle_signals"))
        self.num_workers = check(num_workers, "count0", where("num_workers"))
        self.engine = engine if not isinstance(engine, str) else choice(engine, ENGINES, where("engine"))
        self.threads = check(threads, "count?", where("threads"))
        self.last_fit: Fit | None = None  # the fit running now, or the last one
        self.model: Any = None  # during a fit: the model training_step calls
        self.loss_fn: Any = None  # during a fit: the loss module
        self._targets = "values"

    # --------------------------------------------------------------- the steps
    def training_step(self, batch: Any) -> torch.Tensor:
        """Steps 1 and 2 of the tutorial's loop on one batch: the forward pass and the loss.

        ``batch`` is what the training data yields: an ``(X, y)`` pair by default, or the tuple
        or dict of tensors you trained on. Override it for a model that takes other inputs,
        returns more than its prediction, or needs a loss of its own: return a scalar loss
        tensor. The Trainer does the rest (zero the gradients, backward pass, optimizer step),
        in every engine; CUDA graphs capture it, so keep it to tensor operations.
        """
        X, y = batch
        y_pred = self.model(X)
        check_shapes(y_pred, y, self._targets)
        return self.loss_fn(y_pred, y)

    def validation_step(self, batch: Any) -> torch.Tensor:
        """The testing loop's loss on one batch (under ``model.eval()`` and no gradients): by
        default the loss :meth:`training_step` computes. The testing loop averages it over rows."""
        return self.training_step(batch)

    # -------------------------------------------------------------------- fit
    def fit(self, model: nn.Module, train: Any, val: Any = None, *, resume: dict[str, Any] | None = None) -> History:
        """Train ``model`` on ``train`` and run the testing loop on ``val`` after every epoch.

        ``train`` and ``val`` are ``(X, y)`` pairs of tensors or arrays (the fast in-memory
        path), tuples or dicts of tensors (for a ``training_step`` of yours), or
        ``torch.utils.data.Dataset``s. ``resume`` is a :meth:`Fit.state_dict` from a checkpoint:
        the fit continues exactly where it stopped.
        """
        group = current()
        device = group.device_for(self.device) if group is not None else self.device
        devices, device_type = generator_devices(device)
        threads = torch.get_num_threads()
        with torch.random.fork_rng(devices=devices, device_type=device_type):
            try:
                fit, engine = self._start(model, train, val, group, device)
                self.last_fit = fit
                try:
                    return self._run(fit, engine, resume)
                finally:  # the steps, the wrapped model and the engine go with the fit: nothing outlives it
                    fit.release()
                    self.model = self.loss_fn = None
            finally:  # the caller's thread count, as it was
                torch.set_num_threads(threads)

    def _start(self, model: nn.Module, train: Any, val: Any, group: Any, device: torch.device) -> tuple[Fit, Engine]:
        seed = self.seed if self.seed is not None else secrets.randbits(62)
        if group is not None:
            seed = group.broadcast(seed)  # one shuffling order for every rank
        torch.manual_seed(seed if group is None else rank_seed(seed, group.rank))  # the fit's dropout stream
        model = model.to(device)
        dtype, self._targets = model_dtype(model), target_kind(self.loss)
        loss_fn = get_loss(self.loss, **self.loss_options)
        if isinstance(loss_fn, nn.Module):
            loss_fn.to(device)
        in_memory = val is not None and not is_dataset(val) and not callable(getattr(val, "epoch", None))
        val_data = as_batch(val, "val", device, dtype, self._targets) if in_memory else val
        forward: Any = torch.compile(model) if self.compile else model
        scale = None
        if group is None:
            batches: Any = train_batches(train, self.batch_size, self.shuffle, seed, self.num_workers, device, dtype,
                                         self._targets)  # fmt: skip
            engine, note = choose_engine(
                self.engine, device, in_memory=isinstance(batches, TensorBatches), compiled=self.compile,
                scheduler=self.scheduler, optimizer=self.optimizer, optimizer_options=self.optimizer_options,
            )  # fmt: skip
            train_forward = forward
        else:
            data = rank_training_data(group, train, val, device, dtype, self._targets)
            d = distribute(group, forward, data, val_data, self.batch_size, self.shuffle, seed, device)
            batches, val_data, engine, note, train_forward, scale = (
                d.batches,
                d.val,
                d.engine,
                d.note,
                d.forward,
                d.scale,
            )
        threads = self._size_threads(model, batches, device)
        if is_batches(train) and not isinstance(train, TensorBatches | LoaderBatches) and device.type != "cpu":
            batches = OnDevice(batches, device)  # streamed batches are made on the CPU
        graphs = isinstance(engine, CudaGraphEngine)
        options = device_options(self.optimizer, self.optimizer_options, device, graphs)
        optimizer = build_optimizer(self.optimizer, model.parameters(), self.lr, **options)
        schedule = None
        if self.scheduler is not None:
            schedule = build_scheduler(self.scheduler, optimizer, self.epochs, batches.n_batches,
                                       **self.scheduler_options)  # fmt: skip
        callbacks = sorted(self.callbacks, key=lambda cb: cb.order)
        step_callbacks, interval = step_interval(callbacks)
        fit = Fit(
            model=model, optimizer=optimizer, schedule=schedule, device=device, dtype=dtype, epochs=self.epochs,
            log_every=self.log_every, batches=batches, val=val_data, callbacks=callbacks, seed=seed,
            engine=engine.name, note=lambda text: log.warning("torchwork: note: %s", text), signals=Signals(),
            step_callbacks=step_callbacks, step_interval=interval, group=group,
        )  # fmt: skip
        fit.threads = threads
        if note:
            fit.note(note)
        autocast = autocast_for(self.precision, device, cache=not graphs)
        self.model, self.loss_fn = train_forward, loss_fn
        fit.step = self._five_steps(fit, autocast, scale)
        fit.testing_loop = self._testing_loop(fit, train_forward, forward, autocast)
        if val_data is not None and self._one_batch(val_data):
            fit.testing_step = self._testing_step(fit, val_data, train_forward, forward, autocast)
        return fit, engine

    def _size_threads(self, model: nn.Module, batches: Any, device: torch.device) -> int | None:
        """Set torch's intra-op threads for the fit on the CPU (restored when it ends): ``threads``,
        or sized to one step's work (:func:`~torchwork.core.runtime.threads_for`): one thread for
        the small batches and models of most tables. None on an accelerator (left as it is)."""
        if device.type != "cpu":
            return None
        if self.threads is None:
            rows = max(batches.batch_sizes(), default=1)
            work = rows * sum(p.numel() for p in model.parameters())
            torch.set_num_threads(threads_for(work, torch.get_num_threads()))
        else:
            torch.set_num_threads(self.threads)
        return torch.get_num_threads()

    def _five_steps(self, fit: Fit, autocast: Callable[[], Any], scale: Any) -> Callable[[Any], torch.Tensor]:
        """The tutorial's five steps on one batch, around :meth:`training_step`; the batch's loss, detached.

        With L-BFGS the optimizer gets a closure that runs steps 1 to 4 again for each evaluation
        its line search needs; the loss returned is the first evaluation's.
        """
        training_step, optimizer, params, clip = self.training_step, fit.optimizer, fit.params, self.clip_grad
        schedule = fit.schedule
        after = schedule.scheduler.step if schedule is not None and schedule.interval == "step" else None
        mixed = autocast is not nullcontext

        def loss_of(batch: Any) -> torch.Tensor:
            if mixed:
                with autocast():
                    loss = training_step(batch)
            else:
                loss = training_step(batch)
            return loss if scale is None else scale(loss)

        if uses_closure(self.optimizer):

            def closure_step(batch: Any) -> torch.Tensor:
                def evaluate() -> torch.Tensor:
                    loss = loss_of(batch)
                    for p in params:
                        p.grad = None
                    loss.backward()
                    if clip is not None:
                        torch.nn.utils.clip_grad_norm_(params, clip)
                    return loss

                loss: Any = optimizer.step(evaluate)  # type: ignore[arg-type]  # the closure returns the loss tensor
                if after is not None:
                    after()
                return loss.detach()  # type: ignore[no-any-return]

            return closure_step

        def step(batch: Any) -> torch.Tensor:
            loss = loss_of(batch)  # 1. forward pass, 2. the loss
            for p in params:  # 3. zero the gradients (optimizer.zero_grad(set_to_none=True))
                p.grad = None
            loss.backward()  # 4. backpropagation
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()  # 5. gradient descent
            if after is not None:
                after()
            return loss.detach()

        return step

    # ------------------------------------------------------------- the testing loop
    def _one_batch(self, data: Any) -> bool:
        """``data`` is in memory and small enough for a single forward pass."""
        in_memory = isinstance(data, tuple | list | dict) and not callable(getattr(data, "epoch", None))
        return in_memory and (self.eval_batch_size is None or rows_of(data) <= self.eval_batch_size)

    def _testing_step(
        self, fit: Fit, data: Any, train_forward: Any, eval_forward: Any, autocast: Callable[[], Any]
    ) -> Callable[[], torch.Tensor]:
        """The testing loop on a one-batch validation set, as a function an engine can run, or capture
        with the training step in one CUDA graph (hence ``no_grad``, which capture allows)."""
        model, validation_step = fit.model, self.validation_step

        def testing_step() -> torch.Tensor:
            model.eval()
            self.model = eval_forward
            try:
                with torch.no_grad(), autocast():
                    return validation_step(data)
            finally:
                self.model = train_forward

        return testing_step

    def _testing_loop(
        self, fit: Fit, train_forward: Any, eval_forward: Any, autocast: Callable[[], Any]
    ) -> Callable[[Any], torch.Tensor]:
        """The mean of :meth:`validation_step` over a data set's rows, on the device.

        In one batch when it fits ``eval_batch_size`` (the tutorial's testing loop), else in batches
        (tensors, a streamed source's chunks, a ``Dataset``); in a process group, every row of every
        rank's share counted once.
        """
        model, validation_step, group, device, dtype = fit.model, self.validation_step, fit.group, fit.device, fit.dtype
        long = self._targets == "classes"
        # The validation set of most fits is one batch in memory: decided once, not every epoch.
        one_batch_val = fit.val if fit.val is not None and group is None and self._one_batch(fit.val) else None

        def convert(batch: Any) -> Any:
            if isinstance(batch, tuple | list) and len(batch) == 2:
                X, y = batch
                return X.to(device, dtype), y.to(device, torch.long if long else dtype)
            return to_device(batch, device)

        def testing_loop(data: Any) -> torch.Tensor:
            model.eval()
            self.model = eval_forward
            try:
                with torch.inference_mode(), autocast():
                    if data is one_batch_val or (group is None and self._one_batch(data)):
                        return validation_step(data)
                    if isinstance(data, tuple | list | dict):
                        batches: Any = eval_batches(data, self.eval_batch_size)
                    elif callable(getattr(data, "epoch", None)):  # streamed: chunks, each cut into batches
                        batches = (
                            b for chunk in data.epoch(0) for b in eval_batches(convert(chunk), self.eval_batch_size)
                        )
                    else:
                        loader = torch.utils.data.DataLoader(data, batch_size=self.eval_batch_size or 4096)
                        batches = (convert(b) for b in loader)
                    if group is not None:
                        return shared_testing_loss(validation_step, batches, group, None, device, dtype)
                    total, rows = torch.zeros((), device=device), 0
                    for batch in batches:
                        n = rows_of(batch)
                        total = total + validation_step(batch).float() * n
                        rows += n
                    return total / rows
            finally:
                self.model = train_forward

        return testing_loop

    # ------------------------------------------------------------------ epochs
    def _run(self, fit: Fit, engine: Engine, resume: dict[str, Any] | None) -> History:
        for cb in fit.callbacks:
            cb.reset()  # a callback used in an earlier fit starts afresh (a resume then loads its state)
        if resume is not None:
            fit.load_state_dict(resume)
        fit.batches.set_seed(fit.state.seed)  # a resumed fit shuffles as the original did
        engine.start(fit)
        for cb in fit.callbacks:
            cb.on_fit_start(fit)
        try:
            with catch_signals(self.handle_signals, repeat_acts=fit.group is None, caught=fit.signals):
                while fit.state.epoch < self.epochs and not fit.state.stop:
                    self._epoch(fit, engine)
            fit.check_finite()
        except BaseException as exc:
            failed = lost(exc) if fit.group is not None else None  # DDP's all-reduce in backward()
            for cb in fit.callbacks:
                cb.on_exception(fit, failed or exc)
            if failed is not None:
                raise failed from None
            raise
        for cb in fit.callbacks:
            cb.on_fit_end(fit)
        return fit.history

    def _epoch(self, fit: Fit, engine: Engine) -> None:
        state = fit.state
        started = time.perf_counter()
        if state.batch == 0 or state.epoch_lr is None:  # a resumed epoch keeps the rate it began with
            state.epoch_lr = fit.optimizer.param_groups[0]["lr"]
        lr = state.epoch_lr
        fit.model.train()
        val_loss = engine.run_epoch(fit)
        train_loss = fit.losses.mean()
        if val_loss is None and fit.val is not None:
            val_loss = fit.validate()
        self._end_epoch(fit, EpochLogs(state.epoch + 1, train_loss, val_loss, lr, time.perf_counter() - started))

    def _end_epoch(self, fit: Fit, logs: EpochLogs) -> None:
        state, losses = fit.state, fit.losses
        # Keep what is needed to name a diverging batch; read it only when values are read.
        batch_losses = losses.single if losses.single is not None and losses.n == 1 else losses.buffer.clone()
        fit.pending.append((logs.epoch, batch_losses, logs.val_loss))
        if (logs.epoch - 1) % self.log_every == 0:
            fit.check_finite()
            fit.history.append(logs.values())
        schedule = fit.schedule
        if schedule is not None and schedule.interval == "epoch":
            if schedule.monitors_loss:
                schedule.scheduler.step(logs.monitored())
            else:
                schedule.scheduler.step()
        state.epoch += 1
        state.batch = 0
        for cb in fit.callbacks:
            cb.on_epoch_end(fit, logs)
        if logs.read and not logs.finite():
            fit.check_finite()
        if fit.group is not None:  # every rank stops (or is interrupted) at the same epoch
            fit.stop_training = fit.group.any(fit.stop_training)
        if fit.stop_training:
            state.stop = True
        if fit.signals.arrived(fit.group, True):
            fit.interrupt()

    # ---------------------------------------------- evaluation & inference
    def predict(self, model: nn.Module, X: Any, batch_size: int | None = None) -> torch.Tensor:
        """The model's outputs for ``X`` on the CPU, made as the tutorial does (eval + inference mode)."""
        return predict(model, X, batch_size or self.eval_batch_size)

    def evaluate(self, model: nn.Module, X: Any, y: Any) -> dict[str, float]:
        """MAE, MSE, RMSE and R² of the model's predictions for ``X`` against ``y``."""
        return regression_metrics(as_tensor(y), self.predict(model, X))
