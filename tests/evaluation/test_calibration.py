"""Temperature scaling and the expected calibration error, against sums written out here and a
temperature the data was drawn with; then on a run: applied at predict, evaluate and export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from torchwork.evaluation.calibration import calibration_bins, expected_calibration_error, fit_temperature
from torchwork.evaluation.metrics import classification_metrics


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_ece_is_the_bins_gap_between_accuracy_and_confidence_weighted_by_their_rows():
    rng = np.random.default_rng(0)
    p = _softmax(rng.normal(size=(500, 4)) * 2)
    y = rng.integers(0, 4, size=500)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    expected = 0.0
    for b in range(15):  # written out: bins [b/15, (b+1)/15), the last one closed
        lo, hi = b / 15, (b + 1) / 15
        rows = (conf >= lo) & ((conf < hi) if b < 14 else (conf <= hi))
        if rows.any():
            expected += rows.mean() * abs((pred[rows] == y[rows]).mean() - conf[rows].mean())
    assert expected_calibration_error(calibration_bins(y, p)) == pytest.approx(expected, rel=1e-12)
    assert classification_metrics(y, p)["ece"] == pytest.approx(expected, rel=1e-12)


def test_ece_of_chunks_adds_up_to_the_whole():
    rng = np.random.default_rng(1)
    p = _softmax(rng.normal(size=(300, 3)))
    y = rng.integers(0, 3, size=300)
    whole = calibration_bins(y, p)
    parts = calibration_bins(y[:100], p[:100]) + calibration_bins(y[100:], p[100:])
    assert np.allclose(whole, parts)


def drawn(true_t: float, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from the probabilities that ``logits / true_t`` gives."""
    rng = np.random.default_rng(2)
    n = 20000
    logits = rng.normal(size=(n, classes)) * 3
    if classes == 1:
        p1 = 1 / (1 + np.exp(-logits[:, 0] / true_t))
        y = (rng.random(n) < p1).astype(np.int64)
    else:
        y = np.array([rng.choice(classes, p=row) for row in _softmax(logits / true_t)])
    return logits, y


@pytest.mark.parametrize("true_t", [1.5, 2.0, 4.0])
@pytest.mark.parametrize("classes", [1, 3])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(true_t, classes):
    assert fit_temperature(*drawn(true_t, classes)) == pytest.approx(true_t, rel=0.06)


@pytest.mark.parametrize("classes", [1, 3])
def test_under_confident_logits_are_not_sharpened(classes):
    """Labels drawn at T = 0.5 would want the logits doubled: calibration only softens (T >= 1)."""
    logits, y = drawn(0.5, classes)
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=1e-9)


def test_a_separated_validation_slice_does_not_sharpen_the_temperature():
    # Every row right with a wide margin: the log loss alone falls for ever as T shrinks.
    logits = np.array([[4.0, -4.0]] * 30 + [[-4.0, 4.0]] * 30)
    y = np.array([0] * 30 + [1] * 30)
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=1e-9)


def test_a_classifier_run_predicts_with_its_fitted_temperature_everywhere(tmp_path):
    import torch

    import torchwork
    from torchwork.runs.run import Deployable

    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 3))
    y = np.where(X[:, 0] + 1.5 * rng.normal(size=600) > 0, "yes", "no")
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": y})
    # noisy labels and 200 epochs without early stopping: an over-confident network to soften
    run = torchwork.train(frame, target="label", out=tmp_path / "run", epochs=200, early_stopping=0, verbose=False)
    calibration = run.info["calibration"]
    t = calibration["temperature"]
    assert t > 1.0 and calibration["val_log_loss"]["after"] <= calibration["val_log_loss"]["before"]
    assert (tmp_path / "run" / "plots" / "reliability.png").stat().st_size > 1000  # the report's reliability plot
    saved = json.loads((tmp_path / "run" / "model.json").read_text())
    assert saved["preprocessing"]["targets"]["temperature"] == t
    loaded = torchwork.load_run(tmp_path / "run")
    rows = frame.drop(columns="label").head(50)
    with torch.no_grad():
        logits = loaded.model.eval()(torch.from_numpy(loaded.pre.inputs(rows).X)).double().numpy()
    assert logits.shape[1] == 1  # two classes: one logit (bce), class 1's
    by_hand = 1 / (1 + np.exp(-logits[:, 0] / t))
    assert np.allclose(loaded.predict_proba(rows)[:, 1], by_hand, atol=1e-6)
    deployed = Deployable(loaded.model, loaded.pre).eval()
    with torch.no_grad():
        exported = deployed(torch.from_numpy(loaded.pre.raw_inputs(rows)))[:, 1].double().numpy()
    assert np.allclose(exported, by_hand, atol=1e-5)


def test_a_forged_temperature_outside_its_range_is_refused():
    from torchwork.data.preprocess import Preprocessor

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "label": ["x", "y", "x", "y"]})
    import torchwork

    run = torchwork.train(frame, target="label", epochs=2, val=0.5, verbose=False)
    doc = run.pre.to_json()
    doc["targets"]["temperature"] = 1e-9
    with pytest.raises(ValueError, match="temperature"):
        Preprocessor.from_json(doc)
