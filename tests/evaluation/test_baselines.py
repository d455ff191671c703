"""Baselines against closed forms, ``numpy.linalg.lstsq`` and scikit-learn's LogisticRegression."""

from __future__ import annotations

import json

import numpy as np
import pytest

from torchwork.core.errors import InputError
from torchwork.evaluation.baselines import (
    RIDGE_FRACTIONS,
    LeastSquares,
    LogisticRegression,
    MajorityClass,
    ridge_on_validation,
)
from torchwork.evaluation.metrics import classification_metrics


def _roundtrip(doc: dict) -> dict:
    """Through JSON text, as a run folder stores it."""
    return json.loads(json.dumps(doc, allow_nan=False))


# --- least squares ------------------------------------------------------------------------------


def _regression(seed: int, n: int = 53, d: int = 4, k: int = 2, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + offset
    y = X @ rng.normal(size=(d, k)) + rng.normal(size=k) + 0.1 * rng.normal(size=(n, k))
    return X, y


def _lstsq(X, y):
    coef, *_ = np.linalg.lstsq(np.hstack([X, np.ones((len(X), 1))]), y.reshape(len(y), -1), rcond=None)
    return coef[:-1], coef[-1]


@pytest.mark.parametrize("chunk", [1, 7, None])
@pytest.mark.parametrize("k", [1, 2])
def test_least_squares_streaming_equals_lstsq(chunk, k):
    X, y = _regression(0, k=k)
    if k == 1:
        y = y[:, 0]  # a 1-D target, as fit takes it
    step = chunk or len(X)
    ls = LeastSquares()
    for start in range(0, len(X), step):
        ls.partial_fit(X[start : start + step], y[start : start + step])
    ls.finish()
    coef, intercept = _lstsq(X, y)
    np.testing.assert_allclose(ls.coef_, coef, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ls.intercept_, intercept, rtol=0, atol=1e-8)
    one_shot = LeastSquares().fit(X, y)
    assert ls.coef_.shape == one_shot.coef_.shape and ls.intercept_.shape == one_shot.intercept_.shape
    np.testing.assert_allclose(ls.predict(X), one_shot.predict(X), rtol=0, atol=1e-8)
    assert ls.n_rows_ == len(X)


def test_least_squares_streaming_with_columns_far_from_zero():
    """Shifting by the first chunk's means keeps the normal equations well conditioned."""
    X, y = _regression(1, n=200, offset=1e4)
    ls = LeastSquares()
    for start in range(0, len(X), 13):
        ls.partial_fit(X[start : start + 13], y[start : start + 13])
    ls.finish()
    coef, intercept = _lstsq(X, y)
    np.testing.assert_allclose(ls.coef_, coef, rtol=0, atol=1e-8)
    # The intercept is mean(y) - coef . mean(X) with |mean(X)| near 1e4, so the coefficients' rounding
    # error (float64, sums of 200 rows in another order on another CPU) reaches it multiplied by 1e4:
    # 1e-8 relative allows that, and still fails when the shift is dropped (errors of whole percents).
    np.testing.assert_allclose(ls.intercept_, intercept, rtol=1e-8)


def test_least_squares_finish_can_follow_more_chunks():
    X, y = _regression(2)
    ls = LeastSquares().partial_fit(X[:20], y[:20]).finish()
    np.testing.assert_allclose(ls.coef_, _lstsq(X[:20], y[:20])[0], atol=1e-8)
    ls.partial_fit(X[20:], y[20:]).finish()
    np.testing.assert_allclose(ls.coef_, _lstsq(X, y)[0], atol=1e-8)


def test_least_squares_json_roundtrip_and_the_run_folder_format():
    X, y = _regression(3)
    ls = LeastSquares().fit(X, y)
    doc = _roundtrip(ls.to_json())
    assert set(doc) == {"coef", "intercept"}  # what runs.recipe writes as "baseline"
    np.testing.assert_array_equal(LeastSquares.from_json(doc).predict(X), ls.predict(X))


def test_least_squares_streaming_refuses_bad_chunks():
    with pytest.raises(InputError, match="no rows"):
        LeastSquares().finish()
    ls = LeastSquares().partial_fit(np.ones((3, 2)), np.ones(3))
    with pytest.raises(InputError, match="feature"):
        ls.partial_fit(np.ones((3, 3)), np.ones(3))
    with pytest.raises(InputError, match="rows"):
        ls.partial_fit(np.ones((3, 2)), np.ones(4))


# --- majority class ------------------------------------------------------------------------------


def test_majority_class_closed_form():
    y = np.array([2, 0, 2, 1, 2, 0, 3, 2])
    model = MajorityClass().fit(y, n_classes=5)
    freq = np.array([2, 1, 4, 1, 0]) / 8
    np.testing.assert_array_equal(model.frequencies_, freq)
    proba = model.predict_proba(np.zeros((len(y), 3)))
    np.testing.assert_array_equal(proba, np.tile(freq, (len(y), 1)))
    np.testing.assert_array_equal(model.predict(np.zeros((4, 3))), [2, 2, 2, 2])
    # on its training rows the log loss is the entropy of the frequencies
    present = freq[freq > 0]
    assert classification_metrics(y, proba)["log_loss"] == pytest.approx(-(present * np.log(present)).sum(), 1e-12)
    restored = MajorityClass.from_json(_roundtrip(model.to_json()))
    np.testing.assert_array_equal(restored.predict_proba(np.zeros((2, 1))), model.predict_proba(np.zeros((2, 1))))


def test_majority_class_ties_go_to_the_lowest_code():
    model = MajorityClass().fit([2, 1, 1, 2, 0], n_classes=3)
    assert model.class_ == 1
    assert np.argmax(model.predict_proba([[0.0]])[0]) == 1


def test_majority_class_refuses_bad_codes():
    with pytest.raises(InputError):
        MajorityClass().fit([0, 3], n_classes=3)
    with pytest.raises(InputError, match="no rows"):
        MajorityClass().fit([], n_classes=2)


# --- logistic regression ---------------------------------------------------------------------------


def _dataset(name: str):
    datasets = pytest.importorskip("sklearn.datasets")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return preprocessing.StandardScaler().fit_transform(X), y


def _sklearn_fit(X, y, C=1.0):
    linear_model = pytest.importorskip("sklearn.linear_model")
    return linear_model.LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X, y)


