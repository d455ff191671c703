"""The ``torchwork`` command: a thin layer that parses arguments and calls the library.

Heavy modules (torch, pandas, matplotlib) are imported inside the commands that need
them, so ``torchwork --help`` answers at once. Errors that torchwork understands, and
bad command-line usage, print one line on stderr and exit non-zero: 2 for bad input.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from torchwork import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="torchwork")
def cli() -> None:
    """torchwork: the whole PyTorch workflow (data, model, loss and optimizer, training and
    testing loops, prediction, evaluation, saving and loading) in one tool."""


@cli.command()
@click.option("--out", default=".", show_default=True, metavar="DIR", help="Folder for models/ and plots/.")
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (cuda, then mps, then cpu), cpu, cuda or cuda:N.",
)
def demo(out: str, device: str) -> None:
    """Run the tutorial "PyTorch Workflow Fundamentals", sections 1 to 6.

    Prints what the tutorial prints and writes DIR/models/01_pytorch_workflow_model_{0,1}.pth
    and DIR/plots/*.png. On the CPU the numbers are the tutorial's exactly.
    """
    from torchwork.demo import run_demo

    run_demo(out, device)


@cli.command()
@click.argument("path", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def inspect(path: str, as_json: bool) -> None:
    """Show a model file's tensors: names, shapes, values, and the device it was saved from.

    FILE is a .pth/.pt state_dict or a .safetensors file. It is loaded without running any
    code from it (weights_only=True, after a scan of its pickle) and onto the CPU, so a file
    saved on a GPU inspects on any machine.
    """
    from torchwork.inspection import describe_weights, format_description

    desc = describe_weights(path)
    click.echo(json.dumps(desc, indent=2) if as_json else format_description(desc))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning expected errors into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="torchwork", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("torchwork: aborted", err=True)
        return 130
    except click.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "torchwork"
        click.echo(f"{where}: error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("torchwork: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        from torchwork.errors import TorchworkError

        if isinstance(exc, TorchworkError):
            click.echo(f"torchwork: error: {_one_line(str(exc))}", err=True)
            return exc.exit_code
        raise
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run() -> Any:  # pragma: no cover - console script shim
    sys.exit(main())
