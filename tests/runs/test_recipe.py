"""The closed-form start a model begins from (least squares, or ridge chosen on validation), and the
line a run gets when it keeps it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import torchwork
from tests.support import cli


def test_the_linear_model_on_a_wide_noisy_table_starts_from_ridge_and_does_as_well_as_ridgecv(tmp_path):
    """Issue 17 item 5: 60 columns, 5 that matter, 200 rows: least squares overfits; the linear
    model starts from the ridge penalty the validation rows chose, and predicts new rows as well as
    scikit-learn's RidgeCV fitted on the same 200 rows."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(6)
    w = np.zeros(60)
    w[:5] = [2.0, -1.5, 1.0, 0.8, -0.5]

    def table(n: int) -> pd.DataFrame:
        X = rng.normal(size=(n, 60))
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(60)])
        frame["y"] = X @ w + 2.0 * rng.normal(size=n)
        return frame

    train, new = table(200), table(4000)
    run = torchwork.train(train, target="y", model="linear", seed=0, verbose=False)
    assert any("the ridge line, alpha" in n for n in run.info["notes"]) or "ridge" in str(run.info["kept_start"])

    def rmse(pred: np.ndarray) -> float:
        return float(np.sqrt(np.mean((pred - new["y"].to_numpy()) ** 2)))

    X, y = train.drop(columns="y").to_numpy(), train["y"].to_numpy()
    ours = rmse(run.predict(new))
    ridgecv = rmse(
        linear_model.RidgeCV(alphas=np.logspace(-3, 3, 25)).fit(X, y).predict(new.drop(columns="y").to_numpy())
    )
    ols = rmse(linear_model.LinearRegression().fit(X, y).predict(new.drop(columns="y").to_numpy()))
    assert ours < ols, (ours, ols, ridgecv)
    assert ours <= 1.02 * ridgecv, (ours, ols, ridgecv)
    # the command line names the start it kept
    train.to_csv(tmp_path / "wide.csv", index=False)
    result = cli("train", str(tmp_path / "wide.csv"), "--target", "y", "--model", "linear", "--seed", "0", "-q",
                 "--out", str(tmp_path / "r"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the model kept is the one it started from (the ridge line, alpha " in result.stdout, result.stdout


def test_the_logistic_start_takes_the_penalty_the_validation_rows_prefer():
    """80 noisy columns, 2 that matter, 200 rows: the start is the logistic regression whose C gives
    the lowest validation log loss (worked out here for every C tried); the baseline keeps C = 1."""
    from torchwork.evaluation.baselines import LogisticRegression
    from torchwork.runs.config import TrainConfig
    from torchwork.runs.prepare import prepare
    from torchwork.runs.recipe import LOGISTIC_CS, Baselines

    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 80))
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(80)])
    frame["label"] = np.where(X[:, 0] - X[:, 1] + rng.normal(size=200) > 0, "yes", "no")
    prepared = prepare(TrainConfig().updated({"target": ["label"]}, source="test"), frame)
    baselines = Baselines.fit(prepared)
    s, v = prepared.parts["train"], prepared.parts["val"]
    design, val_design, truth = prepared.X[s], prepared.X[v], prepared.truth[v]

    def val_log_loss(C: float) -> float:
        model = LogisticRegression(C=C).fit(design, prepared.y[s], 2)
        return float(-np.mean(np.log(model.predict_proba(val_design)[np.arange(len(truth)), truth])))

    losses = {C: val_log_loss(C) for C in (1.0, *LOGISTIC_CS)}
    best_c = min(losses, key=lambda C: losses[C])
    assert best_c < 1.0  # so many useless columns: a stronger penalty predicts new rows better
    chosen = baselines.start
    assert chosen is not None and best_c == chosen.C
    assert baselines.fitted["logistic_regression"].C == 1.0
    assert baselines.start_name() == f"the logistic regression with C {best_c:g}, chosen on the validation rows"
