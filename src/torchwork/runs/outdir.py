"""Where a run is written: choosing, checking, claiming and finally moving its folder.

The rules, so that nothing a user had is ever lost:

- ``RUN_DIR`` is built in ``RUN_DIR.partial``, created atomically and locked by the process
  that writes it; a second process aiming at the same folder is told who holds it.
- ``--overwrite`` replaces only a finished torchwork run whose every file its manifest lists;
  a folder holding anything else (your notes, your data) is never replaced, and the data
  being trained on may not live inside the folder.
- The finished run is moved into place without replacing anything that appeared meanwhile
  (the run then stays in ``RUN_DIR.partial``); with ``--overwrite`` the old and new runs are
  swapped atomically, so ``RUN_DIR`` always holds a whole run.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from torchwork.core.errors import BusyError, InputError, IntegrityError, OutputError
from torchwork.files.atomic import fsync_dir
from torchwork.files.folders import OWNER, Lock, claim, exchange, holder, is_locked, lock, move_noreplace
from torchwork.files.manifest import MANIFEST, unlisted_files
from torchwork.runs.folder import partial_path

# What torchwork writes in a run folder (top-level names), and nothing else.
OURS = {"config.json", "run.json", "model.json", "model.safetensors", "history.csv", "metrics.json", "report.html",
        "manifest.json", "signature.sig", "plots", "checkpoints", "tensorboard", OWNER}  # fmt: skip


def check_name(out: Path) -> None:
    if out.name in ("", ".", "..") or str(out).strip() == "":
        raise InputError(f"--out {str(out)!r}: give a folder name for the run (for example runs/my-run)")


def default_out(data: str | None) -> Path:
    """``runs/<data file's stem>-<time>`` (a free variant is chosen when the run is claimed)."""
    stem = Path(data).stem if data else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False


def replaceable(out: Path) -> None:
    """Refuse to replace ``out`` unless it is a finished torchwork run holding nothing else."""
    if out.is_symlink() or not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; --overwrite replaces only torchwork runs")
    if not (out / MANIFEST).is_file():
        raise InputError(f"{out}: is not a torchwork run (no {MANIFEST}); --overwrite replaces only runs, not folders")
    try:
        extra = unlisted_files(out)
    except IntegrityError:
        raise InputError(f"{out}: its {MANIFEST} is damaged; --overwrite replaces only whole torchwork runs") from None
    if extra:
        shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise InputError(f"{out}: holds files torchwork did not write ({shown}); not replaced: move them first")


def check_out(out: Path, overwrite: bool, data: str | None, unique: bool = False) -> None:
    """Everything that can be said about ``out`` before any data is read."""
    check_name(out)
    for folder in (out, partial_path(out)):
        if data is not None and folder.exists() and _is_inside(Path(data), folder):
            raise InputError(f"{out}: the data file {data} is inside it; a run folder never holds its data")
    if unique:
        return
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise InputError(f"{out}: exists; pass --overwrite to replace it")
        replaceable(out)
    partial = partial_path(out)
    if partial.exists() or partial.is_symlink():
        _check_partial(partial, out, overwrite)


def _check_partial(partial: Path, out: Path, overwrite: bool) -> None:
    if partial.is_symlink() or not partial.is_dir():
        raise InputError(
            f"{partial}: exists and is not a folder torchwork made; remove it yourself if it is not needed"
        )
    if is_locked(partial):
        raise BusyError(f"{partial}: being written by {holder(partial)}; choose another --out or wait")
    if not overwrite:
        raise InputError(
            f"{partial}: holds an unfinished run; continue it with 'torchwork resume {out}' "
            "or pass --overwrite to start again"
        )
    foreign = sorted(p.name for p in partial.iterdir() if p.name not in OURS)
    if foreign:
        raise InputError(f"{partial}: holds files torchwork did not write ({', '.join(foreign[:5])}); not removed")


def claim_run(out: Path, overwrite: bool, unique: bool) -> tuple[Path, Lock]:
    """Create and lock ``out.partial`` (or, with ``unique``, the first free ``out-N.partial``)."""
    for n in range(1, 1000 if unique else 2):
        candidate = out if n == 1 else out.with_name(f"{out.name}-{n}")
        if unique and (candidate.exists() or candidate.is_symlink()):
            continue
        partial = partial_path(candidate)
        try:
            return candidate, claim(partial)
        except FileExistsError:
            if unique:
                continue
            _check_partial(partial, candidate, overwrite)  # raises unless a stale run may be removed
            stale = lock(partial)
            shutil.rmtree(partial)
            stale.release()
            return candidate, claim(partial)
    raise OutputError(f"{out}: no free folder name near it")


def move_into_place(partial: Path, out: Path, overwrite: bool) -> None:
    """Move the finished run to ``out``: never over something that appeared; swapped with an old run."""
    (partial / OWNER).unlink(missing_ok=True)
    try:
        if not (out.exists() or out.is_symlink()):
            try:
                move_noreplace(partial, out)
            except FileExistsError:
                raise OutputError(
                    f"{out}: appeared while the run was trained; the finished run is kept in {partial} "
                    f"(move {out} away, then 'torchwork resume {out}' moves it into place)"
                ) from None
        else:
            if not overwrite:
                raise OutputError(f"{out}: appeared while the run was trained; the finished run is kept in {partial}")
            replaceable(out)  # still a torchwork run: it may have changed while this one trained
            if exchange(partial, out):
                old = partial  # the old run now lives under the partial name
            else:
                old = out.with_name(f"{out.name}.replaced-{os.getpid()}")
                os.rename(out, old)
                move_noreplace(partial, out)
            fsync_dir(out.parent)
            try:
                replaceable(old)  # what is removed is a whole torchwork run, and only that
            except InputError:  # someone added a file to the old run meanwhile: keep it, under another name
                os.rename(old, out.with_name(f"{out.name}.replaced-{os.getpid()}"))
            else:
                shutil.rmtree(old)
        fsync_dir(out.parent)
    except OSError as exc:
        raise OutputError(f"cannot move the finished run {partial} to {out}: {exc.strerror or exc}") from None
