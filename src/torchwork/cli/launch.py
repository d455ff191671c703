"""``--nproc N``: this command again, in N processes on this machine, started by torchrun's own launcher.

The launcher is ``torch.distributed.run.run`` (what ``torchrun --standalone --nproc-per-node N``
runs), called in this process so that its report of a failed worker (a traceback in
torchrun) becomes one line: the workers print their own errors (rank 0 for errors every
rank shares), and this line says which process died of a signal.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from torchwork.core.errors import InputError


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less its ``--nproc N`` / ``--nproc=N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(n: int, argv: list[str]) -> int:
    """Run ``torchwork ARGV`` in ``n`` processes (gloo on CPU, NCCL on CUDA); the job's exit code."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError("--nproc: this process is already one of a group started by torchrun; leave --nproc out")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # One thread per process unless you said otherwise (torchrun sets 1 and warns).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the workers say what went wrong
    args = parse_args(["--standalone", f"--nproc-per-node={n}", "--max-restarts=0", "-m", "torchwork", *argv])
    try:  # SIGINT/SIGTERM here: the agent passes it on to every worker; they checkpoint and stop
        run(args)  # torchrun's main, less the decorator that prints a failed worker's report
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        rank, cause = _cause(exc.failures)
        if cause.exitcode < 0:
            try:
                died = signal.Signals(-cause.exitcode).name
            except ValueError:  # a signal without a name (a real-time one)
                died = f"signal {-cause.exitcode}"
            text = f"process {rank} of {n} was killed by {died}; the job stopped (resume it with the same --nproc)"
            print(f"torchwork: error: {text}", file=sys.stderr, flush=True)
            return 128 - cause.exitcode
        return int(cause.exitcode)
    return 0


def _cause(failures: dict[int, Any]) -> tuple[int, Any]:
    """The failure that stopped the job: a process killed from outside (the agent itself sends
    SIGTERM), else the lowest rank that exited with an error of its own, else the first."""
    ranks = sorted(failures)
    for rank in ranks:
        if failures[rank].exitcode < 0 and -failures[rank].exitcode != signal.SIGTERM:
            return rank, failures[rank]
    for rank in ranks:
        if failures[rank].exitcode > 0:
            return rank, failures[rank]
    return ranks[0], failures[ranks[0]]
