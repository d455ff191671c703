"""Checkpoints: the whole state of a fit in one safetensors file that holds no code.

Its tensors are every tensor of :meth:`Fit.state_dict` (model, optimizer, scheduler, the
callbacks' tensors, the generators' states, the running epoch's batch losses); everything
else (epoch, step, position in the epoch, history, configuration, ...) is JSON in the
file's header, with the tensors' places marked. A SHA-256 over the JSON and every tensor's
bytes, also in the header, is checked on load, so a flipped bit or a truncation is refused
rather than resumed from; a forged header with its hash recomputed is refused by the check of
what resuming reads.

Files are written atomically: a kill during a write leaves the previous checkpoint whole.
:class:`Checkpointer` serialises the state between two steps (the bytes are the copy: training
goes on changing the tensors) and leaves the write, with its two fsyncs, to a background
thread; training waits for a write only if the previous one has not finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.numpy import save as safetensors_numpy_save
from safetensors.torch import save as safetensors_save

from torchwork.core.errors import IntegrityError, TrainingDiverged, one_line
from torchwork.files.atomic import atomic_write, ensure_dir
from torchwork.files.weights import load_weights
from torchwork.training.callbacks import Callback
from torchwork.training.loop import COLUMNS as HISTORY_COLUMNS

# ----------------------------------------------------------------------------------- the format
FORMAT = "torchwork-checkpoint/1"
_KEY = "torchwork_checkpoint"
_HASH = "sha256"


_PLAIN = frozenset({float, int, str, bool, type(None)})
# Tensors of these dtypes go to safetensors as NumPy arrays (bfloat16, float8, ... as torch tensors).
_NUMPY_DTYPES = frozenset({torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16,
                           torch.int8, torch.uint8, torch.bool})  # fmt: skip


def _flatten(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """JSON-ready copy of ``obj`` with each tensor moved into ``tensors`` under its path.

    Plain values (the bulk: history rows, configuration) pass through without a call each.
    """
    kind = type(obj)
    if kind in _PLAIN:
        return obj
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach()
        return {"__tensor__": path}
    if kind is dict or isinstance(obj, dict):
        if all(type(k) is str for k in obj):
            return {k: v if type(v) in _PLAIN else _flatten(v, tensors, f"{path}/{k}") for k, v in obj.items()}
        return {"__items__": [[k, _flatten(v, tensors, f"{path}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [v if type(v) in _PLAIN else _flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, bool | int | float | str):  # subclasses of the plain types (NumPy's float64, ...)
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def _digest(header: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(header.encode())
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")  # the bytes, no copy
    return h.hexdigest()


def _history_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """History rows as one float64 tensor, a column per name (NaN where a row has no value).

    A checkpoint every 100 epochs of a fast fit rewrites the whole history each time: as a
    tensor it is copied as bytes, not written out as JSON text number by number.
    """
    names = [c for c in HISTORY_COLUMNS if any(c in row for row in rows)]
    nan = math.nan
    values = torch.tensor([[nan if (v := row.get(c)) is None else v for c in names] for row in rows],
                          dtype=torch.float64)  # fmt: skip
    return {"columns": names, "values": values.reshape(len(rows), len(names))}


class HistoryTable:
    """:func:`_history_columns` of a growing history, extended by the rows added since the last call.

    A checkpoint every N epochs would otherwise convert the whole history each time: a cost
    that grows with the fit. Rows are matched by identity (the history appends, never edits).
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._table: dict[str, Any] | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        n, table = len(self._rows), self._table
        known = table is not None and len(rows) >= n and all(a is b for a, b in zip(rows, self._rows, strict=False))
        if known and table is not None and len(rows) > n:
            new = _history_columns(rows[n:])
            if new["columns"] == table["columns"]:
                table = {"columns": table["columns"], "values": torch.cat([table["values"], new["values"]])}
            else:  # a column that earlier rows do not have
                table = None
        if not known or table is None:
            table = _history_columns(rows)
        self._rows, self._table = list(rows), table
        return table


def _history_rows(doc: Any) -> Any:
    """Rows back from :func:`_history_columns` (a checkpoint written before it holds rows: as they are)."""
    if not isinstance(doc, dict):
        return doc
    names, values = doc["columns"], doc["values"]
    if not isinstance(names, list) or not isinstance(values, torch.Tensor) or values.dtype != torch.float64:
        raise ValueError("its history is not a table of numbers")
    if values.ndim != 2 or values.shape[1] != len(names) or len(set(names)) != len(names):
        raise ValueError("its history's columns do not match its values")
    rows = []
    for line in values.tolist():
        row = {c: v for c, v in zip(names, line, strict=True) if v == v}  # NaN: the row has no such value
        if "epoch" in row:
            if not float(row["epoch"]).is_integer():
                raise ValueError("its history holds an epoch that is not a whole number")
            row["epoch"] = int(row["epoch"])
        rows.append(row)
    return rows


