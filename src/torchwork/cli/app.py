"""The ``torchwork`` command group; commands register on it (see ``commands`` and ``training``)."""

from __future__ import annotations

import click

from torchwork.core.version import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class InOrder(click.Group):
    """Commands listed in the order of the workflow, not alphabetically."""

    ORDER = ("demo", "train", "predict", "evaluate", "inspect", "resume", "export", "sign", "convert", "bench")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands, key=lambda name: (*self.ORDER, name).index(name))


@click.group(cls=InOrder, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="torchwork")
def cli() -> None:
    """torchwork: the whole PyTorch workflow (data, model, loss and optimizer, training and
    testing loops, prediction, evaluation, saving and loading) in one tool.

    Start with `torchwork demo` (the tutorial) or `torchwork train DATA --target COL`.
    """
