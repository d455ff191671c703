"""Saving and loading weights: the tutorial's ``.pth`` state_dicts, and safetensors.

``save_state_dict`` writes what the tutorial's ``torch.save(model.state_dict(), path)``
writes, atomically. ``load_state_dict`` reads it back through :mod:`torchwork.safeload`
(``weights_only=True``, CPU first, so a file saved on a GPU loads anywhere).
``load_into`` checks names and shapes before it changes a single weight.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from torchwork.core.errors import InputError
from torchwork.files.atomic import atomic_write, ensure_dir
from torchwork.files.safeload import load_weights, save_weights_bytes


def save_state_dict(model: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    """``torch.save(model.state_dict(), path)``, atomically, creating the folder; ``.safetensors`` too."""
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    path = Path(path)
    ensure_dir(path.parent)  # like the tutorial's Path("models").mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        return atomic_write(path, save_weights_bytes(state))
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write(path, buf.getvalue())


def load_state_dict(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A state_dict from ``path`` (``.pth``/``.pt`` or ``.safetensors``), moved to ``map_location``."""
    tensors = load_weights(path).tensors
    device = torch.device(map_location)
    return {k: v.to(device) for k, v in tensors.items()} if device.type != "cpu" else tensors


def check_compatible(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state_dict") -> None:
    """Raise :class:`InputError` listing missing, unexpected and mismatched-shape keys, if any."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if mismatched:
            parts.append(f"mismatched shapes: {', '.join(mismatched)}")
        raise InputError(f"{source} does not fit {type(model).__name__}; nothing was loaded; " + "; ".join(parts))


def load_into(model: nn.Module, source: str | os.PathLike[str] | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load weights into ``model`` all at once, or not at all (see :func:`check_compatible`)."""
    if isinstance(source, str | os.PathLike):
        name, state = str(source), load_state_dict(source)
    else:
        name, state = "state_dict", dict(source)
    check_compatible(model, state, name)
    model.load_state_dict(state)
    return model
