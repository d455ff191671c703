"""``torchwork train``/``resume`` that SIGKILLs its own process at a chosen point.

For the resume tests: a real SIGKILL, at a moment chosen exactly.

    python -m tests.kill_driver MODE N torchwork-arguments...

MODE ``after-save``: right after the N-th checkpoint is on disk (written between epochs or
mid-epoch, as the checkpoint settings say; the kill comes from the writer thread, while
training goes on); ``in-write``: while the N-th checkpoint is being written (its temporary
file is complete, the rename has not happened); ``step``: right after optimizer step N,
between checkpoints; ``finish``: at the N-th file written while the finished run is written
out (plots, report, manifest); ``swapped``: right after ``--overwrite`` swapped the new run in
(the old one not yet removed); ``none``: never.
"""

from __future__ import annotations

import os
import signal
import sys


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    mode, n, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    count = [0]
    if mode == "after-save":
        from torchwork.files.checkpoint import Checkpointer

        written = Checkpointer.written

        def written_then_die(self, where):
            written(self, where)
            count[0] += 1
            if count[0] == n:
                die()

        Checkpointer.written = written_then_die
    elif mode == "in-write":
        import torchwork.files.atomic as files

        replace = files.os.replace

        def replace_or_die(src, dst):
            if str(dst).endswith("last.safetensors"):
                count[0] += 1
                if count[0] == n:
                    assert os.path.getsize(src) > 0
                    die()
            return replace(src, dst)

        files.os.replace = replace_or_die
    elif mode == "finish":
        import torchwork.runs.folder as folder

        write = folder.atomic_write

        def write_or_die(path, data, **kw):
            count[0] += 1
            if count[0] == n:
                die()
            return write(path, data, **kw)

        folder.atomic_write = write_or_die
    elif mode == "swapped":
        import torchwork.runs.folder as outdir

        exchange = outdir.exchange

        def exchange_then_die(a, b):
            done = exchange(a, b)
            die()
            return done

        outdir.exchange = exchange_then_die
    elif mode == "step":
        from torchwork.training.trainer import Trainer

        training_step = Trainer.training_step

        def counting_step(self, batch):  # killed in the n-th training step, before its optimizer step
            count[0] += 1
            if count[0] == n:
                die()
            return training_step(self, batch)

        Trainer.training_step = counting_step
    from torchwork.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
