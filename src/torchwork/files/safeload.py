"""Loading weight files without ever running code from them.

Formats are told apart by their bytes, never by the file's extension:

* safetensors: read by the ``safetensors`` library, a format with no code in it;
* PyTorch ``.pth``/``.pt`` (the zip written by ``torch.save``, and the legacy stream):
  every pickle inside is first read opcode by opcode (``pickletools``, which executes
  nothing); a pickle that imports anything beyond an ordered dict, tensor rebuilders and
  storage types is refused. Only then is the file loaded, and only with
  ``torch.load(weights_only=True)``. There is no fallback to unsafe loading.

The two layers are independent: torch's own ``weights_only`` unpickler has had holes
(fixed in torch 2.6 and 2.10), and the scan alone would not check what torch builds.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from torchwork.core.errors import InputError, UnsafeFileError

_STORAGES = {
    f"{t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
}
ALLOWED_GLOBALS = frozenset(
    {("collections", "OrderedDict")}
    | {("torch", s) for s in _STORAGES}
    | {
        ("torch._utils", name)
        for name in (
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
            "_rebuild_tensor_v3",
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
        )
    }
)
# Opcodes that import or call by other means than GLOBAL/STACK_GLOBAL + REDUCE.
_REFUSED_OPCODES = {"EXT1", "EXT2", "EXT4", "INST", "OBJ"}
_STRING_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                   "SHORT_BINSTRING"}  # fmt: skip


@dataclass
class WeightsFile:
    """What a weight file held: its tensors, its format and where they were saved from."""

    tensors: dict[str, torch.Tensor]
    format: str
    saved_from: list[str] = field(default_factory=list)  # device names, e.g. ["cuda:0"]
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata


def sniff(head: bytes) -> str:
    """``"zip"``, ``"safetensors"``, ``"pickle"``, ``"numpy"`` or ``"unknown"`` from a file's first bytes."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000:
            return "safetensors"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"c", b"}", b"]", b"l", b"d"):
        return "pickle"
    return "unknown"


def scan_pickle(data: bytes | IO[bytes], source: str) -> list[tuple[str, str]]:
    """Walk one pickle's opcodes without executing it; refuse imports outside the allow list.

    Returns the ``(module, name)`` pairs it imports. Raises :class:`UnsafeFileError`.
    """
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    imports: list[tuple[str, str]] = []
    strings: list[Any] = []  # values pushed, as far as STACK_GLOBAL needs them
    memo: dict[int, Any] = {}
    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if name in _REFUSED_OPCODES:
                raise UnsafeFileError(f"{source}: refused: its pickle uses opcode {name}; nothing was run")
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                imports.append((module, attr))
            elif name == "STACK_GLOBAL":
                if len(strings) < 2 or not all(isinstance(s, str) for s in strings[-2:]):
                    raise UnsafeFileError(f"{source}: refused: its pickle imports a name it builds at load time")
                imports.append((strings[-2], strings[-1]))
            elif name in _STRING_OPCODES:
                strings.append(arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = strings[-1] if strings else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = strings[-1] if strings else None  # type: ignore[arg-type]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                strings.append(memo.get(int(arg)))  # type: ignore[arg-type]
            else:
                strings.append(None)
            if imports and imports[-1] not in ALLOWED_GLOBALS:
                module, attr = imports[-1]
                raise UnsafeFileError(
                    f"{source}: refused: it would import {module}.{attr} when loaded, and torchwork loads "
                    "only tensors and plain containers; nothing was run"
                )
    except UnsafeFileError:
        raise
    except Exception as exc:  # a malformed pickle: pickletools raises ValueError and friends
        raise UnsafeFileError(f"{source}: refused: not a readable pickle ({exc}); nothing was run") from None
    return imports


def _scan_torch_zip(raw: bytes, source: str) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        names = archive.namelist()
    except zipfile.BadZipFile as exc:
        raise InputError(f"{source}: not a readable PyTorch file ({exc})") from None
    pickles = [n for n in names if n.endswith(".pkl")]
    if not any(n.endswith("data.pkl") for n in pickles):
        raise InputError(f"{source}: a zip file, but not one written by torch.save (no data.pkl)")
    for name in pickles:
        try:
            scan_pickle(archive.read(name), f"{source} ({name})")
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InputError(f"{source}: damaged PyTorch file ({exc})") from None


def _scan_legacy(raw: bytes, source: str) -> None:
    """The pre-zip ``torch.save`` stream: five pickles in a row, then raw storage bytes."""
    stream = io.BytesIO(raw)
    for _ in range(5):
        scan_pickle(stream, source)


def _torch_load(raw: bytes, source: str) -> tuple[Any, list[str]]:
    locations: list[str] = []

    def on_cpu(storage: Any, location: str) -> Any:
        locations.append(location)
        return storage  # keep every storage on the CPU: a GPU file loads on any machine

    try:
        obj = torch.load(io.BytesIO(raw), map_location=on_cpu, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise UnsafeFileError(f"{source}: refused by torch.load(weights_only=True): {first}; nothing was run") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, struct.error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{source}: damaged or not a PyTorch file ({first})") from None
    return obj, sorted(set(locations))


def _flat_tensors(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.nn.Module):  # weights_only never builds one; defensive
        raise UnsafeFileError(f"{source}: holds a whole module, not a state_dict")
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise InputError(f"{source}: expected a state_dict (a mapping of names to tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"{source}: entries that are not tensors: {', '.join(bad[:5])}")
    return {k: v.detach() if isinstance(v, torch.nn.Parameter) else v for k, v in obj.items()}


def load_weights(path: str | os.PathLike[str], *, safetensors_only: bool = False) -> WeightsFile:
    """Read a state_dict from a ``.pth``/``.pt`` or ``.safetensors`` file, safely, onto the CPU.

    ``safetensors_only`` refuses anything else (for the files torchwork itself writes).
    """
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise InputError(f"{source}: is a folder, not a weights file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    if not raw:
        raise InputError(f"{source}: empty file")
    kind = sniff(raw[:16])
    if kind == "safetensors":
        return _load_safetensors(raw, source)
    if safetensors_only:
        what = {"zip": "a PyTorch zip", "pickle": "a pickle"}.get(kind, "something else")
        raise UnsafeFileError(f"{source}: refused: expected a safetensors file, found {what}; nothing was run")
    if kind == "zip":
        _scan_torch_zip(raw, source)
    elif kind == "pickle":
        _scan_legacy(raw, source)
    else:
        raise InputError(f"{source}: not a weights file (neither safetensors nor a PyTorch .pth/.pt)")
    obj, locations = _torch_load(raw, source)
    return WeightsFile(_flat_tensors(obj, source), "pytorch", locations)


def _load_safetensors(raw: bytes, source: str) -> WeightsFile:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(raw)
        (n,) = struct.unpack("<Q", raw[:8])
        import json

        header = json.loads(raw[8 : 8 + n])
    except (SafetensorError, ValueError, struct.error) as exc:
        raise InputError(f"{source}: damaged safetensors file ({exc})") from None
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
