"""More than one process: ``torch.distributed``, started by ``torchrun`` (or a scheduler that sets its
environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).

How a fit in N processes gives the answer of one process with N times the batch:

- every rank computes the same per-epoch permutation of the rows (a function of seed and
  epoch), cuts it into global batches of ``N * B`` rows, and takes every N-th row of each
  (rank r: positions r, r+N, ...): together the ranks see exactly the global batch;
- ``DistributedDataParallel`` averages the gradients over ranks; each rank's loss is its rows'
  mean times ``rows * N / global rows`` (:class:`GlobalBatchLoss`), so the average is the mean over
  the global batch even when the last batch does not split evenly. A rank left without a row
  in a short last batch computes on one row weighted zero;
- each step's loss value is the global batch's mean on every rank, and the validation loss
  sums every rank's rows (each validation row counted once: rank r takes rows r, r+N, ...);
  stopping and signals are reduced over ranks, so every rank decides the same thing at the
  same step.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from torchwork.core.errors import GroupFailed, InputError, TorchworkError, one_line
from torchwork.training.batching import (
    TensorBatches,
    as_batch,
    epoch_permutation,
    eval_batches,
    is_batches,
    is_dataset,
    rows_of,
    select,
    tensors_of,
)
from torchwork.training.engines import EagerEngine

# ------------------------------------------------------------------------------- process groups
T = TypeVar("T")
TIMEOUT = dt.timedelta(minutes=10)  # a collective that waits longer than this fails instead of hanging


@dataclass(frozen=True)
class Group:
    """The process group this process is in (its collectives are what the loop needs)."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device_for(self, device: torch.device) -> torch.device:
        """CUDA: this process's GPU (``LOCAL_RANK``); anything else as it is."""
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        with _collective("summing over processes"):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device | None = None) -> bool:
        """Whether ``flag`` is true in any process."""
        device = device or (torch.device("cpu") if "gloo" in self.backend else torch.device("cuda", self.local_rank))
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        with _collective("comparing flags"):
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        with _collective("waiting at a barrier"):
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        out: list[Any] = [None] * self.world_size
        with _collective("gathering state"):
            dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (objects are pickled between this job's own processes)."""
        box = [obj]
        with _collective("receiving from rank 0"):
            dist.broadcast_object_list(box, src=0)
        return box[0]


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """A collective that fails because another process is gone becomes one line, not a traceback."""
    try:
        yield
    except RuntimeError as exc:  # torch.distributed.DistError and the backends' errors
        first = one_line(re.sub(r"\[[^\]]*:\d+\] ?", "", str(exc)), None, first_line=False).split(". ")[0][:160]
        raise GroupFailed(
            f"rank {os.environ.get('RANK', '?')}: another process of the job failed or went away while {what} ({first})"
        ) from None


def lost(exc: BaseException) -> GroupFailed | None:
    """``exc`` as a :class:`GroupFailed` if it is a collective failing because a process went away."""
    if isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and re.search(r"gloo|NCCL|nccl|Connection (reset|closed)", str(exc))
    ):
        try:
            with _collective("training"):
                raise exc
        except GroupFailed as failed:
            return failed
    return None


def on_main(group: Group | None, work: Callable[[], T], share: Callable[[T], T] | None = None) -> T:
    """``work()`` done by rank 0 alone; every rank gets its result, or raises the error it raised.

    For what only one process may do (claim the run folder, read the checkpoint): every rank
    then fails with the same one-line error, or none does. ``share`` makes the copy that the
    other ranks get (rank 0 keeps what only it can hold, such as a lock).
    """
    if group is None:
        return work()
    result: Any = None
    error: BaseException | None = None
    if group.main:
        try:
            result = work()
        except TorchworkError as exc:
            error = exc
    sent = share(result) if group.main and share is not None and error is None else result  # rank 0 keeps result
    shared, error = group.broadcast((sent, error))
    if error is not None:
        raise error
    return result if group.main else shared  # type: ignore[no-any-return]


def _group() -> Group:
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_backend())


