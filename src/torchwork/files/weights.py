"""Weights on disk: the tutorial's ``.pth`` state_dicts and safetensors, saved atomically and loaded safely.

``save_state_dict`` writes what the tutorial's ``torch.save(model.state_dict(), path)`` writes,
atomically. Loading never runs code from a file and never trusts its sizes:

* every file is read once, whole, and only if it is a regular file no larger than the memory
  available allows (a FIFO or ``/dev/zero`` is refused before a byte is read); everything after
  works on those bytes, so a file swapped during the load is never the one loaded;
* formats are told by their bytes, never by the extension;
* safetensors: the header's length is checked against the file and a limit before any JSON is
  parsed, duplicate keys are refused, then the ``safetensors`` library builds the tensors;
* PyTorch ``.pth``/``.pt`` (the zip ``torch.save`` writes): the zip's end record must end the
  file, and every entry must be stored (not compressed or encrypted), inside the file, and named
  once, without a NUL, alike in its local header: then every zip reader reads the same entries.
  The pickle is read with the standard library's ``pickletools`` (which runs nothing) to refuse any
  global a state_dict does not use (torch's weights-only loader allows ``bytearray``, which can
  ask for gigabytes from a few bytes) and to bound its opcodes, stack and memo. Only then is it
  loaded by ``torch.load(weights_only=True)``, onto the CPU, and each tensor is checked to fit in
  its storage, all of them together in a small multiple of the file's size.

Legacy (pre-1.6) ``torch.save`` streams are refused: their storages' sizes can only be known by
running the pickle.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import re
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from torchwork.core.errors import InputError, UnsafeFileError, one_line
from torchwork.core.runtime import available_memory, human_size
from torchwork.files.atomic import atomic_write, ensure_dir

MAX_SAFETENSORS_HEADER = 16 << 20  # torchwork's checkpoints hold ~1 MB headers for long histories
MAX_PICKLE_BYTES = 16 << 20  # a state_dict's pickle is ~100 bytes a tensor: room for 160k tensors
MAX_OPCODES = 4_000_000  # ~30 a tensor; bounds the time to read a pickle to a few seconds
MAX_STACK = 100_000  # values on a pickle's stack at once (pickle batches items by 1000)
MAX_MEMO = 1_000_000  # values a pickle may keep for later
VIEW_FACTOR = 4  # all tensors together may view at most this many times the file's bytes (tied weights share)
_READ_CHUNK = 0x7FFF_F000  # the most one read(2) returns on Linux
_EOCD = struct.Struct("<4sHHHHIIH")  # a zip's end of central directory record, without a comment
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # a zip entry's local header
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8"}  # fmt: skip
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_REBUILDERS = {"_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"}


@dataclass
class WeightsFile:
    """What a weight file held: its tensors, its format and where they were saved from."""

    tensors: dict[str, torch.Tensor]
    format: str
    saved_from: list[str] = field(default_factory=list)  # device names, e.g. ["cuda:0"]
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata


def refuse(source: str, rule: str) -> NoReturn:
    raise UnsafeFileError(f"{source}: refused: {rule}; nothing was run")


def shown(value: Any, limit: int = 60) -> str:
    """A name or value for a one-line message: printable, clipped."""
    text = value if isinstance(value, str) and value.isprintable() else repr(value)[: limit + 2]
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------- reading
def _not_regular(source: str, mode: int, what: str) -> InputError:
    if stat.S_ISDIR(mode):
        return InputError(f"{source}: is a folder, not a {what}")
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))  # fmt: skip
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return InputError(f"{source}: is {kind}, not a regular file; refused before reading")


def read_regular_file(
    path: str | os.PathLike[str], source: str | None = None, check: Callable[[bytes, int], None] | None = None,
    what: str = "weights file",
) -> bytes:  # fmt: skip
    """The whole of a regular file, read once; anything else (FIFO, device, folder) refused before reading.

    The mode is checked before opening (opening a device can have effects) and again on the open
    descriptor; the open is non-blocking, and exactly ``st_size`` bytes are read, so a file that
    grows meanwhile cannot make this read forever. ``check(head, size)`` sees the first 16 bytes
    and the size before the rest is read, and may refuse the file.
    """
    source = str(path) if source is None else source
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(source, mode, what)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(source, info.st_mode, what)
        if check is not None:
            check(os.pread(fd, 16, 0), info.st_size)
        chunks, got = [], 0
        while got < info.st_size:
            chunk = os.read(fd, min(info.st_size - got, _READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if got != info.st_size:
        raise InputError(f"{source}: changed while being read ({info.st_size} bytes expected, {got} read)")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def sniff(head: bytes) -> str:
    """``"zip"``, ``"zip-other"``, ``"safetensors"``, ``"pickle"``, ``"numpy"`` or ``"unknown"``, from the first bytes.

    A zip is told only by a local file header (``PK\\x03\\x04``), as ``torch.load`` tells it.
    """
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"PK"):
        return "zip-other"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 1 << 40:
            return "safetensors"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"c", b"}", b"]", b"l", b"d"):
        return "pickle"
    return "unknown"


def _check_head(head: bytes, size: int, source: str) -> None:
    """What the first bytes and the size refuse before the file is read."""
    available = available_memory()
    if available is not None and 2 * size > available:  # the bytes, then the tensors built from them
        raise InputError(f"{source}: loading it needs about {human_size(2 * size)} and this machine has "
                         f"{human_size(available)} available")  # fmt: skip
    if sniff(head) != "safetensors":
        return
    (n,) = struct.unpack_from("<Q", head, 0)
    if n > MAX_SAFETENSORS_HEADER:
        refuse(source, f"its safetensors header declares {n} bytes, over the limit of {MAX_SAFETENSORS_HEADER}")
    if 8 + n > size:
        raise InputError(f"{source}: damaged safetensors file (its header declares {n} bytes, the file holds "
                         f"{size - 8} after the length)")  # fmt: skip


# ------------------------------------------------------------------- loading
def load_weights(path: str | os.PathLike[str], *, safetensors_only: bool = False) -> WeightsFile:
    """A state_dict from a ``.pth``/``.pt`` or ``.safetensors`` file, loaded safely onto the CPU.

    Every refusal is one :class:`InputError` or :class:`UnsafeFileError` line naming the file and
    the rule. ``safetensors_only`` refuses anything else (for the files torchwork itself writes).
    """
    source = str(path)
    raw = read_regular_file(Path(path), source, lambda head, size: _check_head(head, size, source))
    return load_weights_bytes(raw, source, safetensors_only=safetensors_only)


def load_weights_bytes(raw: bytes, source: str, *, safetensors_only: bool = False) -> WeightsFile:
    """:func:`load_weights` of bytes already read (say, the very bytes whose hash was checked)."""
    if not raw:
        raise InputError(f"{source}: empty file")
    kind = sniff(raw[:16])
    if kind == "safetensors":
        return _load_safetensors(raw, source)
    if safetensors_only:
        what = {"zip": "a PyTorch zip", "pickle": "a pickle"}.get(kind, "something else")
        refuse(source, f"expected a safetensors file, found {what}")
    if kind == "zip-other":
        refuse(source, f"it starts with the zip signature {raw[:4]!r}, not a local file header: torch.load would "
                       "read it as a legacy stream while zip readers see an archive")  # fmt: skip
    if kind == "pickle":
        refuse(source, "a legacy (PyTorch < 1.6) torch.save stream, whose storage sizes only running it tells; "
                       "load it once with torch.load(weights_only=True) and save it again")  # fmt: skip
    if kind != "zip":
        raise InputError(f"{source}: not a weights file (neither safetensors nor a PyTorch .pth/.pt)")
    pkl = _check_torch_zip(raw, source)
    _check_pickle(pkl, source)
    locations: list[str] = []

    def on_cpu(storage: Any, location: str) -> Any:
        if location not in locations:
            locations.append(location)
        return storage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's advice about weights_only: it is on
            obj = torch.load(io.BytesIO(raw), map_location=on_cpu, weights_only=True)
    except pickle.UnpicklingError as exc:
        refuse(source, f"torch's weights-only loader refused it ({_torch_reason(exc)})")
    except (RuntimeError, TypeError, ValueError, AttributeError, IndexError, KeyError, EOFError, MemoryError,
            OverflowError) as exc:  # fmt: skip
        raise InputError(f"{source}: not a readable PyTorch file ({_torch_reason(exc)})") from None
    return WeightsFile(_checked_tensors(obj, source, len(raw)), "pytorch", locations)


def _torch_reason(exc: BaseException) -> str:
    """The part of torch's message that says what was wrong (its advice about weights_only, dropped)."""
    text = one_line(exc, None, first_line=False)
    operand = re.search(r"Unsupported operand (\d+)", text)
    if operand is not None:  # an opcode byte, in decimal: name it
        op = next((o for o in pickletools.opcodes if o.code == chr(int(operand[1]))), None)
        return f"its pickle uses the opcode {op.name if op else operand[1]}, which that loader does not take"
    if "WeightsUnpickler error:" in text:
        text = text[text.find("WeightsUnpickler error:") :].removeprefix("WeightsUnpickler error:").strip()
    return one_line(text.split(" Check the documentation")[0].split(" In PyTorch 2.6")[0], 160) or type(exc).__name__