def _objective(model, X, y, C):
    """scikit-learn's objective, written out: C * sum(log loss) + ½‖W‖²."""
    p = model.predict_proba(X)[np.arange(len(y)), y]
    return C * -np.log(p).sum() + 0.5 * np.sum(model.coef_**2)


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer"])
@pytest.mark.parametrize("C", [1.0, 0.05])
def test_logistic_regression_matches_sklearn(name, C):
    X, y = _dataset(name)
    n_classes = len(np.unique(y))
    ours = LogisticRegression(C=C).fit(X, y, n_classes)
    theirs = _sklearn_fit(X, y, C)
    assert ours.converged_
    assert ours.coef_.shape == theirs.coef_.shape == ((1, X.shape[1]) if n_classes == 2 else (n_classes, X.shape[1]))
    assert ours.intercept_.shape == theirs.intercept_.shape
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=0, atol=1e-3)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=0, atol=1e-3)
    assert np.mean(ours.predict(X) == y) == theirs.score(X, y)
    # the same objective, minimized at least as well
    assert _objective(ours, X, y, C) <= _objective(theirs, X, y, C) + 1e-9


def test_logistic_regression_is_deterministic_and_saves_as_json():
    X, y = _dataset("wine")
    a = LogisticRegression().fit(X, y, 3)
    b = LogisticRegression().fit(X, y, 3)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    restored = LogisticRegression.from_json(_roundtrip(a.to_json()))
    np.testing.assert_array_equal(restored.predict_proba(X), a.predict_proba(X))
    assert restored.C == a.C and restored.n_classes_ == 3


