"""Fit AutoGluon-Tabular on one split and predict; run by ``benchmarks/quality.py`` in AutoGluon's own venv.

    /work/venvs/autogluon/bin/python benchmarks/quality_peers/autogluon_fit.py FOLDER

AutoGluon needs pandas < 3, so it cannot share the peers' venv. ``FOLDER`` holds what quality.py wrote:

- ``train.parquet``: the training rows, target column included, exactly as the other tools get them;
- ``test.parquet``: the test rows' features;
- ``job.json``: ``{"target", "classification", "presets", "time_limit", "eval_metric"}`` (AutoGluon
  seeds its models itself: the same default seed on every split).

This script writes ``FOLDER/prediction.npy`` (regression: values; classification: probabilities, one column per
class) and ``FOLDER/result.json`` (the class order, the problem type AutoGluon inferred, its best model, the
fit and predict seconds, the version). Models go to ``FOLDER/models`` and are deleted with the folder.
One CPU: ``num_cpus=1``; the caller also sets ``OMP_NUM_THREADS=1`` and friends.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(folder: Path) -> None:
    from autogluon.tabular import TabularPredictor
    from autogluon.tabular import __version__ as version

    job = json.loads((folder / "job.json").read_text())
    train = pd.read_parquet(folder / "train.parquet")
    test = pd.read_parquet(folder / "test.parquet")

    start = time.perf_counter()
    predictor = TabularPredictor(
        label=job["target"], eval_metric=job.get("eval_metric"), path=str(folder / "models"), verbosity=0
    )
    predictor.fit(train, presets=job["presets"], time_limit=job["time_limit"], num_cpus=1, num_gpus=0)
    fitted = time.perf_counter()
    classes: list | None = None
    if job["classification"]:
        proba = predictor.predict_proba(test, as_multiclass=True)
        classes = [c.item() if isinstance(c, np.generic) else c for c in proba.columns]
        values = proba.to_numpy(dtype=np.float64)
    else:
        values = predictor.predict(test).to_numpy(dtype=np.float64)
    predicted = time.perf_counter()

    np.save(folder / "prediction.npy", values)
    result = {
        "classes": classes,
        "problem_type": predictor.problem_type,
        "best_model": predictor.model_best,
        "fit_seconds": fitted - start,
        "predict_seconds": predicted - fitted,
        "version": version,
    }
    (folder / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
