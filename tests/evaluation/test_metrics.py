"""Classification metrics and curves against scikit-learn's own functions and closed forms; regression
metrics near float64's limits."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from torchwork.core.errors import InputError
from torchwork.evaluation.metrics import classification_metrics, precision_recall_curve, regression_metrics, roc_curve

skm = pytest.importorskip("sklearn.metrics")

EPS = np.finfo(np.float64).eps


def _random(seed: int, n: int, n_classes: int, *, rounded: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    proba = rng.dirichlet(np.ones(n_classes), n)
    if rounded:  # ties in scores and in the argmax
        proba = np.round(proba, 1)
        proba[:, -1] = 1.0 - proba[:, :-1].sum(axis=1)
        proba = np.clip(proba, 0.0, 1.0)
        proba /= proba.sum(axis=1, keepdims=True)
    return y, proba


def _sklearn(y: np.ndarray, proba: np.ndarray) -> dict:
    """The same metrics, each from scikit-learn's own function."""
    n_classes = proba.shape[1]
    labels = list(range(n_classes))
    pred = np.argmax(proba, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # y_pred holds a class y_true lacks, ... (the values are what we test)
        precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        return {
            "accuracy": skm.accuracy_score(y, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
            "f1_macro": skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0),
            "log_loss": skm.log_loss(y, proba, labels=labels),
            "confusion_matrix": skm.confusion_matrix(y, pred, labels=labels).tolist(),
            "per_class": [
                {"precision": precision[k], "recall": recall[k], "f1": f1[k], "support": support[k]}
                for k in range(n_classes)
            ],
            "roc_auc_per_class": skm.roc_auc_score(y, proba, multi_class="ovr", average=None, labels=labels)
            if n_classes > 2 and len(np.unique(y)) > 1
            else None,
        }


def _assert_matches_sklearn(m: dict, y: np.ndarray, proba: np.ndarray) -> None:
    ref = _sklearn(y, proba)
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "log_loss"):
        assert m[key] == pytest.approx(ref[key], rel=1e-12, abs=1e-15), key
    assert m["confusion_matrix"] == ref["confusion_matrix"]
    assert len(m["per_class"]) == proba.shape[1]
    for ours, theirs in zip(m["per_class"], ref["per_class"], strict=True):
        assert ours["support"] == theirs["support"]
        for key in ("precision", "recall", "f1"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-12, abs=1e-15), key


def _assert_plain(m: dict) -> None:
    """JSON-ready: plain floats and ints, no NumPy scalars."""
    json.dumps(m)
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "log_loss"):
        assert type(m[key]) is float
    assert m["roc_auc"] is None or type(m["roc_auc"]) is float
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)
    for row in m["per_class"]:
        assert set(row) == {"precision", "recall", "f1", "support"}
        assert type(row["support"]) is int and all(type(row[k]) is float for k in ("precision", "recall", "f1"))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rounded", [False, True])
def test_binary_matches_sklearn(seed, rounded):
    y, proba = _random(seed, 80 + seed, 2, rounded=rounded)
    m = classification_metrics(y, proba)
    _assert_matches_sklearn(m, y, proba)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]), rel=1e-12)
    _assert_plain(m)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_classes", [3, 5])
@pytest.mark.parametrize("rounded", [False, True])
def test_multiclass_matches_sklearn(seed, n_classes, rounded):
    y, proba = _random(100 + seed, 120, n_classes, rounded=rounded)
    assert len(np.unique(y)) == n_classes
    m = classification_metrics(y, proba)
    _assert_matches_sklearn(m, y, proba)
    auc = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=list(range(n_classes)))
    assert m["roc_auc"] == pytest.approx(auc, rel=1e-12)
    _assert_plain(m)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_perfect_predictions(n_classes):
    y = np.arange(40) % n_classes
    proba = np.eye(n_classes)[y]  # probabilities of exactly 0 and 1
    m = classification_metrics(y, proba)
    _assert_matches_sklearn(m, y, proba)
    assert m["accuracy"] == m["balanced_accuracy"] == m["f1_macro"] == m["roc_auc"] == 1.0
    assert m["log_loss"] == pytest.approx(-np.log1p(-EPS), rel=1e-12)  # 1 clipped to 1 - eps
    assert m["confusion_matrix"] == np.diag(np.bincount(y)).tolist()


