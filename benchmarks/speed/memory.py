"""Peak memory of one epoch of tabular training, measured in a fresh process.

    python -m benchmarks.speed.memory KIND ROWS BATCH DEVICE

prints one JSON line: the data's bytes and the peak memory above what the process held
before the data existed (resident memory on the CPU, allocated memory on a GPU).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def proc_status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def measure(kind: str, rows: int, batch: int, device_name: str) -> dict[str, float]:
    import torch

    from benchmarks.speed.cases import tabular_data, tabular_model
    from torchwork.training.trainer import Trainer

    device = torch.device(device_name)
    # Everything torch needs once (optimizer machinery, kernels) is loaded before the baseline.
    Trainer(loss="mse", optimizer="adam", epochs=1, batch_size=4, device=device).fit(
        tabular_model(kind, 8), tabular_data(16, 8)
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
        base = proc_status("VmRSS")
    X, y = tabular_data(rows)
    if device.type == "cuda":
        X, y = X.to(device), y.to(device)
        torch.cuda.reset_peak_memory_stats()
    data_bytes = X.nbytes + y.nbytes
    model = tabular_model(kind, X.shape[1])
    Trainer(loss="mse", optimizer="adam", epochs=1, batch_size=batch, seed=0, device=device).fit(model, (X, y))
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = proc_status("VmHWM")
    return {"data_bytes": data_bytes, "peak_bytes": peak - base, "ratio": (peak - base) / data_bytes}


if __name__ == "__main__":
    kind, rows, batch, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    print(json.dumps(measure(kind, rows, batch, device)))
