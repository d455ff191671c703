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
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import pickletools
import re
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

import torch

from torchwork.core.errors import InputError, UnsafeFileError

_ITEMSIZE = {"Float": 4, "Double": 8, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
             "Byte": 1, "Bool": 1}  # fmt: skip
_STORAGES = {f"{t}Storage": size for t, size in _ITEMSIZE.items()}
_REBUILDERS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
               "_rebuild_parameter_with_state")  # fmt: skip
ALLOWED_GLOBALS = frozenset(
    {("collections", "OrderedDict")} | {("torch", s) for s in _STORAGES} | {("torch._utils", n) for n in _REBUILDERS}
)

MAX_SAFETENSORS_HEADER = 16 << 20  # torchwork's checkpoints hold ~1 MB headers for long histories
MAX_PICKLE_BYTES = 16 << 20  # a state_dict's pickle is ~100 bytes a tensor: room for 160k tensors
PICKLE_VALUE_BUDGET = 256 << 20  # estimated bytes of values the inert reader may build for one file
MAX_OPCODES = 4_000_000  # opcodes for one file (~30 a tensor): bounds the scan's time to a few seconds
VIEW_BYTES_FACTOR = 64  # all tensors together may view at most 64 times the file's size
MAX_STACK = 100_000  # values a pickle may hold on its stack at once: pickle batches items by 1000
_MAX_INT = (1 << 63) - 1  # torch's sizes, strides and offsets are int64
_READ_CHUNK = 0x7FFF_F000  # the most one read(2) returns on Linux
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_KEY = re.compile(r"[0-9A-Za-z_.\-]{1,64}")
_LOCATION = re.compile(r"[0-9A-Za-z_.:\-]{1,64}")
_SMALL_RECORD = re.compile(rb"[0-9]{1,40}\n?")
_META_RECORDS = {"version", ".data/version", ".format_version", ".storage_alignment", ".data/serialization_id"}


@dataclass
class WeightsFile:
    """What a weight file held: its tensors, its format and where they were saved from."""

    tensors: dict[str, torch.Tensor]
    format: str
    saved_from: list[str] = field(default_factory=list)  # device names, e.g. ["cuda:0"]
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata


def _refuse(source: str, rule: str) -> NoReturn:
    raise UnsafeFileError(f"{source}: refused: {rule}; nothing was run")


def _plain(value: Any) -> bool:
    return isinstance(value, str | bytes | float | bool | type(None)) or (
        isinstance(value, int) and value.bit_length() <= 128
    )


