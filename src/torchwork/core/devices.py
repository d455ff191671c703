"""Device choice: ``auto`` picks CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from torchwork.core.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto", where: str = "device") -> torch.device:
    """The ``torch.device`` for a name; an unknown or unavailable one is an :class:`InputError`.

    ``where`` names the option in the caller's words (``--device`` on the command line).
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise InputError(f"{where} {device!r}: expected one of {', '.join(DEVICE_CHOICES)}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{where} {device!r}: CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InputError(f"{where} {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type == "mps":
        if not _mps_available():
            raise InputError(f"{where} {device!r}: MPS is not available on this machine")
    elif resolved.type != "cpu":
        raise InputError(f"{where} {device!r}: expected one of {', '.join(DEVICE_CHOICES)}")
    return resolved


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
