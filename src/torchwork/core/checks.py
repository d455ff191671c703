"""The rules for option values and for names, checked once where a value enters.

One function, :func:`check`, knows every kind of value (a count, a fraction, a list of
names, ...). Each entry point passes the words its caller uses: the CLI ``--epochs``, a
config file ``run.toml: key 'epochs'``, Python ``Trainer(epochs=...)``. The same rule
then reads naturally wherever it is broken.

Losses, optimizers, schedulers and models are looked up by name through a :class:`Registry`
(with aliases: ``"mae"`` is ``"l1"``); an unknown name raises an error that lists every valid
one, and :func:`check_options` checks an entry's table of options.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from torchwork.core.errors import InputError, UnknownNameError

# --------------------------------------------------------------------------------------- values
KINDS = ("str", "path", "bool", "int", "count", "count0", "positive", "nonnegative", "fraction", "ints",
         "floats", "betas", "names", "columns", "dict", "any", "bytes")  # fmt: skip
FLOAT32_MAX = 3.4028234663852886e38  # torch computes with options in float32: more is inf
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def check(value: Any, kind: str, where: str) -> Any:
    """``value`` checked (and converted, e.g. ``"3"`` to 3) as ``kind``; ``kind?`` allows None.

    ``where`` names the value in the caller's words; the error reads ``{where}: {rule}``.
    """
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None or (optional and isinstance(value, str) and value.lower() in ("", "none", "null")):
        if optional or kind in ("path", "columns", "names", "any"):
            return None
        raise InputError(f"{where}: a value is required")
    if kind == "any":
        return value
    if kind in ("str", "path"):
        if not isinstance(value, str):
            raise InputError(f"{where}: expected a string, got {value!r}")
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise InputError(f"{where}: expected true or false, got {value!r}")
    if kind in ("int", "count", "count0"):
        floor = {"int": None, "count": 1, "count0": 0}[kind]
        return number(value, where, integer=True, floor=floor)
    if kind in ("positive", "nonnegative", "fraction"):
        x = float(number(value, where, integer=False))
        if kind == "positive" and not x > 0:
            raise InputError(f"{where}: must be > 0, got {value!r}")
        if kind == "nonnegative" and not x >= 0:
            raise InputError(f"{where}: must be >= 0, got {value!r}")
        if kind == "fraction" and not 0.0 <= x < 1.0:
            raise InputError(f"{where}: must be a fraction in [0, 1), got {value!r}")
        return x
    if kind == "betas":
        betas = _items(value, "floats", where)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise InputError(f"{where}: expected two numbers in [0, 1), got {value!r}")
        return betas
    if kind in ("ints", "floats", "names", "columns"):
        return _items(value, kind, where)
    if kind == "bytes":
        return size_in_bytes(value, where)
    if kind == "dict":
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a table of key = value, got {value!r}")
        return dict(value)
    raise AssertionError(f"unknown kind {kind!r}")


def _items(value: Any, kind: str, where: str) -> Any:
    if isinstance(value, str):
        items: Any = value.split(",")
    elif isinstance(value, numbers.Integral) and kind == "columns":
        items = [value]  # an array's column number: target=-1
    else:
        items = value
    if isinstance(items, tuple):
        items = list(items)
    if not isinstance(items, list):
        raise InputError(f"{where}: expected a list, got {value!r}")
    if kind == "ints":
        return [number(v.strip() if isinstance(v, str) else v, where, integer=True, floor=1) for v in items]
    if kind == "floats":
        return [float(number(v, where, integer=False)) for v in items]
    names = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, str | numbers.Integral):
            raise InputError(f"{where}: expected column names, got {v!r}")
        names.append(str(v).strip())
    if any(not n for n in names):
        raise InputError(f"{where}: has an empty name")
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InputError(f"{where}: names {', '.join(map(repr, dups))} more than once")
    return names


def number(value: Any, where: str, *, integer: bool, floor: int | None = None) -> Any:
    """An int (or float), from a number or its digits; NaN and booleans are refused."""
    if isinstance(value, bool):
        raise InputError(f"{where}: expected a number, got {value!r}")
    result: float
    if integer:
        # int, NumPy's integers (np.arange grids), or the digits of one
        if isinstance(value, numbers.Integral) or (isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value)):
            result = int(value)
        else:
            raise InputError(f"{where}: expected an integer, got {value!r}")
    else:
        try:
            result = float(value)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{where}: expected a number, got {value!r}") from None
        if result != result:  # NaN
            raise InputError(f"{where}: expected a number, got {value!r}")
    if floor is not None and result < floor:
        raise InputError(f"{where}: must be >= {floor}, got {result}")
    return result


def choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    """``value`` if it is one of ``choices`` (case-insensitive), else an error listing them."""
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise InputError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")


def size_in_bytes(value: Any, where: str) -> int:
    """A number of bytes from ``4GB``, ``512MiB``, ``2g`` or a plain number (at least 1 MiB)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        n = int(value)
    else:
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*", str(value).lower())
        if found is None:
            raise InputError(f"{where}: expected a size such as 4GB or 512MiB, got {value!r}")
        n = int(float(found.group(1)) * _UNITS[found.group(2) or ""])
    if n < 2**20:
        raise InputError(f"{where}: must be at least 1MiB, got {value!r}")
    return n


