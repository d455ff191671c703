"""``Trainer.fit`` in a process group, for the multi-process tests (started by torchrun).

    torchrun --nproc-per-node 2 -m tests.ddp_driver MODE OUT BATCH

MODE ``fit``: fit the test's MLP on the test's data with batch BATCH per process; rank 0
saves the weights and history to OUT. ``nan``: the same, but rank 1's copy of one row is
NaN; every rank writes the error it raised to ``OUT.rankR``. ``freed``: fit (with the cyclic
garbage collector off), then every rank writes to ``OUT.rankR`` how many DistributedDataParallel
wrappers were still alive when ``joined`` destroyed the group.
"""

from __future__ import annotations

import sys

import torch

from tests.support import regression_data
from torchwork.core.errors import TrainingDiverged
from torchwork.training.distributed import joined
from torchwork.training.trainer import Trainer


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def trainer(batch: int) -> Trainer:
    return Trainer(loss="mse", optimizer="adam", lr=0.01, epochs=5, batch_size=batch, seed=3, device="cpu")


def data() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    X, y = regression_data(n=283, d=3, seed=4)
    return (X[:203], y[:203]), (X[203:], y[203:])


def main() -> int:
    mode, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "freed":
        return freed(out, batch)
    with joined("cpu") as group:
        assert group is not None, "start this under torchrun"
        train, val = data()
        if mode == "nan" and group.rank == 1:
            train = (train[0].clone(), train[1])
            train[0][7, 1] = float("nan")
        net = model()
        try:
            history = trainer(batch).fit(net, train, val)
        except TrainingDiverged as exc:
            with open(f"{out}.rank{group.rank}", "w") as f:
                f.write(str(exc))
            return 1
        if group.main:
            torch.save({"weights": net.state_dict(), "history": history.rows}, out)
    return 0


def freed(out: str, batch: int) -> int:
    import gc
    import weakref

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    gc.disable()  # what is left in a reference cycle stays until something collects it
    alive: list[int] = []
    destroy = dist.destroy_process_group
    refs: list[weakref.ref] = []

    def destroy_and_count(*args, **kwargs):
        alive.append(sum(r() is not None for r in refs))
        return destroy(*args, **kwargs)

    dist.destroy_process_group = destroy_and_count
    with joined("cpu") as group:
        assert group is not None, "start this under torchrun"
        rank = group.rank
        trainer(batch).fit(model(), *data())
        refs = [weakref.ref(o) for o in gc.get_objects() if isinstance(o, DistributedDataParallel)]
        assert refs, "the fit left no DistributedDataParallel to look for"
    with open(f"{out}.rank{rank}", "w") as f:
        f.write(str(alive))
    return 0


if __name__ == "__main__":
    sys.exit(main())
