"""The ``torchwork`` command: a thin layer that parses arguments and calls the library.

Heavy modules (torch, pandas, matplotlib) are imported inside the commands that need
them, so ``torchwork --help`` answers at once. Errors that torchwork understands, and
bad command-line usage, print one line on stderr, ``torchwork: error: ...``, and exit
non-zero (2 for bad input); a bare ``torchwork`` prints its usage.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from torchwork.cli import commands, training  # noqa: F401 - the commands register on import
from torchwork.cli.app import cli


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning expected errors into one line and an exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:  # a bare `torchwork`: its usage, as `torchwork --help` prints it
        with click.Context(
            cli, info_name="torchwork", help_option_names=["-h", "--help"], max_content_width=100
        ) as ctx:
            click.echo(cli.get_help(ctx))
        return 0
    try:
        code = cli.main(args=args, prog_name="torchwork", standalone_mode=False, obj={"argv": args})
        if isinstance(code, int):  # click returns an Exit's code when it does not exit itself
            return code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("torchwork: aborted", err=True)
        return 130
    except click.ClickException as exc:
        where = getattr(exc, "ctx", None)
        hint = f" (see '{where.command_path} --help')" if where is not None else ""
        click.echo(f"torchwork: error: {_one_line(exc.format_message()).rstrip('.')}{hint}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("torchwork: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except MemoryError:
        click.echo(
            "torchwork: error: out of memory (for tables larger than memory, use Parquet with --stream)", err=True
        )
        return 1
    except Exception as exc:
        from torchwork.core.errors import TorchworkError

        if isinstance(exc, TorchworkError):
            if _reports(exc):
                click.echo(f"torchwork: error: {_one_line(str(exc))}", err=True)
            return exc.exit_code
        raise
    return 0


def _reports(exc: Exception) -> bool:
    """Whether this process prints ``exc``: in a process group, errors every process shares are
    printed by rank 0 alone; a process that lost the others says so itself."""
    import os

    from torchwork.core.errors import GroupFailed

    return os.environ.get("RANK", "0") == "0" or isinstance(exc, GroupFailed)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def without_working_directory() -> None:
    """Take the current folder off ``sys.path`` (an empty ``PYTHONPATH`` entry puts it there): a
    ``yaml.py`` lying there is never imported in place of PyYAML. The ``torchwork`` command calls it
    first (``python -m torchwork`` does the same in ``__main__``); ``--model mymodule:Net`` puts the
    folder back for its own import."""
    here = os.path.realpath(os.getcwd())
    sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != here]


def run() -> Any:  # pragma: no cover - console script shim
    without_working_directory()
    sys.exit(main())