def _check_torch_zip(raw: bytes, source: str) -> bytes:
    """The pickle of a ``torch.save`` zip whose every entry any zip reader reads the same way."""
    if len(raw) < _EOCD.size or raw[-_EOCD.size : -_EOCD.size + 4] != b"PK\x05\x06":
        raise InputError(f"{source}: damaged PyTorch file (no zip end record at the end of the file)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise InputError(f"{source}: damaged PyTorch file ({one_line(str(exc), 120)})") from None
    seen: set[str] = set()
    for entry in entries:
        name = entry.orig_filename
        if "\0" in name:
            refuse(source, f"entry {shown(name)} has a NUL byte in its name (zip readers stop there, or not)")
        if name.lower() in seen:
            refuse(source, f"two entries are named {shown(name)} (without case, as some readers compare)")
        seen.add(name.lower())
        if entry.compress_type != zipfile.ZIP_STORED:
            refuse(source, f"entry {shown(name)} is compressed (torch.save stores entries as they are)")
        if entry.flag_bits & 0x1:
            refuse(source, f"entry {shown(name)} is encrypted")
        start = entry.header_offset
        if start < 0 or start + _LOCAL.size > len(raw):
            raise InputError(f"{source}: damaged PyTorch file (entry {shown(name)} starts past the end)")
        local = _LOCAL.unpack_from(raw, start)
        name_len, extra_len = local[9], local[10]
        local_name = raw[start + _LOCAL.size : start + _LOCAL.size + name_len]
        if local[0] != b"PK\x03\x04" or local_name != entry.filename.encode("utf-8", "surrogateescape"):
            refuse(source, f"entry {shown(name)} is named otherwise in its local header")
        if start + _LOCAL.size + name_len + extra_len + entry.file_size > len(raw):
            raise InputError(f"{source}: damaged PyTorch file (entry {shown(name)} runs past the end of the file)")
    pickles = [e for e in entries if e.filename.endswith("/data.pkl") and e.filename.count("/") == 1]
    if len(pickles) != 1:
        raise InputError(f"{source}: a zip file, but not one written by torch.save (no single data.pkl)")
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        refuse(source, f"its data.pkl holds {pickles[0].file_size} bytes, over the limit of {MAX_PICKLE_BYTES}")
    try:
        return archive.read(pickles[0])
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:  # a bad CRC-32, a short entry
        raise InputError(f"{source}: damaged PyTorch file ({one_line(str(exc), 120)})") from None


def _allowed(module: Any, name: Any) -> bool:
    """The globals ``torch.save`` writes for a state_dict (and nothing that builds or calls anything else)."""
    if module == "collections":
        return name == "OrderedDict"
    if module == "torch._utils":
        return name in _REBUILDERS
    if module == "torch.storage":
        return name == "UntypedStorage"
    if module == "torch" and isinstance(name, str):
        return name.endswith("Storage") or isinstance(getattr(torch, name, None), torch.dtype)
    return False


def _check_pickle(data: bytes, source: str) -> None:
    """Read the pickle's opcodes (``pickletools`` runs nothing): only allowed globals, within the limits.

    A shadow stack holds each value as its string (what a global names) or None, so that a
    protocol-4 ``STACK_GLOBAL`` is checked as a ``GLOBAL`` is.
    """
    stack: list[str | None] = []
    marks: list[int] = []
    memo: dict[int, str | None] = {}
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(data)):
            if count >= MAX_OPCODES:
                refuse(source, f"its pickle would run past {MAX_OPCODES} opcodes")
            name = op.name
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                if not _allowed(module, attr):
                    refuse(source, f"its pickle names {shown(module + '.' + attr)}, which a state_dict never holds")
            elif name == "STACK_GLOBAL":
                if len(stack) < 2 or not _allowed(stack[-2], stack[-1]):
                    what = f"{stack[-2]}.{stack[-1]}" if len(stack) >= 2 and None not in stack[-2:] else "a global"
                    refuse(source, f"its pickle names {shown(what)}, which a state_dict never holds")
            elif name.startswith("EXT") or name in ("OBJ", "NEWOBJ", "NEWOBJ_EX"):
                refuse(source, f"its pickle builds objects with {name}, which a state_dict never does")
            if name in _MEMO_PUTS or name == "MEMOIZE":  # the top of the stack, kept for later: no pop, no push
                memo[int(str(arg)) if name in _MEMO_PUTS else len(memo)] = stack[-1] if stack else None
                if len(memo) > MAX_MEMO:
                    refuse(source, f"its pickle keeps more than {MAX_MEMO} values for later")
                continue
            before = op.stack_before
            if pickletools.markobject in before:
                if not marks:
                    raise ValueError("a mark is missing")
                del stack[marks.pop() :]
                del stack[len(stack) - before.index(pickletools.markobject) :]
            else:
                if len(before) > len(stack):
                    raise ValueError("its stack runs out")
                del stack[len(stack) - len(before) :]
            after = op.stack_after
            if after == [pickletools.markobject]:
                marks.append(len(stack))
            elif after:
                value = arg if name in _STRING_OPS else memo.get(int(str(arg))) if name in _MEMO_GETS else None
                stack.extend([value if isinstance(value, str) else None] * len(after))
            if len(stack) + len(marks) > MAX_STACK:
                refuse(source, f"its pickle holds more than {MAX_STACK} values on its stack")
    except UnsafeFileError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, EOFError, struct.error) as exc:
        raise InputError(f"{source}: not a readable PyTorch file (its pickle: {one_line(str(exc), 120)})") from None