def test_log_loss_of_zero_and_one_probabilities():
    """A confident wrong row costs -log(eps) (0 clipped to eps), a confident right one -log(1 - eps)."""
    y = np.array([0, 1, 1, 2])
    proba = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.3, 0.7, 0.0], [0.0, 0.0, 1.0]])
    m = classification_metrics(y, proba)
    _assert_matches_sklearn(m, y, proba)
    expected = (-np.log(EPS) - np.log1p(-EPS) - np.log(0.7) - np.log1p(-EPS)) / 4
    assert m["log_loss"] == pytest.approx(expected, rel=1e-12)


def test_a_class_never_predicted():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), 60)
    proba[:, 2] *= 0.1  # class 2 is never the argmax
    proba /= proba.sum(axis=1, keepdims=True)
    assert not np.any(np.argmax(proba, axis=1) == 2)
    m = classification_metrics(y, proba)
    _assert_matches_sklearn(m, y, proba)
    assert m["per_class"][2]["precision"] == 0.0 and m["per_class"][2]["f1"] == 0.0
    assert m["per_class"][2]["recall"] == 0.0 and m["per_class"][2]["support"] == int(np.sum(y == 2))


def test_a_class_absent_from_y_true():
    """Macro F1 counts the absent class as 0; balanced accuracy and ROC AUC average the classes present."""
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 90)  # class 3 of 4 never occurs
    proba = rng.dirichlet(np.ones(4), 90)
    m = classification_metrics(y, proba)
    _assert_matches_sklearn(m, y, proba)
    assert m["per_class"][3]["support"] == 0
    per_class_auc = _sklearn(y, proba)["roc_auc_per_class"]
    assert np.isnan(per_class_auc[3])  # undefined for the absent class
    assert m["roc_auc"] == pytest.approx(np.nanmean(per_class_auc), rel=1e-12)
    recalls = [np.mean(np.argmax(proba[y == k], axis=1) == k) for k in range(3)]
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recalls), rel=1e-12)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_roc_auc_undefined_for_one_class(n_classes):
    y = np.ones(10, dtype=int)
    proba = np.random.default_rng(0).dirichlet(np.ones(n_classes), 10)
    m = classification_metrics(y, proba)
    assert m["roc_auc"] is None
    _assert_matches_sklearn(m, y, proba)
    _assert_plain(m)


