"""The Python API with the reach of the CLI: ``torchwork.train``, ``load_run``, ``resume``."""

from __future__ import annotations

import os
from typing import Any

from torchwork.runs.config import load_config
from torchwork.runs.folder import load_run
from torchwork.runs.lifecycle import resume_run as resume
from torchwork.runs.run import Run

__all__ = ["load_run", "resume", "train"]


def train(
    data: Any = None,
    *,
    target: str | list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    verbose: bool = True,
    **options: Any,
) -> Run:
    """Train on a file, DataFrame, array or tensor, as ``torchwork train`` does.

    ``options`` are the CLI's flags with underscores (``epochs=50``, ``model="linear"``,
    ``hidden=[32, 32]``, ``scheduler="cosine"``, ...); ``config`` is a TOML/YAML file that
    they override. With ``out`` the run folder is written; without it nothing is written
    and the returned :class:`~torchwork.runs.Run` lives in memory.

    >>> run = torchwork.train("houses.csv", target="price", out="runs/houses")   # doctest: +SKIP
    >>> run.metrics["model"]["test"]["r2"], run.predict(new_rows)                 # doctest: +SKIP
    """
    from torchwork.runs.lifecycle import train_run

    overrides = dict(options)
    if target is not None:
        overrides["target"] = target
    if isinstance(data, str | os.PathLike):
        overrides["data"] = str(data)
        data = None
    cfg = load_config(config, overrides, overrides_source="train()")
    return train_run(cfg, data, out, overwrite=overwrite, verbose=verbose)