def _checked_tensors(obj: Any, source: str, file_bytes: int) -> dict[str, torch.Tensor]:
    """A flat state_dict whose every tensor fits in its storage, all of them in a few times the file."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise InputError(f"{source}: expected a state_dict (a mapping of names to tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"{source}: entries that are not tensors: {', '.join(shown(k) for k in bad[:5])}")
    total = 0
    for name, t in obj.items():
        nbytes = t.numel() * t.element_size()
        held = t.untyped_storage().nbytes()
        if nbytes > held:
            refuse(source, f"tensor {shown(name)} has {t.numel()} elements, more than its storage holds "
                           f"({held // max(t.element_size(), 1)}): a view that repeats its bytes")  # fmt: skip
        total += nbytes
    if total > VIEW_FACTOR * file_bytes + (1 << 20):
        refuse(source, f"its tensors view {total} bytes, {total // max(file_bytes, 1)} times the file's size")
    return {k: v.detach() if isinstance(v, nn.Parameter) else v for k, v in obj.items()}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {shown(next(k for k in keys if keys.count(k) > 1))} in the header")
    return dict(pairs)


def _load_safetensors(raw: bytes, source: str) -> WeightsFile:
    """The header's length checked against the file and :data:`MAX_SAFETENSORS_HEADER` before any parsing."""
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
        raise InputError(f"{source}: damaged safetensors file ({one_line(str(exc), 200)})") from None
    return WeightsFile(tensors, "safetensors", [], header.get("__metadata__") or {})


# ------------------------------------------------------------------- saving
def save_weights_bytes(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
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
    mismatched = [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
                  for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]  # fmt: skip
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
