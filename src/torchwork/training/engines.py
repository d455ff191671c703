"""Step engines: how the training steps of an epoch are run.

The loop hands an engine the :class:`~torchwork.training.loop.Fit` once (``start``) and then asks
it for one epoch at a time (``run_epoch``). An engine runs ``fit.step`` over ``fit.batches``,
writes each batch's loss into ``fit.losses`` and calls ``fit.after_steps(k)`` after every ``k``
steps (the fit then advances its counters, runs step callbacks and reacts to signals). Engines
never see the Trainer:

- :class:`EagerEngine`: one step after the other (CPU, MPS, CUDA without graphs, and
  ``DistributedDataParallel``, whose all-reduce happens inside the step's backward pass);
- :class:`CudaGraphEngine`: the whole step captured once in a CUDA graph and replayed. On a
  GPU a small model's step is a few dozen tiny kernels, and launching them costs more than
  running them. Mini-batches: the epoch's permutation is copied to the device once, and before
  each replay the next batches of indices are copied into a static buffer; full batches (the
  tutorial): a whole epoch, step and testing loop, is one replay. The first steps run eagerly
  (warm-up); a model that cannot be captured falls back to eager steps with a one-line note.
  :class:`EagerGraph` stands in for a CUDA graph on the CPU, so the engine's bookkeeping is
  tested without a GPU: its "replay" runs the captured Python again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch

from torchwork.core.errors import InputError
from torchwork.training.batching import TensorBatches, select
from torchwork.training.loop import Fit


# ----------------------------------------------------------------------------- the eager engine
class Engine(Protocol):
    name: str

    def start(self, fit: Fit) -> None:
        """Get ready for a fit (called once, before the first epoch)."""

    def run_epoch(self, fit: Fit) -> torch.Tensor | None:
        """Run the steps of the running epoch (``fit.state.epoch``, from 0) from batch ``fit.state.batch`` on.

        Returns the validation loss if the engine ran the testing loop itself, else None.
        """


class EagerEngine:
    """Steps one after the other, in Python: the tutorial's loop."""

    name = "eager"

    def start(self, fit: Fit) -> None:
        pass

    def run_epoch(self, fit: Fit) -> torch.Tensor | None:
        step, record, after_steps = fit.step, fit.losses.record, fit.after_steps
        b = fit.state.batch
        for batch in fit.batches.epoch(fit.state.epoch, b):
            record(b, step(batch))
            b += 1
            after_steps(1)
        return None


# ---------------------------------------------------------------------------------- CUDA graphs
WARMUP_STEPS = 3
MAX_STEPS_PER_REPLAY = 16
CAPTURABLE = ("sgd", "adam", "adamw", "rmsprop")


class CudaGraph:
    def __init__(self, device: torch.device, stream: Any = None) -> None:
        self.stream = stream
        self.graph = torch.cuda.CUDAGraph()

    def capture(self, body: Callable[[], None]) -> None:
        # No garbage collection while capturing: freeing a CUDA resource (an event, pinned
        # memory) during capture is an illegal call that aborts it.
        enabled = gc.isenabled()
        gc.disable()
        try:
            with torch.cuda.graph(self.graph, stream=self.stream):
                body()
        finally:
            if enabled:
                gc.enable()

    def replay(self) -> None:
        self.graph.replay()


class EagerGraph:
    """A stand-in for tests on the CPU: capture records the body, replay runs it again."""

    def __init__(self, device: torch.device, stream: Any = None) -> None:
        self.body: Callable[[], None] | None = None
        self.replays = 0

    def capture(self, body: Callable[[], None]) -> None:
        self.body = body

    def replay(self) -> None:
        assert self.body is not None
        self.replays += 1
        self.body()


def unsupported(
    *, in_memory: bool, compiled: bool, scheduler: str | None, optimizer: Any, optimizer_options: dict[str, Any]
) -> str | None:
    """Why a fit with these options cannot use CUDA graphs, or ``None`` if it can."""
    if not in_memory:
        return "the training data comes through a DataLoader"
    if compiled:
        return "torch.compile is on"
    if scheduler:
        return "a learning-rate scheduler changes the rate between steps"
    if not isinstance(optimizer, str) or optimizer.lower() not in CAPTURABLE:
        return "the optimizer is not one torchwork knows to be capturable"
    if optimizer_options.get("capturable") is False:
        return "the optimizer was asked for capturable=False"
    return None