def checkpoint_bytes(state: dict[str, Any], extra: dict[str, Any] | None = None) -> bytes:
    """The bytes of a checkpoint holding ``state`` (a :meth:`Fit.state_dict`) and ``extra`` (plain values)."""
    tensors: dict[str, torch.Tensor] = {}
    if isinstance(state.get("history"), list):
        state = {**state, "history": _history_columns(state["history"])}
    tree = _flatten({"format": FORMAT, "state": state, "extra": extra or {}}, tensors, "")
    header = json.dumps(tree, separators=(",", ":"))
    plain = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}  # no storage shared
    metadata = {_KEY: header, _HASH: _digest(header, plain)}
    if all(t.dtype in _NUMPY_DTYPES for t in plain.values()):
        # The same file format; safetensors' NumPy writer skips the shared-storage analysis that
        # the torch writer makes (these copies share nothing) and costs a third as much.
        return safetensors_numpy_save({k: t.numpy() for k, t in plain.items()}, metadata=metadata)
    return safetensors_save(plain, metadata=metadata)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    return atomic_write(path, checkpoint_bytes(state, extra))


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, extra)`` from a checkpoint, after its SHA-256 is checked."""
    weights = load_weights(path, safetensors_only=True)
    header = weights.metadata.get(_KEY)
    recorded = weights.metadata.get(_HASH)
    if weights.format != "safetensors" or header is None or recorded is None:
        raise IntegrityError(f"{path}: not a torchwork checkpoint")
    actual = _digest(header, weights.tensors)
    if actual != recorded:
        raise IntegrityError(f"{path}: damaged: expected sha256 {recorded}, actual {actual}")
    try:
        tree = _unflatten(json.loads(header), weights.tensors)
        if not isinstance(tree, dict) or tree.get("format") != FORMAT:
            raise ValueError(f"unknown checkpoint format {tree.get('format') if isinstance(tree, dict) else None!r}")
        state, extra = tree["state"], tree["extra"]
        if isinstance(state, dict) and "history" in state:
            state["history"] = _history_rows(state["history"])
        _check_tree(state, extra)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise IntegrityError(f"{path}: not a torchwork checkpoint ({one_line(exc, 200, first_line=False)})") from None
    return state, extra


def _number(value: Any, none: bool = False) -> bool:
    return (type(value) in (int, float)) or (none and value is None)


def _check_tree(state: Any, extra: Any) -> None:
    """Raise ValueError unless what resuming reads is of the kinds :meth:`Fit.state_dict` and a run write.

    The hash finds damage, not a header forged with its hash recomputed: such a header is refused
    here, in one line, rather than part-way through a resume.
    """
    if not isinstance(state, dict) or not isinstance(extra, dict) or not isinstance(state.get("fit"), dict):
        raise ValueError("no fit state in it")
    fit = state["fit"]
    for key in ("epoch", "batch", "step"):
        if type(fit.get(key)) is not int or fit[key] < 0:
            raise ValueError(f"its fit {key} is {fit.get(key)!r:.40}, not a count")
    if type(fit.get("seed")) is not int or type(fit.get("stop")) is not bool or not _number(fit.get("epoch_lr"), True):
        raise ValueError("its fit state is not one a fit writes")
    best = fit.get("best_epoch")
    if best is not None and (type(best) is not int or not 0 <= best <= fit["epoch"]):
        raise ValueError(f"its best epoch is {best!r:.40}, not one of its epochs")
    if not isinstance(fit.get("epoch_losses"), torch.Tensor):
        raise ValueError("no running losses in its fit state")
    model = state.get("model")
    if not isinstance(model, dict) or not model or not all(isinstance(t, torch.Tensor) for t in model.values()):
        raise ValueError("no model weights in it")
    for key in ("optimizer", "rng", "callbacks"):
        if not isinstance(state.get(key), dict):
            raise ValueError(f"no {key} state in it")
    if not isinstance(state.get("scheduler"), dict | None):
        raise ValueError("its scheduler state is not a table")
    for key, value in state["callbacks"].items():
        if not isinstance(value, dict) or (key == "EarlyStopping" and not _early_stopping(value)):
            raise ValueError(f"its callback state {key!r:.40} is not one the callback writes")
    history = state.get("history")
    if not isinstance(history, list) or not all(_history_row(row) for row in history):
        raise ValueError("its history is not rows of epoch, losses, learning rate and seconds")
    if extra.get("finished") and not history:
        raise ValueError("training had finished, yet its history holds no epoch")
    kinds = {"config": dict, "data": dict | None, "finished": bool, "device": str, "notes": list}
    for key, kind in kinds.items():
        if key in extra and not isinstance(extra[key], kind):
            raise ValueError(f"its {key} is {extra[key]!r:.40}, not what a run writes there")
    if isinstance(extra.get("data"), dict) and not isinstance(extra["data"].get("sha256"), str):
        raise ValueError("its data has no SHA-256")
    if extra.get("threads") is not None and (type(extra["threads"]) is not int or extra["threads"] < 1):
        raise ValueError(f"its threads is {extra['threads']!r:.40}, not a count")
    if "processes" in extra and (type(extra["processes"]) is not int or extra["processes"] < 1):
        raise ValueError(f"its processes is {extra['processes']!r:.40}, not a count")


def _early_stopping(value: dict[str, Any]) -> bool:
    best_epoch, wait = value.get("best_epoch"), value.get("wait")
    return (_number(value.get("best")) and (best_epoch is None or type(best_epoch) is int) and type(wait) is int
            and isinstance(value.get("best_weights", {}), dict))  # fmt: skip


def _history_row(row: Any) -> bool:
    return (isinstance(row, dict) and set(row) <= set(HISTORY_COLUMNS) and type(row.get("epoch")) is int
            and _number(row.get("seconds")) and all(_number(v, True) for v in row.values()))  # fmt: skip


# ----------------------------------------------------------------------------- the checkpointer
if TYPE_CHECKING:
    from torchwork.training.loop import EpochLogs, Fit


def _writes(fit: Fit) -> bool:
    return fit.group is None or fit.group.main


class Checkpointer(Callback):
    """Write a checkpoint every ``every_epochs`` epochs and/or ``every_steps`` steps, and on SIGINT/SIGTERM.

    In a process group every rank runs it (each checkpoint gathers every rank's RNG state
    and running losses, which makes it a barrier) and rank 0 alone writes.

    A checkpoint is taken only if every loss since the last check and every weight is
    finite: a diverged fit never overwrites the last good checkpoint, and the error says
    which checkpoint is good. Writes run in a background thread (one at a time); a failed
    write is raised at the next checkpoint or when the fit ends, and ``saved`` changes only
    once a checkpoint is on disk.
    """

    order = 100  # after early stopping, so that its decision is in the checkpoint

    def __init__(
        self,
        path: str | os.PathLike[str],
        every_epochs: int | None = None,
        every_steps: int | None = None,
        extra: dict[str, Any] | None = None,
        final: bool = False,
    ) -> None:
        self.path = Path(path)
        self.final = final  # write a last checkpoint when fitting ends: the finished state, marked as such
        self.every_epochs = every_epochs
        self.every_n_steps = every_steps or 0  # 0: no step checkpoints, on_step_end is never called
        self.extra = extra or {}
        self.saved: tuple[int, int] | None = None  # (epochs completed, step) of the last good checkpoint
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._history = HistoryTable()

    def on_step_end(self, fit: Fit) -> None:
        self.save(fit)

    def on_epoch_end(self, fit: Fit, logs: EpochLogs) -> None:
        if self.every_epochs and fit.state.epoch % self.every_epochs == 0:
            self.save(fit)

    def on_interrupt(self, fit: Fit) -> None:
        self.save(fit)
        self.close()

    def on_fit_end(self, fit: Fit) -> None:
        if self.final:  # after early stopping restored the best weights (it runs first)
            self.wait()
            fit.check_finite(running=True)
            finished = {"finished": True, "device": str(fit.device), "threads": fit.threads, "notes": list(fit.notes)}
            state = fit.state_dict()
            if _writes(fit):
                ensure_dir(self.path.parent)
                save_checkpoint(self.path, state, {**self.extra, **finished})
            self.written((fit.state.epoch, fit.state.step))
        self.close()

    def on_exception(self, fit: Fit, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # the exception that ended the fit is the one to report
            self.close()  # let a write in flight finish: it is a good checkpoint
        if isinstance(exc, TrainingDiverged) and exc.checkpoint is None:
            exc.checkpoint = self.good()  # the one place that says which checkpoint a diverged fit can go back to

    def good(self) -> str:
        """Which checkpoint is the last good one, in words."""
        if self.saved is None:
            return "no checkpoint was written"
        epochs, step = self.saved
        return f"the last good checkpoint is {self.path} (after {epochs} epochs and {step} steps)"

    def save(self, fit: Fit) -> None:
        """Take a copy of the fit's state now; write it in the background."""
        fit.check_finite(running=True)  # a diverged fit never overwrites the last good checkpoint
        state = fit.state_dict()  # in a process group, every rank's part gathered: the checkpoint's barrier
        where = (fit.state.epoch, fit.state.step)
        if not _writes(fit):  # only rank 0 writes
            self.written(where)
            return
        data = checkpoint_bytes({**state, "history": self._history(state["history"])}, self.extra)  # a copy
        self.wait()  # one write at a time; a failed one is raised here
        if self._pool is None:
            ensure_dir(self.path.parent)
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchwork-checkpoint")
        self._pending = self._pool.submit(self._write, data, where)

    def _write(self, data: bytes, where: tuple[int, int]) -> None:
        atomic_write(self.path, data)  # the bytes to disk and fsyncs: no Python work to compete for the GIL
        self.written(where)

    def written(self, where: tuple[int, int]) -> None:
        """Called (in the writer thread) once a checkpoint is on disk."""
        self.saved = where

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the last write and stop the writer thread."""
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
