"""The gradient-boosted trees baseline (issue 17, item 6): scikit-learn's HistGradientBoosting on the
run's training rows, in metrics.json, the report and the verdict; skipped with a note without scikit-learn."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from tests.support import cli
from torchwork.runs.config import TrainConfig
from torchwork.runs.prepare import prepare
from torchwork.runs.recipe import fit_trees, tree_inputs

ensemble = pytest.importorskip("sklearn.ensemble")
sk_metrics = pytest.importorskip("sklearn.metrics")


def steps_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A target trees fit and a briefly trained network does not: steps in x, a jump per colour."""
    rng = np.random.default_rng(seed)
    x, z = rng.uniform(-3, 3, n), rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue", "grey"], n)
    y = np.floor(2 * x) * 3 + np.where(colour == "red", 8.0, 0.0) + np.where(colour == "blue", -5.0, 0.0)
    return pd.DataFrame({"x": x, "z": z, "colour": colour, "y": y + 0.1 * rng.normal(size=n)})


@pytest.mark.parametrize("encoding", ["codes", "onehot"])
def test_the_trees_see_one_code_column_per_category_whatever_the_encoding(tmp_path, encoding):
    frame = steps_table(200)
    frame.to_csv(tmp_path / "s.csv", index=False)
    config = TrainConfig().updated({"target": ["y"]}, source="test")
    prepared = prepare(config, str(tmp_path / "s.csv"), encoding=encoding)
    A, mask = tree_inputs(prepared.pre, prepared.X)
    assert mask == [False, False, True]
    # the colour's code is the same for the same colour, and distinct colours get distinct codes (the oracle:
    # the table itself)
    colours = frame["colour"].to_numpy()[prepared.rows]
    pairs = set(zip(colours, A[:, 2], strict=True))
    assert len(pairs) == 4 and len({c for _, c in pairs}) == 4
    x = frame["x"].to_numpy()[prepared.rows]
    assert (np.argsort(A[:, 0], kind="stable") == np.argsort(x, kind="stable")).all()  # numbers keep their order


def test_the_trees_are_scikit_learns_on_the_training_rows(tmp_path):
    """Their metrics equal those of a HistGradientBoostingRegressor fitted here on the raw columns of the
    same training rows (trees are the same under the standardization: it keeps the values' order)."""
    frame = steps_table()
    frame.to_csv(tmp_path / "s.csv", index=False)
    out = tmp_path / "run"
    result = cli("train", str(tmp_path / "s.csv"), "--target", "y", "--epochs", "1", "--hidden", "4", "-q",
                 "--test", "0.15", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    config = TrainConfig().updated(json.loads((out / "config.json").read_text()), source="config.json")
    prepared = prepare(config, str(tmp_path / "s.csv"))
    rows = {p: prepared.rows[prepared.parts[p]] for p in ("train", "val", "test")}
    X = frame[["x", "z"]].assign(colour=frame["colour"].astype("category").cat.codes).to_numpy(float)
    y = frame["y"].to_numpy()
    theirs = ensemble.HistGradientBoostingRegressor(categorical_features=[False, False, True], random_state=0)
    theirs.fit(X[rows["train"]], y[rows["train"]])
    for part, r in rows.items():
        expected = sk_metrics.r2_score(y[r], theirs.predict(X[r]))
        assert metrics["gradient_boosted_trees"][part]["r2"] == pytest.approx(expected, abs=1e-6), part
    info = json.loads((out / "run.json").read_text())
    assert info["gradient_boosted_trees"]["iterations"] == [theirs.n_iter_]
    # one epoch of a 4-unit network against the trees: they win, and the verdict and the report say so
    assert metrics["gradient_boosted_trees"]["test"]["mse"] < 0.5 * metrics["model"]["test"]["mse"]
    assert "Gradient-boosted trees do better on this table (test split): MSE" in result.stdout
    page = (out / "report.html").read_text()
    assert "Gradient-boosted trees do better on this table" in page
    assert "<td class=l>gradient-boosted trees</td>" in page


def test_classification_trees_give_every_class_a_probability(tmp_path):
    frame = steps_table(400)
    frame["y"] = np.where(frame["y"] > frame["y"].median(), "high", "low")
    frame.loc[:2, "y"] = "rare"  # 3 rows: maybe none in training
    frame.to_csv(tmp_path / "c.csv", index=False)
    config = TrainConfig().updated({"target": ["y"]}, source="test")
    prepared = prepare(config, str(tmp_path / "c.csv"))
    trees = fit_trees(config, prepared)
    proba = trees.predictions(prepared.pre, prepared.X)
    assert proba.shape == (len(prepared.X), 3) and np.allclose(proba.sum(axis=1), 1.0)
    train = prepared.truth[prepared.parts["train"]]
    absent = [k for k in range(3) if k not in set(train.tolist())]
    assert all((proba[:, k] == 0).all() for k in absent)


def test_without_scikit_learn_the_trees_are_skipped_with_a_note(tmp_path, monkeypatch):
    frame = steps_table(200)
    frame.to_csv(tmp_path / "s.csv", index=False)
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    out = tmp_path / "run"
    result = cli("train", str(tmp_path / "s.csv"), "--target", "y", "--epochs", "2", "-q", "--out", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "run.json").read_text())
    assert "gradient_boosted_trees" not in metrics
    note = "the gradient-boosted trees baseline was skipped: scikit-learn is not installed"
    assert any(n.startswith(note) and "pip install 'torchwork[sklearn]'" in n for n in info["notes"]), info["notes"]
    assert note in (out / "report.html").read_text().replace("<wbr>", "")
