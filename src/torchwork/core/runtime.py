"""The machine a run runs on: its devices, the memory it has available, and seeds.

Device choice: ``auto`` picks CUDA, then Apple's MPS, then the CPU. Memory: what this process
may still allocate (``MemAvailable``, capped by a container's limit), checked before a file is
read. Seeds: a per-epoch seed mixed from ``(seed, epoch)``, and the state of the generators a
fit uses, as tensors and plain values a checkpoint can hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchwork.core.errors import InputError

# --------------------------------------------------------------------------- devices and memory
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


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, capped by a container's limit; None if unknown."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    # cgroup v2, then v1: the limit less the memory in use that cannot be reclaimed (not the page cache)
    for limit_file, stat_file, key in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.stat", "anon"),
                                       ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                        "/sys/fs/cgroup/memory/memory.stat", "total_rss")):  # fmt: skip
        try:
            limit = int(Path(limit_file).read_text().strip())
            used = next(int(line.split()[1]) for line in Path(stat_file).read_text().splitlines()
                        if line.split()[:1] == [key])  # fmt: skip
        except (OSError, ValueError, IndexError, StopIteration):
            continue
        if limit < 1 << 60:  # "unlimited" is a huge number in v1
            found.append(max(limit - used, 0))
        break
    return min(found) if found else None


def human_size(n: float) -> str:
    """``"2.0 TiB"``, ``"1.5 GiB"``, ``"300 MiB"``: a number of bytes for a person."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.{0 if unit == 'KiB' else 1}f} {unit}"
    return f"{int(n)} bytes"


def memory_hint(kind: str) -> str:
    if kind == "csv":
        return "convert it to Parquet (read without the text, in about the size of its numbers) or use fewer rows"
    return "use fewer rows or a machine with more memory"


def check_memory(source: str, need: int, kind: str) -> None:
    """Refuse, before reading, a file that would need more memory than is available."""
    available = available_memory()
    if available is not None and need > available:
        raise InputError(
            f"{source}: reading it needs about {human_size(need)} and this machine has "
            f"{human_size(available)} available; " + memory_hint(kind)
        )


TRAINING_COPIES = 4  # a parameter in training: its value, its gradient and an optimizer's two moments (Adam)


def check_model_memory(where: str, parameters: int, bytes_per_value: int = 4) -> None:
    """Refuse, before a model is built, one whose training would need more memory than is available.

    ``parameters`` is its count of values (float32: 4 bytes each); training holds about
    :data:`TRAINING_COPIES` of each.
    """
    need = parameters * bytes_per_value * TRAINING_COPIES
    available = available_memory()
    if available is not None and need > available:
        raise InputError(
            f"{where}: {parameters:,} parameters; training them needs about {human_size(need)} and this machine "
            f"has {human_size(available)} available; use smaller layers"
        )


# ---------------------------------------------------------------------------------- CPU threads
# Multiply-adds of one training step (rows in a batch x the model's parameters) per intra-op
# thread. Below it, splitting a step over threads costs more in start-up and barriers than it
# saves, and on a machine where anything else runs, threads that wait for each other make a
# small step 10 to 25 times slower (benchmarks/speed's load case measures it).
WORK_PER_THREAD = 1 << 27


def threads_for(work: int, limit: int) -> int:
    """The intra-op threads for a training step of ``work`` multiply-adds: one for small steps,
    one more per :data:`WORK_PER_THREAD`, at most ``limit`` (the threads torch would use)."""
    return max(1, min(limit, work // WORK_PER_THREAD))


# ----------------------------------------------------------- seeds and random-number generators
def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for ``epoch``'s permutation, well mixed from ``(seed, epoch)``."""
    state = np.random.SeedSequence([seed % 2**63, epoch]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator_devices(device: torch.device) -> tuple[list[int], str]:
    """What ``torch.random.fork_rng`` forks for a fit on ``device``: the CPU's generator, and the device's."""
    if device.type in ("cuda", "mps"):
        return [device.index or 0], device.type
    return [], "cuda"


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The state of the generators a fit draws from (dropout and anything else in the model):
    the CPU's, and the accelerator's for a fit on one, as tensors."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
