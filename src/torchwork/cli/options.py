"""Command-line options: ``torchwork train``'s come from :class:`~torchwork.runs.config.TrainConfig`.

Every option of the configuration is a flag with the same name (``--batch-size`` for
``batch_size``), its help and default from the configuration, and its value checked by the
configuration's rules (so ``--epochs x`` reads ``--epochs: expected an integer, got 'x'``).
A flag that takes one value may be given once: a second one is an error, not a silent
override. :func:`options_table` renders the options as the README's Markdown table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from torchwork.runs.config import default_of, help_of, option_fields

# Options only a config file sets (tables), and the positional DATA argument.
FILE_ONLY = ("data", "model_args", "optimizer_args", "scheduler_args")
METAVARS = {"count": "N", "count0": "N", "int": "N", "positive": "X", "nonnegative": "X", "fraction": "F",
            "ints": "N,N,...", "names": "A,B,...", "columns": "COL[,COL]", "str": "NAME", "path": "PATH",
            "bytes": "SIZE"}  # fmt: skip


def once(default: Any = None) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A callback: the flag's one value (``default`` when not given); given twice is an error."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if isinstance(value, tuple):
            if len(value) > 1:
                name = param.opts[0] if param.opts else param.name
                raise click.UsageError(
                    f"{name} given {len(value)} times; give it once (lists are comma-separated: A,B)"
                )
            return value[0] if value else default
        return value

    return callback


def option(
    *decls: str, default: Any = None, show_default: bool = False, help: str = "", **kw: Any
) -> Callable[[Any], Any]:
    """``click.option`` that refuses to be given twice."""
    if show_default and default is not None:
        help = f"{help} [default: {default}]"
    return click.option(*decls, multiple=True, callback=once(default), help=help, **kw)


def flag(*decls: str, **kw: Any) -> Callable[[Any], Any]:
    """A boolean flag (``--x`` or ``--x/--no-x``) that refuses to be given twice."""
    if not any("/" in d for d in decls):
        kw.setdefault("is_flag", True)
    return click.option(*decls, multiple=True, callback=once(), **kw)


def _decl(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_options(f: Any) -> Any:
    """One flag per configuration option (they override ``--config``)."""
    for field in reversed(option_fields()):
        if field.name in FILE_ONLY:
            continue
        kind = field.metadata["kind"].rstrip("?")
        if kind == "bool":
            f = flag(f"{_decl(field.name)}/--no-{field.name.replace('_', '-')}", field.name, help=help_of(field.name))(
                f
            )
        else:
            f = option(_decl(field.name), field.name, metavar=METAVARS.get(kind, "VALUE"), help=help_of(field.name))(f)
    return f


def options_table() -> str:
    """The README's table of ``torchwork train``'s configuration options, from the configuration itself."""
    lines = ["| option | default | what |", "|---|---|---|"]
    for field in option_fields():
        if field.name in FILE_ONLY:
            continue
        kind = field.metadata["kind"].rstrip("?")
        decl = _decl(field.name)
        shown = (
            f"`{decl}/--no-{field.name.replace('_', '-')}`"
            if kind == "bool"
            else f"`{decl} {METAVARS.get(kind, 'VALUE')}`"
        )
        default = field.metadata.get("default_help")
        if default is None:
            value = default_of(field.name)
            default = ",".join(map(str, value)) if isinstance(value, list) else "none" if value is None else value
            if kind == "bool":
                default = "on" if value else "off"
        lines.append(f"| {shown} | {default} | {field.metadata['help']} |")
    return "\n".join(lines)
