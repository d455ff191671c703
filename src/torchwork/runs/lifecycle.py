"""Training into a run folder, and resuming one: the order of things and what happens on failure.

A run is trained into ``RUN_DIR.partial`` (its configuration first, then checkpoints) and
renamed to ``RUN_DIR`` only when every file is written, so ``RUN_DIR`` is never
half-written. A killed or interrupted run stays in ``RUN_DIR.partial`` for
``torchwork resume RUN_DIR``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchwork.core.errors import (
    InputError,
    IntegrityError,
    OutputError,
    TrainingDiverged,
    TrainingInterrupted,
    UnsafeFileError,
)
from torchwork.core.version import __version__
from torchwork.files.atomic import atomic_write, ensure_dir, fsync_dir, sha256_file
from torchwork.files.checkpoint import Checkpointer, load_checkpoint
from torchwork.files.manifest import MANIFEST
from torchwork.models.registry import count_parameters
from torchwork.runs.config import TrainConfig
from torchwork.runs.folder import CHECKPOINT, MODEL_FORMAT, RUN_FORMAT, partial_path, write_run
from torchwork.runs.recipe import PARTS, Prepared, evaluate, fit, prepare
from torchwork.runs.run import Run
from torchwork.training.callbacks import Callback, Progress, TensorBoard

Echo = Callable[[str], Any]


def versions() -> dict[str, str]:
    return {
        "torchwork": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def train_run(
    config: TrainConfig,
    data: Any = None,
    out: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    verbose: bool = True,
    echo: Echo | None = None,
) -> Run:
    """Train as ``config`` says, on ``data`` (or ``config.data``), into the run folder ``out``.

    ``out=None`` trains in memory and writes nothing (no checkpoints). Every input is
    checked before any folder is made; a failure leaves no run folder behind.
    """
    config = config.validate()
    if data is None and config.data is not None:  # recorded absolute: resume and export work from anywhere
        config = config.updated({"data": str(Path(config.data).resolve())}, source="config")
    echo = echo or _stderr
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _check_out(out_path, overwrite)
    prepared = prepare(config, data)
    if prepared.data.dropped:
        echo(f"dropped {prepared.data.dropped} rows with missing values (of {len(prepared.table.frame)})")
    data_info = _data_info(config, data, prepared)
    if out_path is None:
        return _train(config, prepared, data_info, None, verbose)
    partial = partial_path(out_path)
    if partial.exists():
        shutil.rmtree(partial)  # _check_out allowed it: --overwrite
    ensure_dir(partial)
    try:
        atomic_write(partial / "config.json", config.to_json())
        run = _train(config, prepared, data_info, partial, verbose)
        return _finish(run, prepared, partial, out_path)
    except BaseException as exc:
        _after_failure(exc, partial, out_path, from_file=data is None)
        raise


def resume_run(
    out: str | os.PathLike[str],
    data: Any = None,
    *,
    trust_model_code: bool = False,
    verbose: bool = True,
    echo: Echo | None = None,
) -> Run:
    """Continue the unfinished run in ``out.partial`` from its last checkpoint.

    The data is the run's data file, checked against its SHA-256; a run trained from a
    DataFrame or an array needs the same ``data`` again (checked the same way). A run of
    your own model class needs ``trust_model_code=True``: resuming imports that class.
    """
    echo = echo or _stderr
    out_path = Path(out)
    partial = partial_path(out_path)
    if not partial.is_dir():
        if (out_path / MANIFEST).exists():
            raise InputError(f"{out_path}: this run is complete; nothing to resume")
        raise InputError(f"{partial}: no unfinished run to resume")
    ckpt = partial / CHECKPOINT
    if ckpt.exists():
        state, extra = load_checkpoint(ckpt)
        config = TrainConfig().updated(extra["config"], source=str(ckpt))
        data_info = extra["data"]
    else:
        config_file = partial / "config.json"
        try:
            config = TrainConfig().updated(json.loads(config_file.read_text()), source=str(config_file))
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{config_file}: cannot be read ({exc}); start again with --overwrite") from None
        state, data_info = None, None
        echo(f"{partial}: no checkpoint yet; starting the run again from the beginning")
    config = config.validate()
    if ":" in config.model and not trust_model_code:
        raise UnsafeFileError(
            f"{partial}: the run's model is the class {config.model!r}; resuming imports it, which runs that "
            "module's code: pass --trust-model-code (trust_model_code=True) if you trust it"
        )
    if data is None:
        source = config.data
        if source is None:
            raise InputError(
                f"{partial}: this run was trained from in-memory data; resume it in Python with "
                "torchwork.resume(RUN_DIR, data=<the same data>)"
            )
        if not Path(source).is_file():
            raise InputError(f"{partial}: its data file {source} is gone; a run resumes only from the same data")
        if data_info is not None and sha256_file(source) != data_info["sha256"]:
            raise InputError(f"{source}: changed since the run started (SHA-256 differs); cannot resume exactly")
    prepared = prepare(config, data)
    if (
        data is not None
        and data_info is not None
        and _data_info(config, data, prepared)["sha256"] != data_info["sha256"]
    ):
        raise InputError("the data given to resume is not the data the run started with (SHA-256 differs)")
    data_info = data_info or _data_info(config, data, prepared)
    try:
        run = _train(config, prepared, data_info, partial, verbose, resume_state=state)
        return _finish(run, prepared, partial, out_path)
    except BaseException as exc:
        _after_failure(exc, partial, out_path, keep=True, from_file=data is None)
        raise


def _check_out(out: Path, overwrite: bool) -> None:
    partial = partial_path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: exists; pass --overwrite to replace it")
    if partial.exists() and not overwrite:
        raise InputError(
            f"{partial}: holds an unfinished run; continue it with 'torchwork resume {out}' "
            "or pass --overwrite to start again"
        )


def _after_failure(exc: BaseException, partial: Path, out: Path, keep: bool = False, from_file: bool = True) -> None:
    """Say what was kept and how to go on; keep a partial run that can be resumed, remove one that cannot."""
    has_checkpoint = (partial / CHECKPOINT).exists()
    if isinstance(exc, TrainingInterrupted):
        exc.checkpoint = f"a checkpoint is in {partial / CHECKPOINT}" if has_checkpoint else "no checkpoint"
        exc.resume = f"torchwork resume {out}" if from_file else f"torchwork.resume({str(out)!r}, data=<the same data>)"
    elif isinstance(exc, TrainingDiverged) and exc.checkpoint is None:
        exc.checkpoint = (
            f"the last good checkpoint is {partial / CHECKPOINT}" if has_checkpoint else "no checkpoint was written"
        )
    if not (keep or has_checkpoint or isinstance(exc, TrainingInterrupted)):
        shutil.rmtree(partial, ignore_errors=True)


def _data_info(config: TrainConfig, data: Any, prepared: Prepared) -> dict[str, Any]:
    source = data if data is not None else config.data
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        info: dict[str, Any] = {"source": str(path.resolve()), "sha256": sha256_file(path)}
    else:
        digest = hashlib.sha256(prepared.data.X.tobytes())
        digest.update(prepared.data.y.tobytes() if prepared.data.y is not None else b"")
        info = {"source": f"<{type(source).__name__}>", "sha256": digest.hexdigest()}
    info.update(rows=len(prepared.table.frame), rows_used=len(prepared.data.X), dropped=prepared.data.dropped)
    return info


def _train(
    config: TrainConfig,
    prepared: Prepared,
    data_info: dict[str, Any],
    folder: Path | None,
    verbose: bool,
    resume_state: dict[str, Any] | None = None,
) -> Run:
    callbacks: list[Callback] = []
    if verbose:
        callbacks.append(Progress(config.epochs))
    if folder is not None:
        if config.tensorboard:
            callbacks.append(TensorBoard(str(folder / "tensorboard")))
        extra = {"config": config.to_dict(), "data": data_info}
        checkpointer = Checkpointer(folder / CHECKPOINT, config.checkpoint_every, config.checkpoint_every_steps, extra)
        if resume_state is not None:  # the checkpoint resumed from is the last good one until a newer is written
            checkpointer.saved = (resume_state["fit"]["epoch"], resume_state["fit"]["step"])
        callbacks.append(checkpointer)
    try:
        fitted = fit(config, prepared, callbacks=callbacks, handle_signals=folder is not None, resume=resume_state)
    except TrainingDiverged as exc:
        if folder is not None and exc.checkpoint is None:
            exc.checkpoint = checkpointer.good()
        raise
    info = {
        "format": RUN_FORMAT,
        "data": data_info,
        "split": {p: len(prepared.parts[p]) for p in PARTS},
        "device": fitted.device,
        "epochs_run": fitted.epochs_run,
        "stopped_early": fitted.stopped_early,
        "best_epoch": fitted.best_epoch,
        "seconds": sum(fitted.history["seconds"]) if resume_state is not None else fitted.seconds,
        "finished": _now(),
        "notes": fitted.notes,
        "versions": versions(),
    }
    metrics, baseline = evaluate(fitted.model, prepared)
    meta = {
        "format": MODEL_FORMAT,
        "architecture": fitted.spec,
        "parameters": count_parameters(fitted.model),
        "preprocessing": prepared.pre.to_json(),
        "baseline": baseline,
        "dtype": "float32",
        "weights": "model.safetensors",
        "trained_on": fitted.device,
        "versions": versions(),
    }
    return Run(fitted.model, prepared.pre, config.to_dict(), fitted.history, metrics, info, meta)


def _finish(run: Run, prepared: Prepared, partial: Path, out: Path) -> Run:
    """Write every file of the run into ``partial``, then move it to ``out``."""
    write_run(run, prepared, partial, title=f"torchwork run {out.name}")
    _move_into_place(partial, out)
    run.path = out
    return run


def _move_into_place(partial: Path, out: Path) -> None:
    old = None
    try:
        if out.exists():  # --overwrite: swap, then remove the old run
            old = out.with_name(f"{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(partial, out)
        fsync_dir(out.parent)
    except OSError as exc:
        raise OutputError(f"cannot move the finished run {partial} to {out}: {exc.strerror or exc}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
