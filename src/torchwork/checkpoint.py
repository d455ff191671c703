"""Checkpoints: the whole state of a fit in one file that holds no code.

A checkpoint is a safetensors file. Its tensors are every tensor of
:meth:`Trainer.state_dict` (model, optimizer, scheduler, early stopping's best weights,
RNG states, the current epoch's batch losses); everything else (epoch, step, position in
the epoch, history, configuration, ...) is JSON in the file's header, with the tensors'
places marked. A SHA-256 over the JSON and every tensor's bytes, also in the header, is
checked on load, so a flipped bit or a truncation is refused rather than resumed from.

Files are written atomically (:func:`torchwork.files.atomic_write`): a kill during a
write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from torchwork.callbacks import Callback, EpochLogs
from torchwork.errors import IntegrityError, TrainingDiverged
from torchwork.files import atomic_write, ensure_dir
from torchwork.safeload import load_weights, save_weights_bytes

FORMAT = "torchwork-checkpoint/1"
_KEY = "torchwork_checkpoint"
_HASH = "sha256"


def _flatten(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """JSON-ready copy of ``obj`` with each tensor moved into ``tensors`` under its path."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _flatten(v, tensors, f"{path}/{k}") for k, v in obj.items()}
        return {"__items__": [[k, _flatten(v, tensors, f"{path}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def _digest(header: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(header.encode())
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checkpoint_bytes(state: dict[str, Any], extra: dict[str, Any] | None = None) -> bytes:
    """The bytes of a checkpoint holding ``state`` (a Trainer state_dict) and ``extra`` (plain values)."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten({"format": FORMAT, "state": state, "extra": extra or {}}, tensors, "")
    header = json.dumps(tree, separators=(",", ":"))
    plain = {k: v.cpu().contiguous() for k, v in tensors.items()}
    return save_weights_bytes(plain, metadata={_KEY: header, _HASH: _digest(header, plain)})


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    return atomic_write(path, checkpoint_bytes(state, extra))


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, extra)`` from a checkpoint, after its SHA-256 is checked."""
    weights = load_weights(path, safetensors_only=True)
    header = weights.metadata.get(_KEY)
    recorded = weights.metadata.get(_HASH)
    if weights.format != "safetensors" or header is None or recorded is None:
        raise IntegrityError(f"{path}: not a torchwork checkpoint")
    actual = _digest(header, weights.tensors)
    if actual != recorded:
        raise IntegrityError(f"{path}: damaged: expected sha256 {recorded}, actual {actual}")
    tree = _unflatten(json.loads(header), weights.tensors)
    if tree.get("format") != FORMAT:
        raise IntegrityError(f"{path}: unknown checkpoint format {tree.get('format')!r}")
    return tree["state"], tree["extra"]


class Checkpointer(Callback):
    """Write a checkpoint every ``every_epochs`` epochs and/or ``every_steps`` steps, and on SIGINT/SIGTERM.

    A checkpoint is written only if every loss since the last check and every weight is
    finite: a diverged fit never overwrites the last good checkpoint, and the error says
    which checkpoint is good.
    """

    order = 100  # after early stopping, so that its decision is in the checkpoint

    def __init__(
        self,
        path: str | os.PathLike[str],
        every_epochs: int | None = None,
        every_steps: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.every_epochs, self.every_steps = every_epochs, every_steps
        self.step_interval = every_steps
        self.extra = extra or {}
        self.saved: tuple[int, int] | None = None  # (epoch, step) of the last good checkpoint

    def on_step_end(self, trainer: Any) -> None:
        if self.every_steps and trainer.state.step % self.every_steps == 0:
            self.save(trainer)

    def on_epoch_end(self, trainer: Any, logs: EpochLogs) -> None:
        if self.every_epochs and trainer.state.epoch % self.every_epochs == 0:
            self.save(trainer)

    def on_interrupt(self, trainer: Any) -> None:
        self.save(trainer)

    def good(self) -> str:
        if self.saved is None:
            return "no checkpoint was written"
        return f"the last good checkpoint is {self.path} (epoch {self.saved[0]}, step {self.saved[1]})"

    def save(self, trainer: Any) -> None:
        try:
            trainer.check_finite()
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"{exc}; {self.good()}") from None
        running = trainer._epoch_losses_so_far()  # the epoch in progress, not yet checked
        if running:
            losses = torch.cat([t.reshape(-1) for t in running])
            bad = torch.nonzero(~torch.isfinite(losses))
            if len(bad):
                batch = int(bad[0])
                raise TrainingDiverged(
                    f"training diverged: the training loss became {float(losses[batch])} at epoch "
                    f"{trainer.state.epoch}, batch {batch}; {self.good()}"
                )
        for name, p in trainer.model.state_dict().items():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise TrainingDiverged(
                    f"training diverged: weight {name} is not finite at epoch {trainer.state.epoch}, "
                    f"step {trainer.state.step}; {self.good()}"
                )
        ensure_dir(self.path.parent)
        save_checkpoint(self.path, trainer.state_dict(), self.extra)
        self.saved = (trainer.state.epoch, trainer.state.step)