def choose_engine(requested: Any, device: torch.device, **options: Any) -> tuple[Engine, str | None]:
    """The engine for a fit, and a note if CUDA graphs were wanted but the fit rules them out.

    ``requested`` is ``"auto"`` (CUDA graphs on CUDA), ``"eager"``, ``"cuda_graphs"`` or an
    engine; ``options`` are :func:`unsupported`'s.
    """
    if requested == "cuda_graphs" and device.type != "cuda":
        raise InputError(f"Trainer(engine='cuda_graphs'): needs a CUDA device, got {device}")
    graphs = isinstance(requested, CudaGraphEngine) or (requested in ("auto", "cuda_graphs") and device.type == "cuda")
    if not graphs:
        return (EagerEngine() if isinstance(requested, str) else requested), None
    problem = unsupported(**options)
    if problem is not None:
        return EagerEngine(), f"CUDA graphs off: {problem}"
    return (requested if isinstance(requested, CudaGraphEngine) else CudaGraphEngine()), None


@contextlib.contextmanager
def side_stream(device: torch.device, stream: Any) -> Iterator[None]:
    """Warm-up steps run on a side stream, as CUDA graph capture requires.

    One stream serves the warm-up and the captures of a fit: every new stream would get a
    cuBLAS workspace of its own (tens of MB on Hopper).
    """
    if device.type != "cuda":
        yield
        return
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        yield
    torch.cuda.current_stream(device).wait_stream(stream)


