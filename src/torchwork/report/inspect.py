"""``torchwork inspect``: what a model file holds, read safely on any machine."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from torchwork.files.weights import WeightsFile, load_weights
from torchwork.report.html import best_epoch_text

_SHOW_VALUES = 6
_BLOCK = 1 << 20  # elements a summary copies at once: 8 MiB as float64, whatever the tensor's size


def _blocks(t: torch.Tensor) -> Iterator[torch.Tensor]:
    """``t``'s values in order, as flat blocks of at most :data:`_BLOCK` elements.

    Only a block is ever copied (a view that is not contiguous, a cast), never the whole tensor:
    the summary of a file stays within the file's own storage plus a few MiB.
    """
    if t.numel() <= _BLOCK or t.dim() == 0:
        yield t.reshape(-1)
        return
    row = t.numel() // t.shape[0]
    if row > _BLOCK:
        for i in range(t.shape[0]):
            yield from _blocks(t[i])
    else:
        step = _BLOCK // row
        for i in range(0, t.shape[0], step):
            yield t[i : i + step].reshape(-1)


def tensor_summary(name: str, t: torch.Tensor) -> dict[str, Any]:
    """Name, shape, dtype, the first values and, for floats, min/mean/max; computed block by block."""
    t = t.detach()
    n = t.numel()
    info: dict[str, Any] = {
        "name": name,
        "shape": list(t.shape),
        "dtype": str(t.dtype).removeprefix("torch."),
        "numel": n,
        "values": t.tolist() if n <= _SHOW_VALUES else [],  # full precision
        "truncated": n > _SHOW_VALUES,
    }
    if n <= _SHOW_VALUES:
        return info
    stats = t.is_floating_point()
    lows, highs, sums = [], [], []
    for block in _blocks(t):
        if len(info["values"]) < _SHOW_VALUES:
            info["values"] += block[: _SHOW_VALUES - len(info["values"])].tolist()
        elif not stats:
            break
        if stats:
            f = block.double()
            lows.append(f.min())
            highs.append(f.max())
            sums.append(f.sum())
    if stats:  # NaN anywhere gives NaN, as torch's min/max/mean do
        info.update(
            min=torch.stack(lows).min().item(),
            mean=torch.stack(sums).sum().item() / n,
            max=torch.stack(highs).max().item(),
        )
    return info


def _natural(name: str) -> list[Any]:
    """``net.10.weight`` after ``net.2.weight``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def describe_weights(path: str | os.PathLike[str], weights: WeightsFile | None = None) -> dict[str, Any]:
    """A JSON-ready description of a weights file: format, device saved from, each tensor."""
    weights = weights or load_weights(path)
    if weights.format == "safetensors":
        fmt = "safetensors"
        saved_from = "not recorded (safetensors stores no device)"
    else:
        fmt = "PyTorch state_dict (torch.save), read with weights_only=True"
        saved_from = ", ".join(weights.saved_from) or "unknown"
    names = list(weights.tensors)
    if weights.format == "safetensors":  # stored sorted by size, not in the model's order
        names.sort(key=_natural)
    tensors = [tensor_summary(k, weights.tensors[k]) for k in names]
    return {
        "file": str(path),
        "format": fmt,
        "saved_from": saved_from,
        "tensors": tensors,
        "parameters": sum(t["numel"] for t in tensors),
        "bytes": Path(path).stat().st_size,
    }


def format_description(desc: dict[str, Any]) -> str:
    lines = [
        f"file:       {desc['file']}",
        f"format:     {desc['format']}",
        f"saved from: {desc['saved_from']}",
        f"tensors:    {len(desc['tensors'])} ({desc['parameters']} values, {desc['bytes']} bytes on disk)",
    ]
    width = max((len(t["name"]) for t in desc["tensors"]), default=0)
    for t in desc["tensors"]:
        shape = "(" + ", ".join(map(str, t["shape"])) + ("," if len(t["shape"]) == 1 else "") + ")"
        if t["truncated"]:  # a preview: a few values, short
            values = "[" + ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in t["values"]) + ", ...]"
        else:
            values = repr(t["values"])
        line = f"  {t['name']:<{width}}  {shape:<12} {t['dtype']:<9} {values}"
        if "mean" in t:
            line += f"  (min {t['min']:.6g}, mean {t['mean']:.6g}, max {t['max']:.6g})"
        lines.append(line)
    return "\n".join(lines)


