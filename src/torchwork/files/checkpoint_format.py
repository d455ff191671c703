"""The checkpoint format: a fit's state as one safetensors file that holds no code.

Tensors go to safetensors; everything else is JSON in the header, with the tensors' places
marked; a SHA-256 over the JSON and every tensor's bytes, also in the header, is checked on
load. A forged header with its hash recomputed is refused by the check of what resuming reads.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.numpy import save as safetensors_numpy_save
from safetensors.torch import save as safetensors_save

from torchwork.core.errors import IntegrityError
from torchwork.files.atomic import atomic_write
from torchwork.files.safeload import load_weights
from torchwork.training.history import COLUMNS as HISTORY_COLUMNS

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
        raise IntegrityError(f"{path}: not a torchwork checkpoint ({' '.join(str(exc).split())[:200]})") from None
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
        if not isinstance(value, dict) or (key.endswith(":EarlyStopping") and not _early_stopping(value)):
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
    if "processes" in extra and (type(extra["processes"]) is not int or extra["processes"] < 1):
        raise ValueError(f"its processes is {extra['processes']!r:.40}, not a count")


def _early_stopping(value: dict[str, Any]) -> bool:
    best_epoch, wait = value.get("best_epoch"), value.get("wait")
    return (_number(value.get("best")) and (best_epoch is None or type(best_epoch) is int) and type(wait) is int
            and isinstance(value.get("best_weights", {}), dict))  # fmt: skip


def _history_row(row: Any) -> bool:
    return (isinstance(row, dict) and set(row) <= set(HISTORY_COLUMNS) and type(row.get("epoch")) is int
            and _number(row.get("seconds")) and all(_number(v, True) for v in row.values()))  # fmt: skip
