"""Training into a run folder and resuming one: the order of things, the checks, and what a failure keeps.

A run is trained into ``RUN_DIR.partial`` (its configuration first, then checkpoints) and
renamed to ``RUN_DIR`` only when every file is written, so ``RUN_DIR`` is never half-written.
A killed or interrupted run, or one whose streamed data changed under it (:class:`DataChanged`:
restore the file and resume), stays in ``RUN_DIR.partial`` for ``torchwork resume RUN_DIR``; a
failed run that cannot be resumed is removed. Before a resume: the lock, the number of
processes, consent to import a model class, and the same data (by SHA-256).

:func:`train` is the Python API with the reach of the CLI (``torchwork.train``);
:func:`train_run` trains what a configuration describes; :func:`resume` continues a run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchwork.core.errors import (
    DataChanged,
    InputError,
    IntegrityError,
    TrainingInterrupted,
    UnsafeFileError,
    interrupt_signal,
)
from torchwork.files.atomic import atomic_write, lock
from torchwork.files.checkpoint import Checkpointer, load_checkpoint
from torchwork.files.integrity import MANIFEST
from torchwork.runs.config import PYTHON, TrainConfig, load_config
from torchwork.runs.folder import (
    CHECKPOINT,
    as_run,
    check_out,
    claim_run,
    complete_run_path,
    default_out,
    describe,
    describe_data,
    file_digest,
    move_into_place,
    partial_path,
    write_run,
)
from torchwork.runs.prepare import Prepared, prepare
from torchwork.runs.recipe import fit, resolve, restore
from torchwork.runs.run import Run
from torchwork.training.callbacks import Callback, Progress, TensorBoard
from torchwork.training.distributed import Group, joined, on_main


# ---------------------------------------------------------------------- what a failed run keeps
def after_failure(
    exc: BaseException, partial: Path, out: Path, keep: bool = False, from_file: bool = True
) -> BaseException:
    """Say what was kept and how to go on; keep a partial run that can be resumed, remove one that cannot.

    The error to raise: ``exc``, or for a signal outside the fit's own handling (Ctrl-C before
    the fit began, a second signal, SIGTERM in the ``torchwork`` command) a
    :class:`TrainingInterrupted` that says what was written.
    """
    has_checkpoint = (partial / CHECKPOINT).exists()
    how = _how(out, from_file)
    signum = interrupt_signal(exc)
    if signum is not None:
        if not (keep or has_checkpoint):
            shutil.rmtree(partial, ignore_errors=True)
            return TrainingInterrupted(signum, 0, 0, checkpoint="nothing was written")
        kept = f"a checkpoint is in {partial / CHECKPOINT}" if has_checkpoint else f"{partial} is kept"
        return TrainingInterrupted(signum, 0, 0, checkpoint=kept, resume=how)
    if isinstance(exc, TrainingInterrupted):
        exc.checkpoint = exc.checkpoint or (
            f"a checkpoint is in {partial / CHECKPOINT}" if has_checkpoint else "no checkpoint"
        )
        exc.resume = how
    if isinstance(exc, DataChanged) and partial.is_dir():  # resumable once the data is back as it was
        what = f"its checkpoint is in {partial / CHECKPOINT}" if has_checkpoint else (
            "it has no checkpoint yet, so resume starts it again (--checkpoint-every N writes them)"
        )  # fmt: skip
        exc.kept = f"the run is kept in {partial} ({what}): restore the data, then continue with: {how}"
    if not (keep or has_checkpoint or isinstance(exc, TrainingInterrupted | DataChanged)):
        shutil.rmtree(partial, ignore_errors=True)
    return exc


def _how(out: Path, from_file: bool) -> str:
    return f"torchwork resume {out}" if from_file else f"torchwork.resume({str(out)!r}, data=<the same data>)"


def _interrupted(exc: BaseException, checkpoint: str, resume: str | None = None) -> BaseException:
    """A signal before anything was claimed as a :class:`TrainingInterrupted`; other errors as they are."""
    signum = interrupt_signal(exc)
    return exc if signum is None else TrainingInterrupted(signum, 0, 0, checkpoint=checkpoint, resume=resume)


# ------------------------------------------------------------------- the checks before a resume
Echo = Callable[[str], Any]


def check_consent(config: TrainConfig, trust_model_code: bool) -> None:
    """A class named in a config file is not consent to import it: that needs --trust-model-code."""
    if ":" in config.model and config.from_file("model") and not trust_model_code:
        raise UnsafeFileError(
            f"{config.where('model')}: names the class {config.model!r}; importing it runs that module's code: "
            "pass --trust-model-code if you trust it (naming it with --model is consent too)"
        )


def resume_start(
    partial: Path, out: Path, data: Any, world: int, trust_model_code: bool, model: Any, echo: Echo
) -> tuple[TrainConfig, dict[str, Any] | None, dict[str, Any], Any]:
    """Lock the partial run; its configuration, checkpoint state and extra values, after every check."""
    if partial.is_symlink() or not partial.is_dir():
        if (out / MANIFEST).exists():
            raise InputError(f"{out}: this run is complete; nothing to resume")
        raise InputError(f"{partial}: no unfinished run to resume")
    held = lock(partial)
    try:
        config, state, extra = _resume_point(partial, echo)
        processes = int(extra.get("processes", 1))
        if state is not None and not extra.get("finished") and processes != world:
            n = f"{processes} process{'es' if processes > 1 else ''}"
            raise InputError(
                f"{partial}: trained in {n}; it resumes exactly only in {processes} (this is {world}): "
                f"torchwork resume {out} --nproc {processes}, or torchrun with {processes} processes in all"
            )
        check_consent(config, trust_model_code or model is not None)
        if ":" in config.model and not trust_model_code and model is None:
            raise UnsafeFileError(
                f"{partial}: the run's model is the class {config.model!r}; resuming imports it, which runs that "
                "module's code: pass --trust-model-code (trust_model_code=True) if you trust it"
            )
        data_info = extra.get("data")
        if data is None:
            source = config.data
            if source is None:
                raise InputError(
                    f"{partial}: this run was trained from in-memory data; resume it in Python with "
                    "torchwork.resume(RUN_DIR, data=<the same data>)"
                )
            if not (Path(source).is_file() or Path(source).is_dir()):
                raise InputError(f"{partial}: its data file {source} is gone; a run resumes only from the same data")
            if data_info is not None and file_digest(Path(source)) != data_info["sha256"]:
                raise InputError(f"{source}: changed since the run started (SHA-256 differs); cannot resume exactly")
    except BaseException:
        held.release()
        raise
    return config, state, extra, held


def _resume_point(partial: Path, echo: Echo) -> tuple[TrainConfig, dict[str, Any] | None, dict[str, Any]]:
    """The configuration, the checkpoint's state (None: start again) and its extra values."""
    ckpt = partial / CHECKPOINT
    if ckpt.exists():
        state, extra = load_checkpoint(ckpt)
        if not isinstance(extra.get("config"), dict):  # a checkpoint the Trainer wrote, not a run
            raise IntegrityError(f"{ckpt}: holds no run configuration; start again with --overwrite")
        return TrainConfig().updated(extra["config"], source=str(ckpt)).validate(), state, extra
    config_file = partial / "config.json"
    try:
        config = TrainConfig().updated(json.loads(config_file.read_text()), source=str(config_file))
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{config_file}: cannot be read ({exc}); start again with --overwrite") from None
    echo(f"{partial}: no checkpoint yet; starting the run again from the beginning")
    return config.validate(), None, {}