def current() -> Group | None:
    """The process group of more than one process this process is in, or None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _group()
    return None


@contextlib.contextmanager
def joined(device: str = "auto") -> Iterator[Group | None]:
    """The group the environment describes (torchrun sets it), joined for the block; None for one process.

    A group that this process had already joined (your own ``init_process_group``) is used and
    left as it is; one joined here is left at the end. Backends: gloo for CPU tensors and
    Python objects, NCCL for CUDA tensors (gradients) where CUDA is there and ``device`` allows.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        yield current()
        return
    die_with_launcher()
    started = not dist.is_initialized()
    if started:
        cuda = device not in ("cpu", "mps") and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        with _collective("joining the group"):
            dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=TIMEOUT)
    try:
        yield current()
        if started and dist.is_initialized():  # leave together: tearing gloo down while a peer still
            # DistributedDataParallel wrappers that a fit left in reference cycles are freed now, while
            # their group exists: freed at exit, after it, one aborted the process ("terminate called
            # without an active exception") once in a few runs of several fits.
            gc.collect()
            with _collective("leaving the group"):  # talks can abort the process
                dist.barrier()
    except TorchworkError as exc:
        # An error every process shares (they raise it at the same point): leave together too,
        # waiting a little at most; a process that is gone (GroupFailed) is not waited for.
        if started and dist.is_initialized() and not isinstance(exc, GroupFailed) and "gloo" in dist.get_backend():
            with contextlib.suppress(RuntimeError):
                dist.monitored_barrier(timeout=dt.timedelta(seconds=30))
        raise
    finally:
        if started and dist.is_initialized():
            gc.collect()
            dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random streams (dropout): distinct per rank, a function of the seed."""
    return (seed * 1_000_003 + rank) % 2**63


class ShardedBatches(TensorBatches):
    """Rank ``rank``'s share of each global batch of ``world_size * batch_size`` rows (see the module)."""

    def __init__(self, data: Any, batch_size: int | None, shuffle: bool, seed: int, group: Group) -> None:
        super().__init__(data, None, shuffle, seed)
        self.group = group
        self.n_all = self.n_rows
        self.global_size = min((batch_size or self.n_all) * group.world_size, self.n_all)
        self.batch_size = -(-self.global_size // group.world_size)  # the most rows one rank gets

    @property
    def full_batch(self) -> bool:
        return False

    @property
    def n_batches(self) -> int:
        return -(-self.n_all // self.global_size)

    def global_sizes(self) -> list[int]:
        full, rest = divmod(self.n_all, self.global_size)
        return [self.global_size] * full + ([rest] if rest else [])

    def batch_sizes(self) -> list[int]:
        return self.global_sizes()  # the epoch's mean weighs each batch by its global rows

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Any]:
        n, G, r, N = self.n_all, self.global_size, self.group.rank, self.group.world_size
        perm = epoch_permutation(n, self.seed, epoch) if self.shuffle else torch.arange(n)
        perm = perm.to(tensors_of(self.data)[0].device)
        for b in range(start, self.n_batches):
            lo, hi = b * G, min((b + 1) * G, n)
            idx = perm[lo + r : hi : N]
            self.real = len(idx)
            if self.real == 0:  # a short last batch with no row for this rank: one row, weighted zero
                idx = perm[lo : lo + 1]
            self.current = hi - lo
            yield select(self.data, idx)


class GlobalBatchLoss:
    """This rank's loss (the mean over its rows, as ``training_step`` returns it) scaled so that DDP's
    average of the gradients over ranks is the global batch's; its value is the global batch's
    mean loss on every rank (one scalar all-reduce).

    Every rank so holds the same loss at every step: the epoch's losses, the NaN check and an
    optimizer that reads the loss (L-BFGS's line search) decide the same thing everywhere.
    """

    def __init__(self, batches: Any) -> None:
        """``batches``: what says, at each step, this rank's rows (``real``) of the global batch's (``current``)."""
        self.batches = batches
        self.group = batches.group

    def __call__(self, loss: torch.Tensor) -> torch.Tensor:
        real, total, world = self.batches.real, self.batches.current, self.group.world_size
        loss = loss * (real * world / total) if real else loss * 0.0
        mean = loss.detach().clone()
        self.group.all_sum(mean).div_(world)
        return loss + (mean - loss.detach())  # the value of the global mean, the gradient of this rank's share


class DistributedEngine(EagerEngine):
    """Eager steps through ``DistributedDataParallel`` (its all-reduce runs inside the backward pass).

    CUDA graphs stay off: DDP's all-reduce runs from host-side hooks, bucket by bucket.
    """

    name = "ddp"


@dataclass
class Distributed:
    """What a fit in a process group runs with instead of the one-process pieces."""

    forward: torch.nn.Module  # the model wrapped in DistributedDataParallel
    scale: GlobalBatchLoss
    batches: Any  # ShardedBatches, or a stream's share (StreamBatches with share=(rank, processes))
    val: Any  # this rank's validation rows, or None
    engine: DistributedEngine
    note: str | None


def rank_training_data(
    group: Group, train: Any, val: Any, device: torch.device, dtype: torch.dtype, targets: str
) -> Any:
    """What a rank trains on: tensors that every rank holds, or its own share of a stream."""
    shared = is_batches(train) and getattr(train, "share", None) == (group.rank, group.world_size)
    if is_dataset(train) or is_dataset(val) or (is_batches(train) and not shared):
        raise InputError("Trainer.fit in several processes takes tensors or a stream's share of a rank "
                         "(StreamBatches(share=(rank, processes))), not a Dataset")  # fmt: skip
    return train if shared else as_batch(train, "train", device, dtype, targets)


def distribute(
    group: Group, model: torch.nn.Module, train: Any, val: Any, batch_size: int | None, shuffle: bool, seed: int,
    device: torch.device,
) -> Distributed:  # fmt: skip
    """The DDP-wrapped model, the loss scaling, this rank's batches and validation rows, the engine.

    ``train``: tensors (every rank holds them and takes its rows of each global batch), or a
    stream's share of this rank (full batches of ``batch_size``, the same number on every rank).
    """
    from torch.nn.parallel import DistributedDataParallel

    batches: Any = train
    if not is_batches(train):
        batches = ShardedBatches(train, batch_size, shuffle, seed, group)
    batches.group = group
    ids = [device.index] if device.type == "cuda" else None
    forward = DistributedDataParallel(model, device_ids=ids)  # rank 0's weights broadcast to every rank
    shard = None
    if val is not None and not is_batches(val) and not callable(getattr(val, "epoch", None)):
        n = rows_of(val)
        shard = select(val, torch.arange(group.rank, n, group.world_size, device=tensors_of(val)[0].device))
    elif val is not None:
        shard = val
    note = None
    if device.type == "cuda":
        note = "CUDA graphs off: DistributedDataParallel all-reduces from host-side hooks"
    return Distributed(forward, GlobalBatchLoss(batches), batches, shard, DistributedEngine(), note)


def shared_testing_loss(
    step: Callable[[Any], torch.Tensor], data: Any, group: Group, batch_size: int | None, device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:  # fmt: skip
    """The mean of ``step``'s loss over the validation rows of every rank (each row counted once), on every rank.

    ``data``: this rank's rows in memory, or an iterable of chunks (a stream's share).
    """
    total = torch.zeros(2, dtype=torch.float64, device=device)
    chunks = [data] if isinstance(data, tuple | list | dict) else data
    for chunk in chunks:
        for batch in eval_batches(chunk, batch_size):
            n = rows_of(batch)
            total[0] += step(batch).double() * n
            total[1] += n
    with torch.no_grad():
        group.all_sum(total)
    return (total[0] / total[1]).to(dtype)


# ------------------------------------------------- --nproc: torchrun's launcher in this process
def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less its ``--nproc N`` / ``--nproc=N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


LAUNCHER = "TORCHWORK_LAUNCHER_PID"  # set by launch() for its workers: the process they die with
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_launcher(poll: float = 1.0) -> bool:
    """In a worker that ``--nproc`` started: get SIGTERM when the launcher dies, even by SIGKILL.

    Without this, a launcher killed by SIGKILL (which it cannot pass on) left its workers
    training at full CPU under init, holding the run's lock. SIGTERM lets them stop as on an
    interrupt (a checkpoint kept for ``resume``). Linux: ``PR_SET_PDEATHSIG``; elsewhere a
    thread that watches the parent. Whether this process follows a launcher.
    """
    value = os.environ.get(LAUNCHER, "")
    if not value.isdigit():
        return False
    launcher = int(value)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
        if armed:
            if os.getppid() != launcher:  # it died before the signal was armed
                os.kill(os.getpid(), signal.SIGTERM)
            return True
    import threading

    def watch() -> None:
        while os.getppid() == launcher:
            threading.Event().wait(poll)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="torchwork-launcher-watch", daemon=True).start()
    return True


def launch(n: int, argv: list[str]) -> int:
    """Run ``torchwork ARGV`` in ``n`` processes (gloo on CPU, NCCL on CUDA); the job's exit code."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError("--nproc: this process is already one of a group started by torchrun; leave --nproc out")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # One thread per process unless you said otherwise (torchrun sets 1 and warns).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the workers say what went wrong
    os.environ[LAUNCHER] = str(os.getpid())  # the workers die with this process (die_with_launcher)
    args = parse_args(["--standalone", f"--nproc-per-node={n}", "--max-restarts=0", "-m", "torchwork", *argv])
    try:  # SIGINT/SIGTERM here: the agent passes it on to every worker; they checkpoint and stop
        run(args)  # torchrun's main, less the decorator that prints a failed worker's report
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        rank, cause = _cause(exc.failures)
        if cause.exitcode < 0:
            try:
                died = signal.Signals(-cause.exitcode).name
            except ValueError:  # a signal without a name (a real-time one)
                died = f"signal {-cause.exitcode}"
            text = f"process {rank} of {n} was killed by {died}; the job stopped (resume it with the same --nproc)"
            print(f"torchwork: error: {text}", file=sys.stderr, flush=True)
            return 128 - cause.exitcode
        return int(cause.exitcode)
    return 0


def _cause(failures: dict[int, Any]) -> tuple[int, Any]:
    """The failure that stopped the job: a process killed from outside (the agent itself sends
    SIGTERM), else the lowest rank that exited with an error of its own, else the first."""
    ranks = sorted(failures)
    for rank in ranks:
        if failures[rank].exitcode < 0 and -failures[rank].exitcode != signal.SIGTERM:
            return rank, failures[rank]
    for rank in ranks:  # 143: a worker that the agent's SIGTERM stopped cleanly, not its own error
        if failures[rank].exitcode > 0 and failures[rank].exitcode != 128 + signal.SIGTERM:
            return rank, failures[rank]
    return ranks[0], failures[ranks[0]]