def test_roc_auc_with_ties_is_the_mann_whitney_statistic():
    """AUC = P(score+ > score-) + P(score+ == score-) / 2 over all pairs, ties included."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 70)
    p1 = rng.integers(0, 5, 70) / 4  # five distinct scores, many ties (0 and 1 included)
    proba = np.stack([1 - p1, p1], axis=1)
    pos, neg = p1[y == 1], p1[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    m = classification_metrics(y, proba)
    assert m["roc_auc"] == pytest.approx(pairs, rel=1e-12)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1), rel=1e-12)
    _assert_matches_sklearn(m, y, proba)


def test_argmax_ties_go_to_the_lowest_code():
    y = np.array([1, 2, 0])
    proba = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.25, 0.5, 0.25]])
    assert classification_metrics(y, proba)["confusion_matrix"] == [[0, 1, 0], [1, 0, 0], [0, 1, 0]]


def test_accepts_tensors_and_float_codes():
    y, proba = _random(5, 30, 3)
    ref = classification_metrics(y, proba)
    assert classification_metrics(torch.tensor(y), torch.tensor(proba)) == ref
    assert classification_metrics(y.astype(float), proba) == ref
    assert classification_metrics(y.reshape(-1, 1), proba) == ref


@pytest.mark.parametrize(
    "y, proba, words",
    [
        ([0, 1], [[0.5, 0.4], [0.5, 0.5]], "sum to 1"),
        ([0, 1], [[1.2, -0.2], [0.5, 0.5]], "[0, 1]"),
        ([0, 2], [[0.5, 0.5], [0.5, 0.5]], "0..1"),
        ([0, 0.5], [[0.5, 0.5], [0.5, 0.5]], "integer"),
        ([0, 1, 1], [[0.5, 0.5], [0.5, 0.5]], "rows"),
        ([0], [[1.0]], "C >= 2"),
        ([], np.zeros((0, 2)), "no rows"),
        ([0, 1], [[np.nan, 0.5], [0.5, 0.5]], "NaN"),
    ],
)
def test_bad_input_is_refused(y, proba, words):
    with pytest.raises(InputError) as info:
        classification_metrics(np.asarray(y), np.asarray(proba, dtype=np.float64))
    assert words in str(info.value)


def _curve_cases():
    rng = np.random.default_rng(21)
    for n in (1, 2, 3, 10, 57):
        yield rng.integers(0, 2, n), rng.normal(size=n)  # distinct scores
        yield rng.integers(0, 2, n), rng.integers(0, 4, n).astype(float)  # ties
    yield np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])  # scikit-learn's example
    yield np.zeros(6, dtype=int), rng.normal(size=6)  # no positives
    yield np.ones(6, dtype=int), rng.normal(size=6)  # no negatives


@pytest.mark.parametrize("case", list(_curve_cases()))
@pytest.mark.parametrize("drop", [True, False])
def test_curves_match_sklearn(case, drop):
    y, score = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns when a class is missing
        roc_ref = skm.roc_curve(y, score, drop_intermediate=drop)
        pr_ref = skm.precision_recall_curve(y, score, drop_intermediate=drop)
    for ours, theirs in zip(roc_curve(y, score, drop_intermediate=drop), roc_ref, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for ours, theirs in zip(precision_recall_curve(y, score, drop_intermediate=drop), pr_ref, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_curve_defaults_are_sklearns():
    y, score = np.array([0, 1, 1, 0, 1, 0, 1]), np.array([0.1, 0.2, 0.2, 0.3, 0.5, 0.5, 0.9])
    for ours, theirs in zip(roc_curve(y, score), skm.roc_curve(y, score), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for ours, theirs in zip(precision_recall_curve(y, score), skm.precision_recall_curve(y, score), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_curves_refuse_bad_input():
    with pytest.raises(InputError, match="y_binary"):
        roc_curve([0, 2], [0.1, 0.2])
    with pytest.raises(InputError, match="score"):
        precision_recall_curve([0, 1], [0.1, np.inf])
    with pytest.raises(InputError, match="score"):
        roc_curve([0, 1, 1], [0.1, 0.2])


@pytest.mark.slow
def test_the_library_does_not_import_sklearn():
    code = (
        "import sys, torchwork.evaluation.metrics, torchwork.evaluation.baselines; sys.exit('sklearn' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_r2_of_a_constant_prediction_is_never_1_near_float64s_limits(scale):
    """Issue 18 item 14: targets of ~1e-300 have squares that become 0 in float64, and a constant
    prediction got RMSE 0 | R² 1 (at 1e300 the squares overflowed: R² NaN). R² does not change with
    the scale: it is the R² of the same numbers at scale 1."""
    a = np.random.default_rng(0).normal(size=200)
    y = scale * (2 + a)
    for constant in (0.0, 2.0, float(np.mean(2 + a))):
        got = regression_metrics(y, np.full(200, scale * constant))
        assert got["r2"] == pytest.approx(regression_metrics(2 + a, np.full(200, constant))["r2"], abs=1e-9)
        assert got["r2"] < 1e-9 and got["rmse"] > 0
        assert got["rmse"] == pytest.approx(scale * regression_metrics(2 + a, np.full(200, constant))["rmse"])
    assert regression_metrics(y, y)["r2"] == 1.0  # a perfect fit is still 1
