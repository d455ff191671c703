"""What a failed run leaves behind: a partial run that can be resumed is kept, and the error says
where its checkpoint is and how to go on; one that cannot is removed."""

from __future__ import annotations

import shutil
from pathlib import Path

from torchwork.core.errors import TrainingDiverged, TrainingInterrupted
from torchwork.runs.folder import CHECKPOINT


def after_failure(exc: BaseException, partial: Path, out: Path, keep: bool = False, from_file: bool = True) -> None:
    """Say what was kept and how to go on; keep a partial run that can be resumed, remove one that cannot."""
    has_checkpoint = (partial / CHECKPOINT).exists()
    how = f"torchwork resume {out}" if from_file else f"torchwork.resume({str(out)!r}, data=<the same data>)"
    if isinstance(exc, TrainingInterrupted):
        exc.checkpoint = exc.checkpoint or (
            f"a checkpoint is in {partial / CHECKPOINT}" if has_checkpoint else "no checkpoint"
        )
        exc.resume = how
    elif isinstance(exc, TrainingDiverged) and exc.checkpoint is None:
        exc.checkpoint = (
            f"the last good checkpoint is {partial / CHECKPOINT}" if has_checkpoint else "no checkpoint was written"
        )
    if not (keep or has_checkpoint or isinstance(exc, TrainingInterrupted)):
        shutil.rmtree(partial, ignore_errors=True)
