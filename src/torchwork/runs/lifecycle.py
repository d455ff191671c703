"""Training into a run folder, and resuming one: the order of things and what happens on failure.

A run is trained into ``RUN_DIR.partial`` (its configuration first, then checkpoints) and
renamed to ``RUN_DIR`` only when every file is written, so ``RUN_DIR`` is never
half-written. A killed or interrupted run stays in ``RUN_DIR.partial`` for
``torchwork resume RUN_DIR``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from torchwork.core.errors import InputError, TrainingDiverged, TrainingInterrupted
from torchwork.files.atomic import atomic_write
from torchwork.files.checkpoint import Checkpointer
from torchwork.runs.config import TrainConfig
from torchwork.runs.failures import after_failure
from torchwork.runs.fitting import fit, resolve, restore
from torchwork.runs.folder import CHECKPOINT, complete_run_path, partial_path, write_run
from torchwork.runs.outdir import check_out, claim_run, default_out, move_into_place
from torchwork.runs.preparing import Prepared, prepare
from torchwork.runs.resume_point import Echo, check_consent, resume_start
from torchwork.runs.run import Run
from torchwork.runs.run_record import as_run, describe, describe_data, versions
from torchwork.training.callbacks import Callback, Progress, TensorBoard
from torchwork.training.distributed import Group, joined, on_main

__all__ = ["Echo", "describe", "resume_run", "train_run", "versions"]  # describe, versions: importable here as before


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
    trust_model_code: bool = False,
    unique_out: bool = False,
    model: Any = None,
) -> Run:
    """Train as ``config`` says, on ``data`` (or ``config.data``), into the run folder ``out``.

    ``out=None`` trains in memory and writes nothing (no checkpoints), unless ``unique_out``
    (the CLI's default folder, ``runs/<data>-<time>``, a free variant of it). Every input is
    checked before any folder is made; a failure leaves no run folder behind, except a
    partial one that can be resumed. See :mod:`torchwork.runs.outdir` for what is never replaced.
    ``model`` is your class, factory or instance (Python only; ``config.model`` names it).
    """
    config = config.validate()
    check_consent(config, trust_model_code)
    if data is None and config.data is not None:  # recorded absolute: resume and export work from anywhere
        config = config.updated({"data": str(Path(config.data).resolve())}, source="config")
    echo = echo or _stderr
    with joined(config.device) as group:
        lead = group is None or group.main  # in a process group, rank 0 alone checks, claims and writes the folder

        def where() -> Path | None:
            path = Path(out) if out is not None else (default_out(config.data) if unique_out else None)
            if path is not None:
                check_out(path, overwrite, config.data if data is None else None, unique=unique_out)
            return path

        out_path = on_main(group, where)
        prepared = prepare(config, data, given=model)
        config = resolve(config, prepared)
        if verbose and lead:
            for line in describe(prepared):
                echo(line)
        data_info = describe_data(config, data, prepared)
        if out_path is None:
            return _train(config, prepared, data_info, None, verbose and lead, given=model, group=group)
        out_path, partial, held = on_main(
            group, lambda: _claim(config, out_path, overwrite, unique_out), share=lambda c: (c[0], c[1], None)
        )
        try:
            run = _train(config, prepared, data_info, partial, verbose and lead, given=model, group=group)
            return _finish(run, prepared, partial, out_path, overwrite, from_file=data is None, lead=lead)
        except BaseException as exc:
            if lead:
                after_failure(exc, partial, out_path, from_file=data is None)
            raise
        finally:
            if held is not None:
                held.release()


def _claim(config: TrainConfig, out: Path, overwrite: bool, unique: bool) -> tuple[Path, Path, Any]:
    """Create and lock the partial run folder; write the configuration into it first."""
    out, held = claim_run(out, overwrite, unique)
    partial = partial_path(out)
    try:
        atomic_write(partial / "config.json", config.to_json())
    except BaseException:
        held.release()
        raise
    return out, partial, held


def resume_run(
    out: str | os.PathLike[str],
    data: Any = None,
    *,
    trust_model_code: bool = False,
    verbose: bool = True,
    echo: Echo | None = None,
    overwrite: bool = False,
    model: Any = None,
) -> Run:
    """Continue the unfinished run in ``out.partial`` from its last checkpoint (``out`` may be either path).

    The data is the run's data file, checked against its SHA-256; a run trained from a
    DataFrame or an array needs the same ``data`` again (checked the same way). A run of
    your own model class needs ``trust_model_code=True``: resuming imports that class. A
    run that had finished training when it was stopped is written out without training.
    """
    echo = echo or _stderr
    out_path = complete_run_path(out)
    partial = partial_path(out_path)
    with joined() as group:
        lead = group is None or group.main
        world = group.world_size if group is not None else 1
        config, state, extra, held = on_main(
            group, lambda: resume_start(partial, out_path, data, world, trust_model_code, model, echo),
            share=lambda r: (r[0], r[1], r[2], None),
        )  # fmt: skip
        try:
            data_info = extra.get("data")
            prepared = prepare(config, data)
            if (
                data is not None
                and data_info is not None
                and describe_data(config, data, prepared)["sha256"] != data_info["sha256"]
            ):
                raise InputError("the data given to resume is not the data the run started with (SHA-256 differs)")
            data_info = data_info or describe_data(config, data, prepared)
            if extra.get("finished"):
                fitted = restore(config, prepared, state or {}, extra, model, str(partial / CHECKPOINT))
                if lead:
                    echo(f"{partial}: training had finished; writing the run out")
                run = as_run(config, prepared, data_info, fitted, resumed=True, processes=world, group=group)
            else:
                run = _train(config, prepared, data_info, partial, verbose and lead, resume_state=state, given=model,
                             group=group)  # fmt: skip
            return _finish(run, prepared, partial, out_path, overwrite, from_file=data is None, lead=lead)
        except BaseException as exc:
            if lead:
                after_failure(exc, partial, out_path, keep=True, from_file=data is None)
            raise
        finally:
            if held is not None:
                held.release()


def _train(
    config: TrainConfig,
    prepared: Prepared,
    data_info: dict[str, Any],
    folder: Path | None,
    verbose: bool,
    resume_state: dict[str, Any] | None = None,
    given: Any = None,
    group: Group | None = None,
) -> Run:
    """Fit (every rank of a group) with progress, TensorBoard and checkpoints into ``folder`` (rank 0 writes)."""
    callbacks: list[Callback] = []
    if verbose:
        callbacks.append(Progress(config.epochs))
    checkpointer = None
    processes = group.world_size if group is not None else 1
    if folder is not None:
        if config.tensorboard and (group is None or group.main):
            callbacks.append(TensorBoard(str(folder / "tensorboard")))
        extra = {"config": config.to_dict(), "data": data_info, "processes": processes}
        checkpointer = Checkpointer(folder / CHECKPOINT, config.checkpoint_every, config.checkpoint_every_steps, extra,
                                    final=True)  # fmt: skip
        if resume_state is not None:  # the checkpoint resumed from is the last good one until a newer is written
            checkpointer.saved = (resume_state["fit"]["epoch"], resume_state["fit"]["step"])
        callbacks.append(checkpointer)
    try:
        fitted = fit(config, prepared, callbacks=callbacks, handle_signals=folder is not None, resume=resume_state,
                     given=given)  # fmt: skip
    except TrainingDiverged as exc:
        if checkpointer is not None and exc.checkpoint is None:
            exc.checkpoint = checkpointer.good()
        raise
    return as_run(config, prepared, data_info, fitted, resumed=resume_state is not None, processes=processes,
                   group=group)  # fmt: skip


def _finish(
    run: Run, prepared: Prepared, partial: Path, out: Path, overwrite: bool, from_file: bool, lead: bool = True
) -> Run:
    """Write every file of the run into ``partial``, then move it to ``out`` (rank 0 of a group alone).

    Training has finished and its final checkpoint is on disk: an interrupt here loses
    nothing, and ``torchwork resume`` writes the run out without training again.
    """
    if not lead:
        run.path = out
        return run
    try:
        write_run(run, prepared, partial, title=f"torchwork run {out.name}")
        move_into_place(partial, out, overwrite)
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            signal.SIGINT, run.info["epochs_run"], 0, checkpoint="training had finished; nothing is lost",
        ) from None  # fmt: skip
    run.path = out
    return run
