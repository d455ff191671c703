"""Small tables, wall time: ``torchwork train`` (read, train, evaluate, report) against LightGBM.

    .venv/bin/python benchmarks/small_time.py [--rounds 3]

Issue 17 item 8's bar: a table of at most 10,000 rows trains, evaluates and writes its report in
at most twice LightGBM's wall time plus the torch import. Each is timed as a user meets it, a
fresh interpreter from start to exit, on the same CSV file:

- ``torchwork train FILE --target T --out DIR -q`` (torchwork's defaults: the MLP, the baselines,
  the gradient-boosted trees when scikit-learn is there, plots and report.html);
- ``python -c`` reading the CSV with pandas, fitting ``lightgbm.LGBMRegressor``/``Classifier`` at
  its defaults (one thread, text columns as pandas categories) and predicting every row;
- ``python -c "import torch"``: the import that every torch program pays.

The fastest of ``--rounds`` runs of each is kept. LightGBM is a benchmark extra; without it the
script says so and stops.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TABLES = {  # name: (loader, target)
    "diabetes": ("from sklearn.datasets import load_diabetes; f = load_diabetes(as_frame=True).frame", "target"),
    "penguins": ("import palmerpenguins; f = palmerpenguins.load_penguins()", "species"),
    "breast_cancer": (
        "from sklearn.datasets import load_breast_cancer; f = load_breast_cancer(as_frame=True).frame",
        "target",
    ),
}

LIGHTGBM = """
import sys
import lightgbm as lgb
import pandas as pd
frame = pd.read_csv(sys.argv[1])
target = sys.argv[2]
frame = frame[frame[target].notna()]
X, y = frame.drop(columns=target), frame[target]
for c in X.columns:
    if not pd.api.types.is_numeric_dtype(X[c]):
        X[c] = X[c].astype("category")
classes = not pd.api.types.is_numeric_dtype(y) or y.nunique() <= 10
model = (lgb.LGBMClassifier if classes else lgb.LGBMRegressor)(n_jobs=1, verbose=-1)
model.fit(X, y)
model.predict(X)
"""


def wall(command: list[str], cwd: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])}: exit {result.returncode}\n{result.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/small_time.py", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, the fastest kept [default: 3]")
    args = parser.parse_args()
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        print("LightGBM is not installed: pip install lightgbm (a benchmark extra)", file=sys.stderr)
        return 2
    python = sys.executable
    torchwork = [python, "-m", "torchwork"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        torch_import = min(wall([python, "-c", "import torch"], tmp) for _ in range(args.rounds))
        for name, (load, target) in TABLES.items():
            path = Path(tmp) / f"{name}.csv"
            subprocess.run([python, "-c", f"{load}; f.to_csv({str(path)!r}, index=False)"], check=True)
            ours, theirs = [], []
            for k in range(args.rounds):
                out = Path(tmp) / f"{name}-run-{k}"
                ours.append(wall([*torchwork, "train", str(path), "--target", target, "--out", str(out), "-q"], tmp))
                theirs.append(wall([python, "-c", LIGHTGBM, str(path), target], tmp))
            rows.append((name, min(ours), min(theirs)))
    cores = len(os.sched_getaffinity(0))
    print(f"{platform.processor() or platform.machine()}, {cores} cores; fastest of {args.rounds} runs each; "
          f"import torch: {torch_import:.2f} s\n")  # fmt: skip
    print("| table | torchwork train (s) | LightGBM fit + predict (s) | bar: 2 x LightGBM + import torch (s) | met |")
    print("|---|---:|---:|---:|---|")
    for name, ours, theirs in rows:
        bar = 2 * theirs + torch_import
        print(f"| {name} | {ours:.2f} | {theirs:.2f} | {bar:.2f} | {'yes' if ours <= bar else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
