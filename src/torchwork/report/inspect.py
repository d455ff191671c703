"""``torchwork inspect``: what a model file holds, read safely on any machine."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from torchwork.files.safeload import WeightsFile, load_weights

_SHOW_VALUES = 6


def tensor_summary(name: str, t: torch.Tensor) -> dict[str, Any]:
    flat = t.detach().reshape(-1)
    values = flat[:_SHOW_VALUES].tolist()
    info: dict[str, Any] = {
        "name": name,
        "shape": list(t.shape),
        "dtype": str(t.dtype).removeprefix("torch."),
        "numel": t.numel(),
        "values": t.tolist() if t.numel() <= _SHOW_VALUES else values,  # full precision
        "truncated": t.numel() > _SHOW_VALUES,
    }
    if t.numel() > _SHOW_VALUES and t.is_floating_point():
        f = flat.double()
        info.update(min=f.min().item(), mean=f.mean().item(), max=f.max().item())
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
    """``torchwork inspect RUN_DIR``: a run folder's model, columns, data, training and metrics."""
    import json

    meta, info, metrics = summary["model"], summary["run"], summary["metrics"]
    arch = meta["architecture"]
    pre = meta["preprocessing"]
    lines = [
        f"run:        {summary['path']}",
        f"model:      {arch.get('name') or arch.get('class')} {json.dumps(arch.get('args', {}))}",
        f"parameters: {meta['parameters']}",
        f"features:   {', '.join(pre['features'])}",
        f"target:     {', '.join(pre['target'])}",
        f"data:       {info['data']['source']} ({info['data']['rows_used']} rows, "
        f"sha256 {info['data']['sha256'][:16]}...)",
        "split:      " + ", ".join(f"{k} {v}" for k, v in info["split"].items()),
        f"trained:    {info['epochs_run']} epochs on {info['device']}"
        + (f", best epoch {info['best_epoch']}" if info.get("best_epoch") is not None else "")
        + (" (stopped early)" if info.get("stopped_early") else ""),
        "versions:   " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"metrics:    {'split':<8} {'MAE':<12} {'RMSE':<12} {'R²':<12} least squares: MAE / RMSE / R²",
    ]
    for part, m in metrics["model"].items():
        b = metrics["least_squares"][part]
        lines.append(
            f"            {part:<8} {m['mae']:<12.6g} {m['rmse']:<12.6g} {m['r2']:<12.6g} "
            f"{b['mae']:.6g} / {b['rmse']:.6g} / {b['r2']:.6g}"
        )
    lines.append("weights:")
    lines += ["  " + line for line in format_description(summary["weights"]).splitlines()]
    return "\n".join(lines)
