"""One timing of the tabular case in a process group (or alone), for the speed benchmark's processes case.

    python -m torch.distributed.run --standalone --nproc-per-node N -m benchmarks.speed.processes KIND ROWS BATCH
    python -m benchmarks.speed.processes KIND ROWS BATCH      # one process, for the reference

Trains KIND (linear or mlp) on ROWS x 32 in-memory rows, BATCH rows per process per step,
with Adam; rank 0 prints ``{"processes": N, "samples_per_s": ...}`` (the best of three timed
epochs, after one warm-up epoch).
"""

from __future__ import annotations

import json
import sys
import time

import torch


def main() -> None:
    from benchmarks.speed.cases import tabular_data, tabular_model
    from torchwork.training.distributed import joined
    from torchwork.training.trainer import Trainer

    kind, rows, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with joined("cpu") as group:
        X, y = tabular_data(rows)
        torch.manual_seed(0)
        model = tabular_model(kind)
        seconds = []
        for _ in range(4):  # the first is the warm-up
            trainer = Trainer(loss="mse", optimizer="adam", lr=1e-3, epochs=1, batch_size=batch, seed=0,
                              device="cpu", eval_batch_size=None)  # fmt: skip
            if group is not None:
                group.barrier()
            start = time.perf_counter()
            trainer.fit(model, (X, y))
            seconds.append(time.perf_counter() - start)
        best = min(seconds[1:])
        if group is None or group.main:
            n = group.world_size if group is not None else 1
            print(json.dumps({"processes": n, "samples_per_s": rows / best, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