def _show(value: Any, limit: int = 60) -> str:
    """A value for a one-line message: printable, quoted when odd, clipped; a kind for anything else.

    Never the repr of a built structure: a pickle can share one list a billion ways, and an int's
    decimal form can be too long for Python to write.
    """
    if isinstance(value, str) and value.isprintable():
        text = value
    elif isinstance(value, str | bytes):
        text = repr(value[: limit + 1])
    elif _plain(value) or (isinstance(value, tuple | list) and len(value) <= 8 and all(map(_plain, value))):
        text = repr(value)
    elif isinstance(value, _Global):
        text = f"{value.module}.{value.name}"
    elif isinstance(value, int):
        text = f"an integer of {value.bit_length()} bits"
    else:
        text = _a(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------ reading
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
    descriptor; the open is non-blocking (a FIFO cannot block it), and exactly ``st_size`` bytes are
    read, so a file that grows while being read cannot make this read forever. ``check(head, size)``
    sees the first 16 bytes and the size before the rest is read, and may refuse the file.
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
    """``"zip"``, ``"zip-other"``, ``"safetensors"``, ``"pickle"``, ``"numpy"`` or ``"unknown"`` from the first bytes.

    A zip is told only by a local file header (``PK\\x03\\x04``), as ``torch.load`` tells it; a file
    that starts with another zip signature is ``"zip-other"`` (torch would read it as a legacy
    stream while zip readers see an archive).
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


# ------------------------------------------------------- the inert unpickler
@dataclass(eq=False)
class _Global:
    module: str
    name: str


@dataclass(eq=False)
class _Dict:
    items: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(eq=False)
class _Set:
    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class _Storage:
    type_name: str
    key: str
    location: str
    numel: int
    itemsize: int


@dataclass(eq=False)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.size)


def _type_name(value: Any) -> str:
    names = {_Dict: "dict", _Set: "set", _Tensor: "Tensor", _Storage: "storage", _Global: "global"}
    return names.get(type(value), type(value).__name__)


def _a(value: Any) -> str:
    """``"an int"``, ``"a str"``: the kind of a value, for a message."""
    name = _type_name(value)
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


class _InertUnpickler:
    """Follows one pickle's opcodes (``pickletools.genops``) and builds plain values; imports and calls nothing.

    GLOBAL/STACK_GLOBAL give inert :class:`_Global` records (refused outside :data:`ALLOWED_GLOBALS`),
    BINPERSID gives what ``persistent`` makes of the id (a :class:`_Storage`), and REDUCE is allowed
    only for ``OrderedDict()`` and torch's tensor rebuilders, whose arguments are checked here: every
    view must lie inside its storage. ``budget`` (``[bytes, opcodes]``, shared by the pickles of one
    file) bounds the estimated memory of what is built and the time it takes.
    """

    def __init__(self, source: str, budget: list[int], persistent: Callable[[Any], Any] | None = None) -> None:
        """``budget`` is ``[bytes, opcodes]`` left for the file, shared by its pickles."""
        self.source, self.budget, self.persistent = source, budget, persistent
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.buried = 0  # values on the stacks below the last MARK
        self.memo: dict[int, Any] = {}
        self.tensors: list[_Tensor] = []

    def refuse(self, rule: str) -> NoReturn:
        _refuse(self.source, rule)

    def charge(self, nbytes: int) -> None:
        self.budget[0] -= nbytes
        if self.budget[0] < 0:
            self.refuse(f"its pickle builds more than {PICKLE_VALUE_BUDGET >> 20} MiB of values")

    def push(self, value: Any, cost: int = 8) -> None:
        self.charge(cost)
        self.stack.append(value)
        if len(self.stack) + self.buried > MAX_STACK:
            self.refuse(f"its pickle holds more than {MAX_STACK} values on its stack at once")

    def pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        self.buried -= len(self.stack) + 1
        return items

    def run(self, stream: IO[bytes]) -> Any:
        """The value the pickle in ``stream`` would build, as inert records; the stream is left after STOP.

        Time is linear in the pickle's length, which may not pass :data:`MAX_PICKLE_BYTES` of the stream.
        """
        try:
            budget = self.budget
            for op, arg, pos in pickletools.genops(stream):
                name = op.name
                budget[1] -= 1
                if budget[1] < 0 or (pos is not None and pos > MAX_PICKLE_BYTES):
                    self.refuse(f"its pickles run past {MAX_OPCODES} opcodes or {MAX_PICKLE_BYTES} bytes, the limits "
                                "for a state_dict")  # fmt: skip
                if name == "STOP":
                    if len(self.stack) != 1 or self.metastack:
                        self.refuse("its pickle is malformed (its stack does not end with one value)")
                    return self.stack.pop()
                self.step(name, arg)
        except UnsafeFileError:
            raise
        except Exception as exc:  # pickletools raises ValueError and friends; a bad stack IndexError
            detail = _show(str(exc) or type(exc).__name__, 120)
            self.refuse(f"not a readable pickle ({detail})")
        self.refuse("not a readable pickle (no STOP)")

    def step(self, name: str, arg: Any) -> None:
        """One opcode, as pickle's own unpickler would do it, with inert values."""
        stack = self.stack
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            self.charge(64)
            self.memo[len(self.memo) if name == "MEMOIZE" else int(arg)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg) not in self.memo:
                self.refuse(f"its pickle is malformed (memo {int(arg)} read before it is written)")
            self.push(self.memo[int(arg)])
        elif name in ("PROTO", "FRAME"):
            if name == "PROTO" and not 0 <= arg <= 5:
                self.refuse(f"its pickle declares protocol {arg}")
        elif name in _CONSTANTS:
            size = len(arg) if isinstance(arg, str | bytes) else arg.bit_length() // 8 if isinstance(arg, int) else 0
            self.push(arg, 40 + size)
        elif name in _CONSTANT_OPS:
            self.push(_CONSTANT_OPS[name])
        elif name == "EMPTY_LIST":
            self.push([], 64)
        elif name == "EMPTY_DICT":
            self.push(_Dict(), 120)
        elif name == "EMPTY_TUPLE":
            self.push(())
        elif name == "EMPTY_SET":
            self.push(_Set(), 120)
        elif name == "MARK":
            self.charge(64)
            self.metastack.append(stack)
            self.buried += len(stack) + 1  # a MARK counts as a value: nested MARKs are bounded too
            self.stack = []
            if self.buried > MAX_STACK:
                self.refuse(f"its pickle holds more than {MAX_STACK} values on its stack at once")
        elif name in ("LIST", "TUPLE", "DICT", "FROZENSET"):
            items = self.pop_mark()
            if name == "DICT":
                if len(items) % 2:
                    self.refuse("its pickle is malformed (a dict with an odd number of items)")
                self.push(_Dict(list(zip(items[::2], items[1::2], strict=True))), 120 + 16 * len(items))
            else:
                kind = {"LIST": list, "TUPLE": tuple, "FROZENSET": _Set}[name]
                self.push(kind(items), 64 + 8 * len(items))  # type: ignore[operator]
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(stack) < n:
                self.refuse(f"its pickle is malformed ({name} on a short stack)")
            stack[-n:] = [tuple(stack[-n:])]
            self.charge(64)
        elif name in ("APPEND", "APPENDS"):
            items = [stack.pop()] if name == "APPEND" else self.pop_mark()
            target = self.stack[-1]
            if type(target) is not list:
                self.refuse(f"its pickle appends to {_a(target)}")
            self.charge(8 * len(items))
            target.extend(items)
        elif name in ("SETITEM", "SETITEMS"):
            items = [stack.pop(-2), stack.pop()] if name == "SETITEM" else self.pop_mark()
            target = self.stack[-1]
            if not isinstance(target, _Dict) or len(items) % 2:
                self.refuse(f"its pickle sets items on {_a(target)}")
            self.charge(16 * len(items))
            target.items.extend(zip(items[::2], items[1::2], strict=True))
        elif name == "ADDITEMS":
            items = self.pop_mark()
            target = self.stack[-1]
            if not isinstance(target, _Set):
                self.refuse(f"its pickle adds set items to {_a(target)}")
            self.charge(8 * len(items))
            target.items.extend(items)
        elif name == "POP":
            if stack:
                stack.pop()
            else:
                self.pop_mark()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.push(stack[-1])
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
            else:
                attr, module = stack.pop(), stack.pop()
                if not isinstance(module, str) or not isinstance(attr, str):
                    self.refuse("its pickle imports a name it builds at load time")
            if (module, attr) not in ALLOWED_GLOBALS:
                self.refuse(
                    f"it would import {_show(module)}.{_show(attr)} when loaded, and torchwork loads only tensors "
                    "and plain containers"
                )
            self.push(_Global(module, attr), 100)
        elif name == "REDUCE":
            args, func = stack.pop(), stack.pop()
            if not isinstance(func, _Global) or type(args) is not tuple:
                self.refuse(f"its pickle calls {_a(func)} with {_type_name(args)} arguments")
            self.push(self.call(func, args), 200)
        elif name == "BUILD":  # torch.save: an OrderedDict's attributes (state_dict's _metadata)
            stack.pop()
            if not isinstance(stack[-1], _Dict):  # on a tensor, torch would call set_(): a view never checked
                self.refuse(f"its pickle sets the state of {_a(stack[-1])}")
        elif name == "BINPERSID":
            pid = stack.pop()
            if self.persistent is None:
                self.refuse("its pickle refers to outside data (a persistent id) where none is allowed")
            self.push(self.persistent(pid), 200)
        else:  # INST, OBJ, NEWOBJ(_EX), EXT1/2/4, PERSID, NEXT_BUFFER, READONLY_BUFFER, ...
            self.refuse(f"its pickle uses opcode {name}")

    # -------------------------------------------------------------- calls
    def call(self, func: _Global, args: tuple[Any, ...]) -> Any:
        if (func.module, func.name) == ("collections", "OrderedDict"):
            if args:
                self.refuse("its pickle calls OrderedDict with arguments (torch.save calls it with none)")
            return _Dict()
        if func.module == "torch":
            self.refuse(f"its pickle calls torch.{func.name} (storages come only from the archive)")
        if func.name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            arity = 3 if func.name == "_rebuild_parameter" else 4
            self.arity(func.name, args, arity, arity)
            if not isinstance(args[0], _Tensor):
                self.refuse(f"{func.name} gets {_a(args[0])}, not a tensor")
            self.flag(func.name, args[1], args[2])
            if arity == 4 and not (args[3] is None or (isinstance(args[3], _Dict) and not args[3].items)):
                self.refuse(f"{func.name} gets {_a(args[3])} as its state (attributes torch would set)")
            return args[0]
        low, high = {"_rebuild_tensor": (4, 4), "_rebuild_tensor_v2": (6, 7), "_rebuild_tensor_v3": (7, 8)}[func.name]
        self.arity(func.name, args, low, high)
        storage = args[0]
        if not isinstance(storage, _Storage):
            self.refuse(f"{func.name} gets {_a(storage)}, not a storage from the archive")
        offset = self.count(func.name, "storage offset", args[1])
        size, stride = self.counts(func.name, "size", args[2]), self.counts(func.name, "stride", args[3])
        if len(size) != len(stride):
            self.refuse(f"{func.name} gets size {_show(size)} and stride {_show(stride)} of different lengths")
        if func.name != "_rebuild_tensor":
            self.flag(func.name, args[4], args[5])
        if func.name == "_rebuild_tensor_v3":
            self.refuse(f"{func.name} gets {_a(args[6])} as its dtype")  # a dtype global is never allowed
        if len(args) == 7 and not (
            args[6] is None
            or (isinstance(args[6], _Dict) and all(type(k) is str and type(v) is bool for k, v in args[6].items))
        ):
            self.refuse(f"{func.name} gets {_a(args[6])} as its metadata (flags by name expected)")
        tensor = _Tensor(storage, offset, size, stride)
        self.check_view(tensor)
        self.tensors.append(tensor)
        return tensor

    def arity(self, name: str, args: tuple[Any, ...], low: int, high: int) -> None:
        if not low <= len(args) <= high:
            expected = str(low) if low == high else f"{low} or {high}"
            self.refuse(f"its pickle calls {name} with {len(args)} arguments, not {expected}")

    def flag(self, name: str, requires_grad: Any, hooks: Any) -> None:
        if type(requires_grad) is not bool:
            self.refuse(f"{name} gets {_a(requires_grad)} as requires_grad")
        if not isinstance(hooks, _Dict) or hooks.items:
            self.refuse(f"{name} gets {_a(hooks)} as its backward hooks (torch.save writes an empty OrderedDict)")

    def count(self, name: str, what: str, value: Any) -> int:
        if type(value) is not int or not 0 <= value <= _MAX_INT:
            self.refuse(f"{name} gets {_show(value)} as its {what} (a count from 0 to 2**63-1 is expected)")
        return value

    def counts(self, name: str, what: str, value: Any) -> tuple[int, ...]:
        if type(value) is not tuple or len(value) > 64:
            self.refuse(f"{name} gets {_a(value)} as its {what} (a tuple of at most 64 counts)")
        return tuple(self.count(name, what, v) for v in value)

    def check_view(self, t: _Tensor) -> None:
        """A view lies inside its storage and has no more elements than it: what torch builds is bounded."""
        s = t.storage
        shape, where = _show(list(t.size)), f"storage '{s.key}' of {s.numel} elements"
        if t.numel > s.numel:
            self.refuse(f"a tensor of shape {shape} has {t.numel} elements, more than its {where} (a view that "
                        f"repeats values, stride {_show(list(t.stride))})")  # fmt: skip
        last = t.offset + sum((n - 1) * k for n, k in zip(t.size, t.stride, strict=True)) if t.numel else t.offset - 1
        if t.offset > s.numel or last >= s.numel:
            self.refuse(f"a tensor of shape {shape}, stride {_show(list(t.stride))} at offset {t.offset} reaches "
                        f"element {last} of its {where}")  # fmt: skip

    # ----------------------------------------------------------- storages
    def storage(self, seen: dict[str, _Storage], stype: Any, key: Any, location: Any, numel: Any) -> _Storage:
        """One storage a persistent id declares, the same record each time its key comes back."""
        if not isinstance(stype, _Global) or stype.module != "torch" or stype.name not in _STORAGES:
            self.refuse(f"a persistent id names {_show(stype)} as its storage type")
        if isinstance(location, bytes):
            location = location.decode("ascii", "replace")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            self.refuse(f"a persistent id names the storage key {_show(key)}")
        if not isinstance(location, str) or not _LOCATION.fullmatch(location):
            self.refuse(f"storage '{key}' names the device {_show(location)}")
        numel = self.count("a persistent id", "number of elements", numel)
        record = _Storage(stype.name, key, location, numel, _STORAGES[stype.name])
        known = seen.setdefault(key, record)
        if (known.type_name, known.numel) != (record.type_name, record.numel):
            self.refuse(f"storage '{key}' is declared twice, as {known.numel} x {known.type_name} and as "
                        f"{record.numel} x {record.type_name}")  # fmt: skip
        return known


_CONSTANTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT", "STRING",
              "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
              "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}  # fmt: skip
_CONSTANT_OPS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def _state_dict_check(value: Any, source: str) -> list[tuple[str, _Tensor]]:
    """The inert value of a whole file must be a mapping of names to tensors."""
    if not isinstance(value, _Dict) or not all(isinstance(k, str) for k, _ in value.items):
        raise InputError(f"{source}: expected a state_dict (a mapping of names to tensors), got {_type_name(value)}")
    bad = [k for k, v in value.items if not isinstance(v, _Tensor)]
    if bad:
        raise InputError(f"{source}: entries that are not tensors: {', '.join(_show(k) for k in bad[:5])}")
    return value.items


def _check_totals(unpickler: _InertUnpickler, storages: dict[str, _Storage], file_size: int, source: str) -> None:
    stored = sum(s.numel * s.itemsize for s in storages.values())
    if stored > file_size:
        _refuse(source, f"its storages declare {stored} bytes, more than the file's {file_size}")
    viewed = sum(t.numel * t.storage.itemsize for t in unpickler.tensors)
    if viewed > VIEW_BYTES_FACTOR * max(file_size, 1 << 20):
        _refuse(source, f"its tensors view {viewed} bytes in all, more than {VIEW_BYTES_FACTOR} times the file's size")


# ----------------------------------------------------------------- zip files
_EOCD = struct.Struct("<4sHHHHIIH")
_Z64_LOCATOR = struct.Struct("<4sIQI")
_Z64_EOCD = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_FLAGS_OK = 0x0008 | 0x0800  # sizes in a data descriptor; UTF-8 names
_U32, _U16 = 0xFFFF_FFFF, 0xFFFF


@dataclass
class _Entry:
    name: str
    start: int  # where its data begins in the file
    size: int


def _zip64_values(extra: bytes, values: list[int], widths: list[int], source: str, name: str) -> list[int]:
    """``values`` with each one at its 32/16-bit maximum replaced from the zip64 extra field, in order."""
    blocks: dict[int, bytes] = {}
    pos = 0
    while pos < len(extra):
        if pos + 4 > len(extra):
            _refuse(source, f"entry {_show(name)} has a malformed extra field")
        tag, size = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + size > len(extra) or tag in blocks:
            _refuse(source, f"entry {_show(name)} has a malformed extra field")
        blocks[tag] = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
    z64, used, out = blocks.get(1, b""), 0, []
    for value, width in zip(values, widths, strict=True):
        if value == (_U32 if width == 8 else _U16):
            if used + width > len(z64):
                _refuse(source, f"entry {_show(name)} has a size past 4 GiB but no zip64 field for it")
            value = int.from_bytes(z64[used : used + width], "little")
            used += width
        out.append(value)
    return out


def _entry_name(raw_name: bytes, source: str) -> str:
    if b"\0" in raw_name:
        _refuse(source, f"an entry name holds a NUL byte ({_show(raw_name)}): zip readers disagree on such names")
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError:
        _refuse(source, f"an entry name is not UTF-8 ({_show(raw_name)})")
    if not name or not name.isprintable() or "\\" in name:
        _refuse(source, f"an entry name has odd characters ({_show(name)})")
    return name


def _end_records(raw: bytes, source: str) -> tuple[int, int, int, int]:
    """``(entries, cd_offset, cd_size, cd_end)`` from the end records, which must close the file exactly."""
    n = len(raw)
    if n < 22 or raw[n - 22 : n - 18] != b"PK\x05\x06":
        raise InputError(f"{source}: damaged or not a PyTorch file (no zip end record at the end of the file)")
    _sig, disk, cd_disk, here, total, cd_size, cd_off, comment = _EOCD.unpack_from(raw, n - 22)
    if comment:
        _refuse(source, "its zip end record declares a comment past the end of the file")
    cd_end = n - 22
    if n >= 42 and raw[n - 42 : n - 38] == b"PK\x06\x07":
        _sig, z64_disk, z64_off, disks = _Z64_LOCATOR.unpack_from(raw, n - 42)
        if z64_disk or disks != 1:
            _refuse(source, "its archive spans several disks")
        if z64_off + 56 != n - 42 or raw[z64_off : z64_off + 4] != b"PK\x06\x06":
            _refuse(source, "its zip64 end record is not where its locator says")
        _sig, size, _made, _need, d1, d2, here64, total64, cd_size64, cd_off64 = _Z64_EOCD.unpack_from(raw, z64_off)
        if size != 44 or d1 or d2:
            _refuse(source, "its zip64 end record is malformed")
        for short, full, top in ((here, here64, _U16), (total, total64, _U16), (cd_size, cd_size64, _U32),
                                 (cd_off, cd_off64, _U32)):  # fmt: skip
            if short not in (top, full):
                _refuse(source, "its zip64 and classic end records disagree")
        here, total, cd_size, cd_off, cd_end = here64, total64, cd_size64, cd_off64, z64_off
    if disk or cd_disk or here != total:
        _refuse(source, "its archive spans several disks")
    if cd_off + cd_size != cd_end:
        _refuse(source, "its central directory does not end where the end record begins")
    return total, cd_off, cd_size, cd_end


def parse_torch_zip(raw: bytes, source: str) -> tuple[str, list[_Entry]]:
    """The archive's prefix and entries, read once, strictly; refused wherever two zip readers could differ.

    Refused: names with NUL bytes, odd characters or a prefix of their own; names equal without case
    (torch's reader, miniz, compares them so); a local header that disagrees with the central
    directory; compressed, encrypted or multi-disk entries; entries that overlap, leave gaps, or do
    not tile the file up to the central directory; anything before the first entry or after the end
    record. Entries come back in the order of the file.
    """
    total, cd_off, _cd_size, cd_end = _end_records(raw, source)
    central, pos = [], cd_off
    for _ in range(total):
        if pos + 46 > cd_end or raw[pos : pos + 4] != b"PK\x01\x02":
            _refuse(source, "its central directory is malformed")
        _sig, _made, _need, flags, method, _t, _d, crc, csize, usize, nlen, elen, clen, disk, _ia, _ea, offset = (
            _CENTRAL.unpack_from(raw, pos)
        )
        raw_name = raw[pos + 46 : pos + 46 + nlen]
        extra = raw[pos + 46 + nlen : pos + 46 + nlen + elen]
        pos += 46 + nlen + elen + clen
        if pos > cd_end:
            _refuse(source, "its central directory is malformed")
        name = _entry_name(raw_name, source)
        usize, csize, offset, disk = _zip64_values(extra, [usize, csize, offset, disk], [8, 8, 8, 4], source, name)
        if flags & 0x0041:
            _refuse(source, f"entry {_show(name)} is encrypted")
        if method != 0 or csize != usize:
            _refuse(source, f"entry {_show(name)} is compressed (method {method}); torch.save stores entries as is")
        if flags & ~_FLAGS_OK:
            _refuse(source, f"entry {_show(name)} has zip flags {flags:#06x}, which torch.save never writes")
        if disk:
            _refuse(source, "its archive spans several disks")
        central.append((offset, name, raw_name, flags, crc, usize))
    if pos != cd_end:
        _refuse(source, "its central directory holds more than its entries")

    folded: set[bytes] = set()
    for _off, name, raw_name, *_ in central:
        if raw_name.lower() in folded:
            _refuse(source, f"two entries are named {_show(name)} (torch compares names without case)")
        folded.add(raw_name.lower())
    prefix = central[0][1].partition("/")[0] if central else ""
    if not central or not all(c[1].startswith(prefix + "/") and len(c[1]) > len(prefix) + 1 for c in central):
        raise InputError(f"{source}: a zip file, but not one written by torch.save (entries outside one folder)")

    entries, expected = [], 0
    central.sort(key=lambda c: c[0])
    for i, (offset, name, raw_name, flags, crc, size) in enumerate(central):
        following = central[i + 1][0] if i + 1 < len(central) else cd_off
        if offset != expected:
            what = "overlaps the entry before it" if offset < expected else "leaves unexplained bytes before it"
            _refuse(source, f"entry {_show(name)} {what}")
        if offset + 30 > cd_off or raw[offset : offset + 4] != b"PK\x03\x04":
            _refuse(source, f"entry {_show(name)} has no local header where the central directory says")
        _sig, _need, lflags, lmethod, _t, _d, lcrc, lcsize, lusize, nlen, elen = _LOCAL.unpack_from(raw, offset)
        lname = raw[offset + 30 : offset + 30 + nlen]
        if lname != raw_name:
            _refuse(source, f"entry {_show(name)} is named {_show(lname)} in its local header")
        if (lflags, lmethod) != (flags, 0):
            _refuse(source, f"entry {_show(name)} has other flags or compression in its local header")
        lusize, lcsize = _zip64_values(raw[offset + 30 + nlen : offset + 30 + nlen + elen], [lusize, lcsize], [8, 8],
                                       source, name)  # fmt: skip
        start = offset + 30 + nlen + elen
        end = start + size
        if end > following:
            _refuse(source, f"entry {_show(name)} overlaps the entry after it")
        if flags & 0x0008:  # sizes follow the data, in a descriptor
            if lcrc not in (0, crc) or lusize not in (0, size) or lcsize not in (0, size):
                _refuse(source, f"entry {_show(name)} has other sizes in its local header")
            end = _descriptor_end(raw, end, following, crc, size)
            if end is None:
                _refuse(source, f"entry {_show(name)} has no data descriptor that matches the central directory")
        elif (lcrc, lusize, lcsize) != (crc, size, size):
            _refuse(source, f"entry {_show(name)} has other sizes in its local header")
        expected = end
        entries.append(_Entry(name, start, size))
    if expected != cd_off:
        _refuse(source, "its archive holds unexplained bytes before the central directory")
    return prefix, entries


def _descriptor_end(raw: bytes, pos: int, following: int, crc: int, size: int) -> int | None:
    """Where the data descriptor at ``pos`` ends, if exactly one form of it leads to ``following``."""
    for signed, wide in ((True, False), (False, False), (True, True), (False, True)):
        length = (4 if signed else 0) + 4 + (16 if wide else 8)
        if pos + length != following or (signed and raw[pos : pos + 4] != b"PK\x07\x08"):
            continue
        body = raw[pos + (4 if signed else 0) : following]
        fields = struct.unpack("<IQQ" if wide else "<III", body)
        if fields == (crc, size, size):
            return following
    return None


def _load_torch_zip(held: list[bytes], source: str) -> tuple[Any, list[str]]:
    """Check a torch.save zip, then load it from a canonical rebuild; ``held`` (the file's bytes) is emptied
    before torch.load, so the file is in memory twice at most, never three times."""
    raw = held[0]
    prefix, entries = parse_torch_zip(raw, source)
    by_suffix = {e.name[len(prefix) + 1 :]: e for e in entries}
    pickle_entry = by_suffix.get("data.pkl")
    if pickle_entry is None:
        raise InputError(f"{source}: a zip file, but not one written by torch.save (no data.pkl)")
    for suffix, entry in by_suffix.items():
        if suffix == "data.pkl" or (suffix.startswith("data/") and len(suffix) > 5):
            continue
        if suffix not in _META_RECORDS and suffix != "byteorder":
            _refuse(source, f"entry {_show(entry.name)} is not part of a torch.save file")
        value = raw[entry.start : entry.start + min(entry.size, 64)]
        ok = value in (b"little", b"big") if suffix == "byteorder" else bool(_SMALL_RECORD.fullmatch(value))
        if not ok or entry.size > 64:
            _refuse(source, f"entry {_show(entry.name)} holds an odd value")
    if "version" not in by_suffix and ".data/version" not in by_suffix:
        raise InputError(f"{source}: damaged PyTorch file (no version record)")
    if pickle_entry.size > MAX_PICKLE_BYTES:
        _refuse(source, f"its data.pkl holds {pickle_entry.size} bytes, over the limit of {MAX_PICKLE_BYTES}")

    storages: dict[str, _Storage] = {}
    unpickler = _InertUnpickler(source, [PICKLE_VALUE_BUDGET, MAX_OPCODES])

    def storage(pid: Any) -> _Storage:
        if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
            unpickler.refuse(f"a persistent id is {_show(pid)}, not ('storage', type, key, device, size)")
        return unpickler.storage(storages, *pid[1:])

    unpickler.persistent = storage
    pickled = raw[pickle_entry.start : pickle_entry.start + pickle_entry.size]
    stream = io.BytesIO(pickled)
    _state_dict_check(unpickler.run(stream), source)
    if stream.tell() != len(pickled):
        _refuse(source, "its data.pkl holds bytes after the pickle's end")
    for key, s in storages.items():
        record = by_suffix.get(f"data/{key}")
        if record is None:
            _refuse(source, f"storage 'data/{key}' is declared but the archive holds no such entry")
        if record.size != s.numel * s.itemsize:
            _refuse(source, f"storage 'data/{key}' declares {s.numel * s.itemsize} bytes but the archive holds "
                            f"{record.size}")  # fmt: skip
    unused = [s for s in by_suffix if s.startswith("data/") and s[5:] not in storages]
    if unused:
        _refuse(source, f"entry '{_show(unused[0])}' is a storage that no tensor uses")
    _check_totals(unpickler, storages, len(raw), source)

    # What torch reads: an archive written by torch's own writer from exactly the entries checked above.
    out = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(out, True, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frombuffer warns that bytes are read-only: the writer only reads them
        for entry in entries:
            name = entry.name[len(prefix) + 1 :]
            if entry.size:  # a view of the bytes read, not a copy of them
                view = torch.frombuffer(raw, dtype=torch.uint8, offset=entry.start, count=entry.size)
                writer.write_record(name, view.data_ptr(), entry.size)  # the address of those bytes
                del view
            else:
                writer.write_record(name, b"", 0)
    writer.write_end_of_file()
    del raw, pickled
    held.clear()  # the caller holds only ``held``: the file's bytes are freed here
    out.seek(0)
    return _torch_load(out, source)


# ----------------------------------------------------------- legacy streams
def _load_legacy(raw: bytes, source: str) -> tuple[Any, list[str]]:
    """The pre-zip ``torch.save`` stream: five pickles (magic, protocol, system info, the object, the
    storage keys), then each storage as an 8-byte element count and its bytes, to the end of the file."""
    stream = io.BytesIO(raw)
    budget = [PICKLE_VALUE_BUDGET, MAX_OPCODES]
    magic = _InertUnpickler(source, budget).run(stream)
    if magic != _LEGACY_MAGIC:
        raise InputError(f"{source}: a pickle, but not a PyTorch file (no torch.save magic number)")
    if _InertUnpickler(source, budget).run(stream) != _LEGACY_PROTOCOL:
        raise InputError(f"{source}: a PyTorch file of an unknown legacy protocol")
    if not isinstance(_InertUnpickler(source, budget).run(stream), _Dict):
        raise InputError(f"{source}: damaged PyTorch file (its system information is not a mapping)")

    storages: dict[str, _Storage] = {}
    unpickler = _InertUnpickler(source, budget)

    def storage(pid: Any) -> _Storage:
        if type(pid) is not tuple or len(pid) != 6 or pid[0] != "storage":
            unpickler.refuse(f"a persistent id is {_show(pid)}, not ('storage', type, key, device, size, view)")
        if pid[5] is not None:
            unpickler.refuse("a storage is a view of another (a pre-1.0 file), which torchwork does not load")
        return unpickler.storage(storages, *pid[1:5])

    unpickler.persistent = storage
    _state_dict_check(unpickler.run(stream), source)
    keys = _InertUnpickler(source, budget).run(stream)
    if type(keys) is not list or not all(isinstance(k, str) for k in keys):
        _refuse(source, "its list of storage keys is not a list of names")
    if len(set(keys)) != len(keys) or set(keys) != set(storages):
        _refuse(source, "its list of storage keys does not match the storages its pickle declares")
    pos = stream.tell()
    for key in keys:
        s = storages[key]
        if pos + 8 > len(raw):
            _refuse(source, f"storage '{key}' has no record: the file ends first")
        (count,) = struct.unpack_from("<q", raw, pos)
        nbytes = s.numel * s.itemsize
        if count != s.numel:
            _refuse(source, f"storage '{key}' declares {s.numel} elements but its record says {count}")
        if nbytes > len(raw) - pos - 8:
            _refuse(source, f"storage '{key}' declares {nbytes} bytes but only {len(raw) - pos - 8} remain in the file")
        pos += 8 + nbytes
    if pos != len(raw):
        _refuse(source, f"it holds {len(raw) - pos} bytes after its last storage")
    _check_totals(unpickler, storages, len(raw), source)
    return _torch_load(io.BytesIO(raw), source)


# ------------------------------------------------------------------- loading
def _torch_load(stream: IO[bytes], source: str) -> tuple[Any, list[str]]:
    """``torch.load(weights_only=True)`` of bytes already checked, every storage kept on the CPU."""
    locations: list[str] = []

    def on_cpu(storage: Any, location: str) -> Any:
        locations.append(location)
        return storage  # keep every storage on the CPU: a GPU file loads on any machine

    try:
        obj = torch.load(stream, map_location=on_cpu, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise UnsafeFileError(f"{source}: refused by torch.load(weights_only=True): {first}; nothing was run") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, struct.error, TypeError, KeyError, AttributeError,
            IndexError, OverflowError) as exc:  # fmt: skip  # checked above; here in case torch disagrees anyway
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
        raise InputError(f"{source}: entries that are not tensors: {', '.join(_show(k) for k in bad[:5])}")
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
        _refuse(source, f"it starts with the zip signature {held[0][:4]!r}, not a local file header: torch.load "
                        "would read it as a legacy stream while zip readers see an archive")  # fmt: skip
    if kind == "zip":
        obj, locations = _load_torch_zip(held, source)
    elif kind == "pickle":
        obj, locations = _load_legacy(held[0], source)
    else:
        raise InputError(f"{source}: not a weights file (neither safetensors nor a PyTorch .pth/.pt)")
    return WeightsFile(_flat_tensors(obj, source), "pytorch", locations)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {_show(next(k for k in keys if keys.count(k) > 1))} in the header")
    return dict(pairs)


def _check_head(head: bytes, size: int, source: str) -> None:
    """Refusals the first bytes allow before the file is read: a safetensors header too long for the file or limit."""
    if sniff(head) != "safetensors":
        return
    (n,) = struct.unpack_from("<Q", head, 0)
    if n > MAX_SAFETENSORS_HEADER:
        _refuse(source, f"its safetensors header declares {n} bytes, over the limit of {MAX_SAFETENSORS_HEADER}")
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
        raise InputError(f"{source}: damaged safetensors file ({_show(str(exc), 200)})") from None
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
