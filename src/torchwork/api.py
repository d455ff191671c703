"""The Python API with the reach of the CLI: ``torchwork.train``, ``load_run``, ``resume``."""

from __future__ import annotations

import os
from typing import Any

from torchwork.runs.config import PYTHON, load_config
from torchwork.runs.folder import load_run
from torchwork.runs.lifecycle import resume_run as resume
from torchwork.runs.run import Run

__all__ = ["load_run", "resume", "train"]


def train(
    data: Any = None,
    *,
    target: str | int | list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    verbose: bool = True,
    model: Any = None,
    trust_model_code: bool = False,
    **options: Any,
) -> Run:
    """Train on a file, DataFrame, array or tensor, as ``torchwork train`` does.

    ``options`` are the CLI's flags with underscores (``epochs=50``, ``task="classification"``,
    ``hidden=[32, 32]``, ``scheduler="cosine"``, ...); ``config`` is a TOML/YAML file that
    they override. ``target`` is a column name, a list of them, or (for arrays) a column
    number (``-1``: the last). ``model`` is a name (``"mlp"``, ``"linear"``), a
    ``"package.module:Class"``, or your own class, factory or instance. With ``out`` the run
    folder is written; without it nothing is written and the :class:`~torchwork.runs.run.Run`
    lives in memory.

    >>> run = torchwork.train("houses.csv", target="price", out="runs/houses")   # doctest: +SKIP
    >>> run.metrics["model"]["test"]["r2"], run.predict(new_rows)                 # doctest: +SKIP
    """
    from torchwork.models.registry import object_path
    from torchwork.runs.lifecycle import train_run

    overrides = dict(options)
    if target is not None:
        overrides["target"] = target
    given = None
    if model is not None:
        if isinstance(model, str):
            overrides["model"] = model
        else:
            from torch import nn

            given = model
            overrides["model"] = object_path(type(model) if isinstance(model, nn.Module) else model)
    if isinstance(data, str | os.PathLike):
        overrides["data"] = str(data)
        data = None
    cfg = load_config(config, overrides, overrides_source=PYTHON)
    return train_run(cfg, data, out, overwrite=overwrite, verbose=verbose, trust_model_code=trust_model_code,
                     model=given)  # fmt: skip