# ----------------------------------------------------------------------------- train and resume


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
    try:
        return _train_run(config, data, out, overwrite, verbose, echo, trust_model_code, unique_out, model)
    except BaseException as exc:  # a signal before the run folder was claimed: nothing was written
        failure = _interrupted(exc, "nothing was written")
        if failure is exc:
            raise
        raise failure from None


def _train_run(
    config: TrainConfig, data: Any, out: str | os.PathLike[str] | None, overwrite: bool, verbose: bool,
    echo: Echo | None, trust_model_code: bool, unique_out: bool, model: Any,
) -> Run:  # fmt: skip
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
            failure = after_failure(exc, partial, out_path, from_file=data is None) if lead else _interrupted(exc, "")
            if failure is exc:
                raise
            raise failure from None
        finally:
            if held is not None:
                held.release()


def _claim(config: TrainConfig, out: Path, overwrite: bool, unique: bool) -> tuple[Path, Path, Any]:
    """Create and lock the partial run folder; write the configuration into it first. A signal
    meanwhile is held (:func:`~torchwork.core.interrupts.deferred`) and raised once the caller's
    clean-up is in place; a failure removes the folder it made."""
    from torchwork.core import interrupts

    with interrupts.deferred():
        out, held = claim_run(out, overwrite, unique)
        partial = partial_path(out)
        try:
            atomic_write(partial / "config.json", config.to_json())
        except BaseException:
            held.release()
            shutil.rmtree(partial, ignore_errors=True)  # made just now: nothing in it is anyone's
            raise
    return out, partial, held


def resume(
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
    out_path = complete_run_path(out)
    try:
        return _resume(out_path, data, trust_model_code, verbose, echo or _stderr, overwrite, model)
    except BaseException as exc:  # a signal before the run was locked: it is as it was
        failure = _interrupted(exc, f"{partial_path(out_path)} is kept", _how(out_path, data is None))
        if failure is exc:
            raise
        raise failure from None


def _resume(
    out_path: Path, data: Any, trust_model_code: bool, verbose: bool, echo: Echo, overwrite: bool, model: Any
) -> Run:
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
            failure = (
                after_failure(exc, partial, out_path, keep=True, from_file=data is None) if lead
                else _interrupted(exc, "")
            )  # fmt: skip
            if failure is exc:
                raise
            raise failure from None
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
    fitted = fit(config, prepared, callbacks=callbacks, handle_signals=folder is not None, resume=resume_state,
                 given=given)  # fmt: skip
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
    if prepared.stream is not None:  # the data read from start to end is the data run.json's SHA-256 names
        prepared.stream.source.check_unchanged()
    try:
        write_run(run, prepared, partial, title=f"torchwork run {out.name}")
        move_into_place(partial, out, overwrite)
    except BaseException as exc:
        signum = interrupt_signal(exc)
        if signum is None:
            raise
        raise TrainingInterrupted(
            signum, run.info["epochs_run"], 0, checkpoint="training had finished; nothing is lost",
        ) from None  # fmt: skip
    run.path = out
    return run


# -------------------------------------------------------------- the Python API: torchwork.train


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
    >>> run.metrics["model"]["val"]["r2"], run.predict(new_rows)                 # doctest: +SKIP
    """
    from torchwork.models.registry import object_path

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
