"""The checks before a run trains or resumes (consent to import a model class; for a resume: the
lock, the number of processes, the same data), and the point an unfinished run resumes from."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchwork.core.errors import InputError, IntegrityError, UnsafeFileError
from torchwork.files.checkpoint import load_checkpoint
from torchwork.files.folders import lock
from torchwork.files.manifest import MANIFEST
from torchwork.runs.config import TrainConfig
from torchwork.runs.folder import CHECKPOINT
from torchwork.runs.run_record import file_digest

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
