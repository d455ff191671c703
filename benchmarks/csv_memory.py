"""Peak memory of training on a CSV read into memory (issue 12: at most ~3x the file).

    .venv/bin/python benchmarks/csv_memory.py [--rows 1600000] [--dir /tmp/torchwork-csv-memory]

Writes a CSV of ``--rows`` rows x 9 columns of floats (8 features and a target; NumPy's
seeded normal numbers written by pandas), then runs, each in a fresh process, and reads the
kernel's peak resident set size (``ru_maxrss`` of the child, the same as ``VmHWM``):

- ``baseline``: a Python process that imports torch, pandas, pyarrow and torchwork's CLI and reads nothing;
- ``train``: ``torchwork train FILE --target y --epochs 1 --model linear`` (the whole run: read,
  prepare, baselines, one epoch, evaluation, plots, report).

Prints the file's size, both peaks, the peak as a multiple of the file's size, and the part of
it the data costs (``train`` minus ``baseline``) as a multiple of the file's size.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def _peak_mb(args: list[str]) -> float:
    """The peak RSS (MB) of a child process running ``args``; the child must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:  # ru_maxrss of children is the largest child's so far: run the smaller one first
        raise SystemExit("measure the processes in increasing order of their peaks")
    return after / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_600_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="torchwork-csv-memory-"))
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"rows-{args.rows}.csv"
    if not csv.exists():
        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(0)
        X = rng.normal(size=(args.rows, 8))
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)])
        frame["y"] = X @ rng.normal(size=8) + rng.normal(size=args.rows) * 0.1
        frame.to_csv(csv, index=False)
    size = os.path.getsize(csv) / 1e6
    python = sys.executable
    baseline = _peak_mb([python, "-c", "import torch, pandas, pyarrow, pyarrow.csv, torchwork.cli"])
    out = folder / "run"
    train = _peak_mb([python, "-m", "torchwork", "train", str(csv), "--target", "y", "--epochs", "1",
                      "--model", "linear", "--out", str(out), "--overwrite", "-q"])  # fmt: skip
    print(f"file: {csv} ({size:.0f} MB, {args.rows} rows x 9 columns)")
    print(f"peak RSS, imports only: {baseline:.0f} MB")
    print(f"peak RSS, torchwork train: {train:.0f} MB = {train / size:.2f}x the file")
    data = train - baseline
    print(f"the data's part (train - imports only): {data:.0f} MB = {data / size:.2f}x the file")


if __name__ == "__main__":
    main()
