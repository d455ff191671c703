"""Name-to-factory registries with aliases (``"mae"`` is ``"l1"``).

Losses, optimizers, schedulers and models are looked up by name through a
:class:`Registry`; an unknown name raises an error that lists every valid one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from torchwork.core.checks import FLOAT32_MAX, check
from torchwork.core.errors import InputError, UnknownNameError

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

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(entry: T) -> T:
            return self.add(name, entry, aliases)

        return decorate

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