class CudaGraphEngine:
    """Runs a fit's epochs with captured steps. ``graph`` makes the graphs (:class:`EagerGraph` on a CPU)."""

    name = "cuda_graphs"

    def __init__(self, graph: Callable[..., Any] = CudaGraph) -> None:
        self.graph_cls = graph

    def start(self, fit: Fit) -> None:
        self.fit = fit
        batches = fit.batches
        assert isinstance(batches, TensorBatches)
        self.batches = batches
        self.device = device = fit.device
        self.B = batches.batch_size
        self.n_full, self.rest = divmod(batches.n_rows, self.B)
        # Two graphs, captured back to back after the warm-up: ``per_replay`` steps, and one
        # step for the end of an epoch and up to the boundaries of step callbacks.
        self.per_replay = 1 if fit.step_interval == 1 else min(MAX_STEPS_PER_REPLAY, max(1, self.n_full))
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.idx = torch.zeros(self.per_replay * self.B, dtype=torch.long, device=device)
        # The next epoch's permutation is made on the CPU while the GPU runs this epoch.
        self._next: tuple[int, torch.Tensor] | None = None
        self._host_order: torch.Tensor | None = None
        self._copied: Any = None
        # Full-batch epochs write their losses into a ring: a slot lives long enough for the
        # history (read every log_every epochs) to see it.
        self.ring = min(fit.epochs, max(4096, 2 * fit.log_every))
        self.epoch_train = torch.zeros(self.ring, dtype=fit.dtype, device=device)
        self.epoch_val = torch.zeros(self.ring, dtype=fit.dtype, device=device)
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.graphs: dict[Any, Any] = {}
        self.epoch_slot_set = False
        self.warm = 0
        self.failed: str | None = None
        self.arange: torch.Tensor | None = None

    # ------------------------------------------------------------ capture
    def _capture(self, key: Any, body: Callable[[], None]) -> Any:
        if key in self.graphs:
            return self.graphs[key]
        if self.failed is not None:
            return None
        for p in self.fit.params:
            p.grad = None
        graph = self.graph_cls(self.device, self.stream)
        try:
            graph.capture(body)
        except Exception as exc:  # a model that syncs with the host, data-dependent shapes, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.failed = f"capture failed ({type(exc).__name__}: {first})"
            self.fit.note(f"CUDA graphs off, training eagerly: {self.failed}")
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            return None
        self.graphs[key] = graph
        return graph

    def _steps_body(self, k_steps: int) -> Callable[[], None]:
        data, B, step = self.batches.data, self.B, self.fit.step
        buffer = self.fit.losses.buffer

        def body() -> None:
            for k in range(k_steps):
                idx = self.idx[k * B : (k + 1) * B]
                loss = step(select(data, idx))
                buffer.index_copy_(0, self.slot, loss.reshape(1).to(buffer.dtype))
                self.slot.add_(1)

        return body

    def _epoch_body(self) -> Callable[[], None]:
        data, step, testing_step = self.batches.data, self.fit.step, self.fit.testing_step

        def body() -> None:
            loss = step(data)
            self.epoch_train.index_copy_(0, self.slot, loss.reshape(1).to(self.epoch_train.dtype))
            if testing_step is not None:
                val_loss = testing_step()
                self.epoch_val.index_copy_(0, self.slot, val_loss.reshape(1).to(self.epoch_val.dtype))
            self.slot.add_(1).remainder_(self.ring)

        return body

    # ------------------------------------------------------------- epochs
    def run_epoch(self, fit: Fit) -> torch.Tensor | None:
        epoch, start = fit.state.epoch, fit.state.batch
        if self.batches.full_batch:
            return self._full_batch_epoch(epoch) if start == 0 else None
        self._minibatch_epoch(epoch, start)
        return None

    def _full_batch_epoch(self, epoch: int) -> torch.Tensor | None:
        """One full-batch epoch (step and testing loop) as one replay, after eager warm-up epochs."""
        fit = self.fit
        graph = None
        if self.warm >= WARMUP_STEPS:
            graph = self._capture("epoch", self._epoch_body())
        if graph is None:
            warming = self.warm < WARMUP_STEPS
            self.warm += 1
            with side_stream(self.device, self.stream) if warming else contextlib.nullcontext():
                loss = fit.step(self.batches.data)
                val = fit.testing_step() if fit.testing_step is not None else None
        else:
            if not self.epoch_slot_set:  # the graph advances the slot: epochs are consecutive
                self.slot.fill_(epoch % self.ring)
                self.epoch_slot_set = True
            graph.replay()
            i = epoch % self.ring
            loss = self.epoch_train[i]
            val = self.epoch_val[i] if fit.testing_step is not None else None
        fit.losses.record(0, loss)
        fit.after_steps(1)
        return val

    def _device_order(self, epoch: int) -> torch.Tensor:
        """``epoch``'s row order on the device (computed ahead when possible)."""
        if self._next is not None and self._next[0] == epoch:
            perm = self._next[1]
            self._next = None
            return perm
        if not self.batches.shuffle:
            order = self.batches.order(epoch)
            if order is None:
                if self.arange is None:
                    self.arange = torch.arange(self.batches.n_rows, device=self.device)
                return self.arange
            return order.to(self.device, non_blocking=True)
        if self.device.type != "cuda":
            return self.batches.order(epoch).to(self.device)  # type: ignore[union-attr]
        if self._host_order is None:
            self._host_order = torch.empty(self.batches.n_rows, dtype=torch.long, pin_memory=True)
        if self._copied is not None:
            self._copied.synchronize()  # the last copy out of the pinned buffer has finished
        self.batches.order(epoch, out=self._host_order)
        perm = self._host_order.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return perm

    def _steps_now(self, b: int) -> int:
        """How many steps the next replay takes: ``per_replay`` unless the epoch's end or a step
        boundary comes sooner, then one."""
        room = self.n_full - b
        until = self.fit.until_boundary()
        if until is not None:
            room = min(room, until)
        return self.per_replay if room >= self.per_replay else min(room, 1)

    def _minibatch_epoch(self, epoch: int, start: int) -> None:
        """Run the steps of ``epoch`` from batch ``start`` on: replays where possible, else eagerly."""
        fit, B = self.fit, self.B
        perm = self._device_order(epoch)
        data = self.batches.data
        b = start
        while b < self.n_full or (b == self.n_full and self.rest):
            k = self._steps_now(b)
            graph = None
            if b < self.n_full and self.warm >= WARMUP_STEPS:
                big = self._capture(("steps", self.per_replay), self._steps_body(self.per_replay))
                one = self._capture(("steps", 1), self._steps_body(1)) if self.per_replay > 1 else big
                graph = big if k == self.per_replay else one
            if graph is not None:
                self.idx[: k * B].copy_(perm[b * B : (b + k) * B], non_blocking=True)
                self.slot.fill_(b)
                graph.replay()
            else:
                k = 1
                idx = perm[b * B : (b + 1) * B]
                warming = self.warm < WARMUP_STEPS
                with side_stream(self.device, self.stream) if warming else contextlib.nullcontext():
                    fit.losses.record(b, fit.step(select(data, idx)))
                self.warm += 1
            b += k
            fit.after_steps(k)
        if epoch + 1 < fit.epochs and self.batches.shuffle:
            self._next = (epoch + 1, self._device_order(epoch + 1))