def format_run_summary(summary: dict[str, Any]) -> str:
    """``torchwork inspect RUN_DIR``: a run folder's model, columns, data, training and metrics;
    for an unfinished run, how far it got."""
    if summary.get("state") == "unfinished":
        return _format_unfinished(summary)
    import json

    meta, info, metrics = summary["model"], summary["run"], summary["metrics"]
    arch = meta["architecture"]
    name = arch.get("name") or arch.get("class") or arch.get("factory")
    pre = meta["preprocessing"]
    kinds = ", ".join(f"{c['name']} ({c['kind']})" for c in pre.get("columns", []))
    task = pre.get("task", "regression")
    target = ", ".join(pre["target"])
    if task == "classification":
        target += f" (classes: {', '.join(map(str, pre['targets']['classes']))})"
    lines = [
        f"run:        {summary['path']}",
        f"task:       {task}",
        f"model:      {name} {json.dumps(arch.get('args', {}))}",
        f"parameters: {meta['parameters']}",
        f"features:   {kinds or ', '.join(pre['features'])}",
        f"target:     {target}",
        f"data:       {info['data']['source']} ({info['data']['rows_used']} rows, "
        f"sha256 {info['data']['sha256'][:16]}...)",
        "split:      " + ", ".join(f"{k} {v}" for k, v in info["split"].items()),
        f"trained:    {info['epochs_run']} epochs on {info['device']}"
        + (f", best epoch {info['best_epoch']}" if info.get("best_epoch") else "")
        + (f", best: {best_epoch_text(0)}" if info.get("best_epoch") == 0 else "")
        + (" (stopped early)" if info.get("stopped_early") else ""),
        "versions:   " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
    ]
    if task == "classification":
        keys = ("accuracy", "balanced_accuracy", "f1_macro", "log_loss")
        lines.append(
            f"metrics:    {'split':<8} " + " ".join(f"{k:<18}" for k in keys) + "logistic regression: accuracy"
        )
        for part, m in metrics["model"].items():
            b = metrics["logistic_regression"][part]
            cells = " ".join(f"{m[k]:<18.6g}" for k in keys)
            lines.append(f"            {part:<8} {cells}{b['accuracy']:.6g}")
    else:
        lines.append(f"metrics:    {'split':<8} {'MAE':<12} {'RMSE':<12} {'R²':<12} least squares: MAE / RMSE / R²")
        for part, m in metrics["model"].items():
            b = metrics["least_squares"][part]
            lines.append(
                f"            {part:<8} {m['mae']:<12.6g} {m['rmse']:<12.6g} {m['r2']:<12.6g} "
                f"{b['mae']:.6g} / {b['rmse']:.6g} / {b['r2']:.6g}"
            )
    lines.append("weights:")
    lines += ["  " + line for line in format_description(summary["weights"]).splitlines()]
    return "\n".join(lines)


def _format_unfinished(summary: dict[str, Any]) -> str:
    config = summary.get("config") or {}
    ckpt = summary.get("checkpoint")
    out = summary["path"].removesuffix(".partial")
    lines = [
        f"run:        {summary['path']} (unfinished)",
        f"data:       {config.get('data')}",
        f"target:     {', '.join(config.get('target') or [])}",
        f"model:      {config.get('model')}, at most {config.get('epochs')} epochs",
    ]
    if ckpt is None:
        lines.append("progress:   no checkpoint yet (resuming starts again from the beginning)")
    else:
        state = "training had finished" if ckpt["finished_training"] else f"{ckpt['epochs_done']} epochs done"
        lines.append(f"progress:   {state}, {ckpt['steps']} steps (checkpoint {ckpt['path']})")
        last = ckpt.get("last") or {}
        if last:
            val = f", val_loss {last['val_loss']:.6g}" if last.get("val_loss") is not None else ""
            lines.append(
                f"last:       epoch {last.get('epoch')}: train_loss {last.get('train_loss', float('nan')):.6g}{val}"
            )
        if ckpt.get("best_epoch") is not None:
            loss = ckpt.get("best_val_loss")
            tail = (
                f", validation loss {loss:.6g}"
                if loss is not None
                else " (no epoch improved on them)"
                if ckpt["best_epoch"] == 0
                else ""
            )
            best = "the weights it started from" if ckpt["best_epoch"] == 0 else f"epoch {ckpt['best_epoch']}"
            lines.append(f"best:       {best}{tail}")
    lines.append(f"continue:   torchwork resume {out}")
    return "\n".join(lines)
