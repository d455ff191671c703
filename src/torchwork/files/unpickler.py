"""The inert unpickler: one pickle followed opcode by opcode into inert records, its calls checked,
every tensor view checked against its storage; and the checks of what a whole file builds."""

from __future__ import annotations

import pickletools
import re
from collections.abc import Callable
from typing import IO, Any, NoReturn

from torchwork.core.errors import InputError, UnsafeFileError
from torchwork.files.inert import (
    ALLOWED_GLOBALS,
    MAX_INT,
    MAX_OPCODES,
    MAX_PICKLE_BYTES,
    MAX_STACK,
    PICKLE_VALUE_BUDGET,
    STORAGES,
    VIEW_BYTES_FACTOR,
    InertDict,
    InertGlobal,
    InertSet,
    InertStorage,
    InertTensor,
    a_or_an,
    kind_name,
    refuse_file,
    shown,
)

_KEY = re.compile(r"[0-9A-Za-z_.\-]{1,64}")
_LOCATION = re.compile(r"[0-9A-Za-z_.:\-]{1,64}")


class InertUnpickler:
    """Follows one pickle's opcodes (``pickletools.genops``) and builds plain values; imports and calls nothing.

    GLOBAL/STACK_GLOBAL give inert :class:`InertGlobal` records (refused outside :data:`ALLOWED_GLOBALS`),
    BINPERSID gives what ``persistent`` makes of the id (a :class:`InertStorage`), and REDUCE is allowed
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
        self.tensors: list[InertTensor] = []

    def refuse(self, rule: str) -> NoReturn:
        refuse_file(self.source, rule)

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
            detail = shown(str(exc) or type(exc).__name__, 120)
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
            self.push(InertDict(), 120)
        elif name == "EMPTY_TUPLE":
            self.push(())
        elif name == "EMPTY_SET":
            self.push(InertSet(), 120)
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
                self.push(InertDict(list(zip(items[::2], items[1::2], strict=True))), 120 + 16 * len(items))
            else:
                kind = {"LIST": list, "TUPLE": tuple, "FROZENSET": InertSet}[name]
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
                self.refuse(f"its pickle appends to {a_or_an(target)}")
            self.charge(8 * len(items))
            target.extend(items)
        elif name in ("SETITEM", "SETITEMS"):
            items = [stack.pop(-2), stack.pop()] if name == "SETITEM" else self.pop_mark()
            target = self.stack[-1]
            if not isinstance(target, InertDict) or len(items) % 2:
                self.refuse(f"its pickle sets items on {a_or_an(target)}")
            self.charge(16 * len(items))
            target.items.extend(zip(items[::2], items[1::2], strict=True))
        elif name == "ADDITEMS":
            items = self.pop_mark()
            target = self.stack[-1]
            if not isinstance(target, InertSet):
                self.refuse(f"its pickle adds set items to {a_or_an(target)}")
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
                    f"it would import {shown(module)}.{shown(attr)} when loaded, and torchwork loads only tensors "
                    "and plain containers"
                )
            self.push(InertGlobal(module, attr), 100)
        elif name == "REDUCE":
            args, func = stack.pop(), stack.pop()
            if not isinstance(func, InertGlobal) or type(args) is not tuple:
                self.refuse(f"its pickle calls {a_or_an(func)} with {kind_name(args)} arguments")
            self.push(self.call(func, args), 200)
        elif name == "BUILD":  # torch.save: an OrderedDict's attributes (state_dict's _metadata)
            stack.pop()
            if not isinstance(stack[-1], InertDict):  # on a tensor, torch would call set_(): a view never checked
                self.refuse(f"its pickle sets the state of {a_or_an(stack[-1])}")
        elif name == "BINPERSID":
            pid = stack.pop()
            if self.persistent is None:
                self.refuse("its pickle refers to outside data (a persistent id) where none is allowed")
            self.push(self.persistent(pid), 200)
        else:  # INST, OBJ, NEWOBJ(_EX), EXT1/2/4, PERSID, NEXT_BUFFER, READONLY_BUFFER, ...
            self.refuse(f"its pickle uses opcode {name}")

    # -------------------------------------------------------------- calls
    def call(self, func: InertGlobal, args: tuple[Any, ...]) -> Any:
        if (func.module, func.name) == ("collections", "OrderedDict"):
            if args:
                self.refuse("its pickle calls OrderedDict with arguments (torch.save calls it with none)")
            return InertDict()
        if func.module == "torch":
            self.refuse(f"its pickle calls torch.{func.name} (storages come only from the archive)")
        if func.name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            arity = 3 if func.name == "_rebuild_parameter" else 4
            self.arity(func.name, args, arity, arity)
            if not isinstance(args[0], InertTensor):
                self.refuse(f"{func.name} gets {a_or_an(args[0])}, not a tensor")
            self.flag(func.name, args[1], args[2])
            if arity == 4 and not (args[3] is None or (isinstance(args[3], InertDict) and not args[3].items)):
                self.refuse(f"{func.name} gets {a_or_an(args[3])} as its state (attributes torch would set)")
            return args[0]
        low, high = {"_rebuild_tensor": (4, 4), "_rebuild_tensor_v2": (6, 7), "_rebuild_tensor_v3": (7, 8)}[func.name]
        self.arity(func.name, args, low, high)
        storage = args[0]
        if not isinstance(storage, InertStorage):
            self.refuse(f"{func.name} gets {a_or_an(storage)}, not a storage from the archive")
        offset = self.count(func.name, "storage offset", args[1])
        size, stride = self.counts(func.name, "size", args[2]), self.counts(func.name, "stride", args[3])
        if len(size) != len(stride):
            self.refuse(f"{func.name} gets size {shown(size)} and stride {shown(stride)} of different lengths")
        if func.name != "_rebuild_tensor":
            self.flag(func.name, args[4], args[5])
        if func.name == "_rebuild_tensor_v3":
            self.refuse(f"{func.name} gets {a_or_an(args[6])} as its dtype")  # a dtype global is never allowed
        if len(args) == 7 and not (
            args[6] is None
            or (isinstance(args[6], InertDict) and all(type(k) is str and type(v) is bool for k, v in args[6].items))
        ):
            self.refuse(f"{func.name} gets {a_or_an(args[6])} as its metadata (flags by name expected)")
        tensor = InertTensor(storage, offset, size, stride)
        self.check_view(tensor)
        self.tensors.append(tensor)
        return tensor

    def arity(self, name: str, args: tuple[Any, ...], low: int, high: int) -> None:
        if not low <= len(args) <= high:
            expected = str(low) if low == high else f"{low} or {high}"
            self.refuse(f"its pickle calls {name} with {len(args)} arguments, not {expected}")

    def flag(self, name: str, requires_grad: Any, hooks: Any) -> None:
        if type(requires_grad) is not bool:
            self.refuse(f"{name} gets {a_or_an(requires_grad)} as requires_grad")
        if not isinstance(hooks, InertDict) or hooks.items:
            self.refuse(f"{name} gets {a_or_an(hooks)} as its backward hooks (torch.save writes an empty OrderedDict)")

    def count(self, name: str, what: str, value: Any) -> int:
        if type(value) is not int or not 0 <= value <= MAX_INT:
            self.refuse(f"{name} gets {shown(value)} as its {what} (a count from 0 to 2**63-1 is expected)")
        return value

    def counts(self, name: str, what: str, value: Any) -> tuple[int, ...]:
        if type(value) is not tuple or len(value) > 64:
            self.refuse(f"{name} gets {a_or_an(value)} as its {what} (a tuple of at most 64 counts)")
        return tuple(self.count(name, what, v) for v in value)

    def check_view(self, t: InertTensor) -> None:
        """A view lies inside its storage and has no more elements than it: what torch builds is bounded."""
        s = t.storage
        shape, where = shown(list(t.size)), f"storage '{s.key}' of {s.numel} elements"
        if t.numel > s.numel:
            self.refuse(f"a tensor of shape {shape} has {t.numel} elements, more than its {where} (a view that "
                        f"repeats values, stride {shown(list(t.stride))})")  # fmt: skip
        last = t.offset + sum((n - 1) * k for n, k in zip(t.size, t.stride, strict=True)) if t.numel else t.offset - 1
        if t.offset > s.numel or last >= s.numel:
            self.refuse(f"a tensor of shape {shape}, stride {shown(list(t.stride))} at offset {t.offset} reaches "
                        f"element {last} of its {where}")  # fmt: skip

    # ----------------------------------------------------------- storages
    def storage(self, seen: dict[str, InertStorage], stype: Any, key: Any, location: Any, numel: Any) -> InertStorage:
        """One storage a persistent id declares, the same record each time its key comes back."""
        if not isinstance(stype, InertGlobal) or stype.module != "torch" or stype.name not in STORAGES:
            self.refuse(f"a persistent id names {shown(stype)} as its storage type")
        if isinstance(location, bytes):
            location = location.decode("ascii", "replace")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            self.refuse(f"a persistent id names the storage key {shown(key)}")
        if not isinstance(location, str) or not _LOCATION.fullmatch(location):
            self.refuse(f"storage '{key}' names the device {shown(location)}")
        numel = self.count("a persistent id", "number of elements", numel)
        record = InertStorage(stype.name, key, location, numel, STORAGES[stype.name])
        known = seen.setdefault(key, record)
        if (known.type_name, known.numel) != (record.type_name, record.numel):
            self.refuse(f"storage '{key}' is declared twice, as {known.numel} x {known.type_name} and as "
                        f"{record.numel} x {record.type_name}")  # fmt: skip
        return known


_CONSTANTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT", "STRING",
              "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
              "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}  # fmt: skip
_CONSTANT_OPS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def state_dict_check(value: Any, source: str) -> list[tuple[str, InertTensor]]:
    """The inert value of a whole file must be a mapping of names to tensors."""
    if not isinstance(value, InertDict) or not all(isinstance(k, str) for k, _ in value.items):
        raise InputError(f"{source}: expected a state_dict (a mapping of names to tensors), got {kind_name(value)}")
    bad = [k for k, v in value.items if not isinstance(v, InertTensor)]
    if bad:
        raise InputError(f"{source}: entries that are not tensors: {', '.join(shown(k) for k in bad[:5])}")
    return value.items


def check_totals(unpickler: InertUnpickler, storages: dict[str, InertStorage], file_size: int, source: str) -> None:
    stored = sum(s.numel * s.itemsize for s in storages.values())
    if stored > file_size:
        refuse_file(source, f"its storages declare {stored} bytes, more than the file's {file_size}")
    viewed = sum(t.numel * t.storage.itemsize for t in unpickler.tensors)
    if viewed > VIEW_BYTES_FACTOR * max(file_size, 1 << 20):
        refuse_file(
            source, f"its tensors view {viewed} bytes in all, more than {VIEW_BYTES_FACTOR} times the file's size"
        )
