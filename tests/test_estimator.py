"""torchwork.Regressor against scikit-learn's own estimator checks, Pipeline and GridSearchCV."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from torchwork import Regressor


@parametrize_with_checks([Regressor(device="cpu")])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_pipeline_and_grid_search():
    X, y = load_diabetes(return_X_y=True)  # ships with scikit-learn: no download
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    pipe = make_pipeline(StandardScaler(), Regressor(model="linear", optimizer="adam", epochs=300, device="cpu"))
    # A rate of 1e-7 cannot move the weights in 300 epochs: the search must see that and pick 1e-2.
    search = GridSearchCV(pipe, {"regressor__lr": [1e-7, 1e-2]}, cv=3).fit(X_train, y_train)
    assert search.best_params_["regressor__lr"] == 1e-2
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] < 0 < scores[1]  # the frozen model is worse than predicting the mean
    ours = search.score(X_test, y_test)
    reference = LinearRegression().fit(X_train, y_train).score(X_test, y_test)
    assert ours == pytest.approx(reference, abs=0.03)  # a linear model reaches least squares


def test_fitted_attributes_end_in_underscore_and_params_round_trip():
    X, y = load_diabetes(return_X_y=True)
    est = Regressor(hidden=(8,), epochs=5, device="cpu")
    assert est.get_params()["hidden"] == (8,)
    est.set_params(epochs=3)
    est.fit(X, y)
    assert est.n_features_in_ == 10 and est.n_epochs_ == 3 and len(est.history_) == 3
    assert est.predict(X).shape == (len(X),)
    y2 = np.column_stack([y, -y])
    assert est.fit(X, y2).predict(X).shape == (len(X), 2)


def test_numpy_integers_from_grids_are_accepted():
    X, y = load_diabetes(return_X_y=True)
    est = Regressor(epochs=np.int64(2), hidden=tuple(np.array([8, 8])), batch_size=np.int32(64), device="cpu")
    assert est.fit(X, y).n_epochs_ == 2