# ---------------------------------------------------------------------------------------- names
T = TypeVar("T")


def normalize(name: str) -> str:
    """``"Smooth-L1"`` and ``"smooth_l1"`` are the same name."""
    return name.strip().lower().replace("-", "_")


class Registry(Generic[T]):
    """A dictionary of named entries of one kind, with aliases."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> T:
        for key in (name, *aliases):
            key = normalize(key)
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} name {key!r} is registered twice")
        self._entries[normalize(name)] = entry
        for alias in aliases:
            self._aliases[normalize(alias)] = normalize(name)
        return entry

    def canonical(self, name: str, where: str | None = None) -> str:
        """The registered name that ``name`` (or its alias) stands for; ``where`` prefixes the error."""
        key = normalize(name) if isinstance(name, str) else ""
        key = self._aliases.get(key, key)
        if key not in self._entries:
            prefix = f"{where}: " if where else ""
            raise UnknownNameError(f"{prefix}unknown {self.kind} {name!r}; valid names: {self.describe()}")
        return key

    def get(self, name: str, where: str | None = None) -> T:
        return self._entries[self.canonical(name, where)]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = normalize(name)
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def describe(self) -> str:
        """``"l1 (mae), mse (l2), huber"``: every name with its aliases."""
        parts = []
        for name in self._entries:
            aliases = [a for a, target in self._aliases.items() if target == name]
            parts.append(f"{name} ({', '.join(aliases)})" if aliases else name)
        return ", ".join(parts)


def check_options(registry: Registry[Any], name: Any, options: dict[str, Any] | None, where: str) -> dict[str, Any]:
    """``options`` checked (and converted) against the table of entry ``name`` of ``registry``.

    Entries carry their table as ``entry.options``: option name -> kind (see :mod:`torchwork.core.checks`).
    Options apply only to an entry given by name (not to an object of the user's).
    """
    if not options:
        return {}
    if not isinstance(name, str):
        raise InputError(f"{where}: options apply only to a {registry.kind} given by name")
    entry = registry.get(name)
    out = {}
    for key, value in options.items():
        if key not in entry.options:
            raise InputError(
                f"{where}: {registry.kind} {registry.canonical(name)!r} takes no option {key!r}; "
                f"valid options: {', '.join(entry.options) or 'none'}"
            )
        out[key] = check(value, entry.options[key], f"{where}.{key}")
        if any(
            isinstance(v, float) and abs(v) > FLOAT32_MAX
            for v in (out[key] if isinstance(out[key], list) else [out[key]])
        ):
            raise InputError(f"{where}.{key}: {value!r} is too large (more than float32 holds)")
    return out