def test_logistic_regression_takes_few_iterations_on_thousands_of_rows():
    """Its cost is measured in iterations (speed itself belongs to benchmarks/): full-batch L-BFGS
    on a well-posed problem converges in tens of them, not the thousands gradient descent takes."""
    rng = np.random.default_rng(0)
    n, d, k = 4000, 20, 3
    X = rng.normal(size=(n, d))
    y = np.argmax(X @ rng.normal(size=(d, k)) + rng.gumbel(size=(n, k)), axis=1)
    model = LogisticRegression().fit(X, y, k)
    assert model.converged_
    assert model.n_iter_ <= 100, model.n_iter_


def test_logistic_regression_with_a_class_missing_from_training():
    """Fitted on the classes present, as scikit-learn would be; the missing class gets probability 0."""
    X, y = _dataset("iris")
    keep = y != 1  # classes 0 and 2: a binary model
    ours = LogisticRegression().fit(X[keep], y[keep], 3)
    theirs = _sklearn_fit(X[keep], y[keep])
    np.testing.assert_array_equal(ours.classes_, [0, 2])
    proba = ours.predict_proba(X)
    assert proba.shape == (len(X), 3)
    assert np.all(proba[:, 1] == 0.0)
    np.testing.assert_allclose(proba[:, [0, 2]], theirs.predict_proba(X), atol=1e-4)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-3)
    restored = LogisticRegression.from_json(_roundtrip(ours.to_json()))
    np.testing.assert_array_equal(restored.predict_proba(X), proba)


def test_logistic_regression_refuses_bad_input_and_warns_when_it_runs_out_of_iterations():
    X, y = _dataset("iris")
    with pytest.raises(InputError, match="2 classes"):
        LogisticRegression().fit(X[:10], y[:10], 3)
    with pytest.raises(InputError, match="rows"):
        LogisticRegression().fit(X, y[:-1], 3)
    with pytest.raises(InputError, match="C="):
        LogisticRegression(C=0)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        model = LogisticRegression(max_iter=2).fit(X, y, 3)
    assert not model.converged_


def test_ridge_on_validation_is_scikit_learns_ridge_at_the_penalty_that_predicts_validation_best():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(150, 40)) + 3.0  # columns away from zero: the intercept is not penalized
    w = np.zeros((40, 2))
    w[:4] = rng.normal(size=(4, 2))
    y = X @ w + 3 * rng.normal(size=(150, 2))
    Xtr, ytr, Xv, yv = X[:100], y[:100], X[100:], y[100:]
    ridge = ridge_on_validation(Xtr, ytr, Xv, yv)
    assert ridge is not None
    theirs = {}
    for f in RIDGE_FRACTIONS:  # scikit-learn's Ridge at every penalty tried, scored on the same rows
        model = linear_model.Ridge(alpha=f * len(Xtr)).fit(Xtr, ytr)
        theirs[f * len(Xtr)] = (float(np.mean((model.predict(Xv) - yv) ** 2)), model)
    alpha = min(theirs, key=lambda a: theirs[a][0])
    assert ridge.alpha_ == pytest.approx(alpha) and alpha > 0
    best = theirs[alpha][1]
    np.testing.assert_allclose(ridge.coef_, best.coef_.T, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ridge.intercept_, best.intercept_, rtol=1e-7, atol=1e-9)
    assert ridge.val_mse_ == pytest.approx(theirs[alpha][0], rel=1e-9)
    ols = LeastSquares().fit(Xtr, ytr)  # 40 columns, 100 rows, 4 that matter: the penalty helps
    assert ridge.val_mse_ < float(np.mean((ols.predict(Xv) - yv) ** 2))


def test_ridge_on_validation_needs_validation_rows():
    X = np.random.default_rng(0).normal(size=(20, 3))
    assert ridge_on_validation(X, X[:, :1], X[:0], X[:0, :1]) is None
