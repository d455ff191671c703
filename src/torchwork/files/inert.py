"""The inert records a pickle is read into (imported and called nothing), the allow list and the limits
that bound the reading, and the one-line refusals that show such values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NoReturn

from torchwork.core.errors import UnsafeFileError

_ITEMSIZE = {"Float": 4, "Double": 8, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
             "Byte": 1, "Bool": 1}  # fmt: skip
STORAGES = {f"{t}Storage": size for t, size in _ITEMSIZE.items()}
_REBUILDERS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
               "_rebuild_parameter_with_state")  # fmt: skip
ALLOWED_GLOBALS = frozenset(
    {("collections", "OrderedDict")} | {("torch", s) for s in STORAGES} | {("torch._utils", n) for n in _REBUILDERS}
)

MAX_PICKLE_BYTES = 16 << 20  # a state_dict's pickle is ~100 bytes a tensor: room for 160k tensors
PICKLE_VALUE_BUDGET = 256 << 20  # estimated bytes of values the inert reader may build for one file
MAX_OPCODES = 4_000_000  # opcodes for one file (~30 a tensor): bounds the scan's time to a few seconds
VIEW_BYTES_FACTOR = 64  # all tensors together may view at most 64 times the file's size
MAX_STACK = 100_000  # values a pickle may hold on its stack at once: pickle batches items by 1000
MAX_INT = (1 << 63) - 1  # torch's sizes, strides and offsets are int64


def refuse_file(source: str, rule: str) -> NoReturn:
    raise UnsafeFileError(f"{source}: refused: {rule}; nothing was run")


def _plain(value: Any) -> bool:
    return isinstance(value, str | bytes | float | bool | type(None)) or (
        isinstance(value, int) and value.bit_length() <= 128
    )


def shown(value: Any, limit: int = 60) -> str:
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
    elif isinstance(value, InertGlobal):
        text = f"{value.module}.{value.name}"
    elif isinstance(value, int):
        text = f"an integer of {value.bit_length()} bits"
    else:
        text = a_or_an(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------- the inert records
@dataclass(eq=False)
class InertGlobal:
    module: str
    name: str


@dataclass(eq=False)
class InertDict:
    items: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(eq=False)
class InertSet:
    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class InertStorage:
    type_name: str
    key: str
    location: str
    numel: int
    itemsize: int


@dataclass(eq=False)
class InertTensor:
    storage: InertStorage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.size)


def kind_name(value: Any) -> str:
    names = {InertDict: "dict", InertSet: "set", InertTensor: "Tensor", InertStorage: "storage", InertGlobal: "global"}
    return names.get(type(value), type(value).__name__)


def a_or_an(value: Any) -> str:
    """``"an int"``, ``"a str"``: the kind of a value, for a message."""
    name = kind_name(value)
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
