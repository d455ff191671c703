"""Loading weight files without ever running code from them, and without trusting their sizes.

Formats are told apart by their bytes, never by the file's extension:

* safetensors: the header's length is checked against the file and a limit before any JSON is
  parsed, duplicate keys are refused, then the ``safetensors`` library (no code in the format)
  builds the tensors;
* PyTorch ``.pth``/``.pt``: the zip written by ``torch.save`` (told by ``PK\\x03\\x04`` only, as
  ``torch.load`` tells it) and the legacy stream. The archive is parsed strictly here (one reading
  of every entry, or a refusal), each pickle is followed opcode by opcode by an inert stack machine
  that imports and calls nothing, and every storage, every tensor view and their sizes are checked
  against the bytes that hold them. Only then is the file loaded, with
  ``torch.load(weights_only=True)``, from exactly the bytes that were checked: for a zip, an
  archive rebuilt by torch's own writer from the checked entries, so a name, a size or an offset
  that two zip readers could read differently never reaches torch. There is no unsafe fallback.

The layers are independent: torch's own ``weights_only`` unpickler has had holes (fixed in torch
2.6 and 2.10), the allow list alone would not bound what torch allocates, and the checks alone
would not check what torch builds. Files are opened only when they are regular files, so a FIFO
or ``/dev/zero`` is refused before a byte is read.

This module holds the loaders and safetensors; the parts live in :mod:`~torchwork.files.regular`
(reading, sniffing), :mod:`~torchwork.files.inert` and :mod:`~torchwork.files.unpickler` (the allow
list, the limits, the inert unpickler), :mod:`~torchwork.files.torchzip` (the zip archive) and
:mod:`~torchwork.files.torchfiles` (PyTorch files, checked then loaded).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchwork.core.errors import InputError, UnsafeFileError
from torchwork.files.inert import refuse_file, shown
from torchwork.files.regular import read_regular_file, sniff
from torchwork.files.torchfiles import load_legacy, load_torch_zip

__all__ = [
    "MAX_SAFETENSORS_HEADER",
    "WeightsFile",
    "load_weights",
    "load_weights_bytes",
    "read_regular_file",
    "save_weights_bytes",
    "sniff",
]

MAX_SAFETENSORS_HEADER = 16 << 20  # torchwork's checkpoints hold ~1 MB headers for long histories


@dataclass
class WeightsFile:
    """What a weight file held: its tensors, its format and where they were saved from."""

    tensors: dict[str, torch.Tensor]
    format: str
    saved_from: list[str] = field(default_factory=list)  # device names, e.g. ["cuda:0"]
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata


# ------------------------------------------------------------------- loading
def _flat_tensors(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.nn.Module):  # weights_only never builds one; defensive
        raise UnsafeFileError(f"{source}: holds a whole module, not a state_dict")
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise InputError(f"{source}: expected a state_dict (a mapping of names to tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"{source}: entries that are not tensors: {', '.join(shown(k) for k in bad[:5])}")
    return {k: v.detach() if isinstance(v, torch.nn.Parameter) else v for k, v in obj.items()}


def load_weights(path: str | os.PathLike[str], *, safetensors_only: bool = False) -> WeightsFile:
    """Read a state_dict from a ``.pth``/``.pt`` or ``.safetensors`` file, safely, onto the CPU.

    Every refusal is one :class:`InputError` or :class:`UnsafeFileError` line naming the file and the
    rule; memory stays within a small multiple of the file's size. ``safetensors_only`` refuses
    anything else (for the files torchwork itself writes).
    """
    source = str(path)
    held = [read_regular_file(Path(path), source, lambda head, size: _check_head(head, size, source))]
    return _load_held(held, source, safetensors_only)


def load_weights_bytes(raw: bytes, source: str, *, safetensors_only: bool = False) -> WeightsFile:
    """:func:`load_weights` of bytes already read (say, the very bytes whose hash was checked), named ``source``."""
    return _load_held([raw], source, safetensors_only)


def _load_held(held: list[bytes], source: str, safetensors_only: bool) -> WeightsFile:
    """Load the bytes in ``held``; a zip's loader empties it before torch.load (no other reference here)."""
    if not held[0]:
        raise InputError(f"{source}: empty file")
    kind = sniff(held[0][:16])
    if kind == "safetensors":
        return _load_safetensors(held[0], source)
    if safetensors_only:
        what = {"zip": "a PyTorch zip", "pickle": "a pickle"}.get(kind, "something else")
        raise UnsafeFileError(f"{source}: refused: expected a safetensors file, found {what}; nothing was run")
    if kind == "zip-other":
        refuse_file(source, f"it starts with the zip signature {held[0][:4]!r}, not a local file header: torch.load "
                        "would read it as a legacy stream while zip readers see an archive")  # fmt: skip
    if kind == "zip":
        obj, locations = load_torch_zip(held, source)
    elif kind == "pickle":
        obj, locations = load_legacy(held[0], source)
    else:
        raise InputError(f"{source}: not a weights file (neither safetensors nor a PyTorch .pth/.pt)")
    return WeightsFile(_flat_tensors(obj, source), "pytorch", locations)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {shown(next(k for k in keys if keys.count(k) > 1))} in the header")
    return dict(pairs)


def _check_head(head: bytes, size: int, source: str) -> None:
    """Refusals the first bytes allow before the file is read: a safetensors header too long for the file or limit."""
    if sniff(head) != "safetensors":
        return
    (n,) = struct.unpack_from("<Q", head, 0)
    if n > MAX_SAFETENSORS_HEADER:
        refuse_file(source, f"its safetensors header declares {n} bytes, over the limit of {MAX_SAFETENSORS_HEADER}")
    if 8 + n > size:
        raise InputError(f"{source}: damaged safetensors file (its header declares {n} bytes, the file holds "
                         f"{size - 8} after the length)")  # fmt: skip


def _load_safetensors(raw: bytes, source: str) -> WeightsFile:
    """Header length checked against the file and :data:`MAX_SAFETENSORS_HEADER` before any parsing."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    _check_head(raw[:16], len(raw), source)
    (n,) = struct.unpack_from("<Q", raw, 0)
    try:
        header = json.loads(raw[8 : 8 + n], object_pairs_hook=_unique_keys)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        tensors = load(raw)
    except (SafetensorError, ValueError, struct.error) as exc:
        raise InputError(f"{source}: damaged safetensors file ({shown(str(exc), 200)})") from None
    metadata = header.get("__metadata__") or {}
    return WeightsFile(tensors, "safetensors", [], metadata)


def save_weights_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes for a state_dict (tensors made contiguous, on the CPU)."""
    from safetensors.torch import save

    plain, seen = {}, set()
    for k, v in tensors.items():
        t = v.detach().to("cpu").contiguous()
        if t.numel() and t.untyped_storage().data_ptr() in seen:
            t = t.clone()  # tied weights: safetensors stores each tensor's bytes once
        seen.add(t.untyped_storage().data_ptr())
        plain[k] = t
    return save(plain, metadata=metadata)
