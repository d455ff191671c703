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

from torchwork.estimator import Regressor


@parametrize_with_checks([Regressor(device="cpu")])
@pytest.mark.slow
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_pipeline_and_grid_search():
    X, y = load_diabetes(return_X_y=True)  # ships with scikit-learn: no download
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    # warm_start=False: the linear model starts at random weights, not already at least squares.
    pipe = make_pipeline(StandardScaler(), Regressor(model="linear", optimizer="adam", epochs=300, warm_start=False,
                                                     device="cpu"))  # fmt: skip
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


# ------------------------------------------------------------------ Classifier
from sklearn.datasets import load_breast_cancer, load_iris  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402

from torchwork.estimator import Classifier  # noqa: E402


@parametrize_with_checks([Classifier(device="cpu", epochs=50)])
@pytest.mark.slow
def test_scikit_learn_classifier_checks(estimator, check):
    check(estimator)


def test_classifier_labels_probabilities_and_accuracy():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = Classifier(device="cpu").fit(X, names)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (clf.predict(X) == clf.classes_[proba.argmax(1)]).all()
    assert clf.score(X, names) == pytest.approx(np.mean(clf.predict(X) == names)) and clf.score(X, names) > 0.95


@pytest.mark.slow
def test_classifier_in_cross_val_score_with_roc_auc():
    X, y = load_breast_cancer(return_X_y=True)
    scores = cross_val_score(make_pipeline(StandardScaler(), Classifier(device="cpu", epochs=100)), X, y, cv=3,
                             scoring="roc_auc")  # fmt: skip
    assert scores.min() > 0.95


@pytest.mark.slow
def test_dataframes_with_text_categories_and_missing_values():
    palmerpenguins = pytest.importorskip("palmerpenguins")
    df = palmerpenguins.load_penguins().dropna(subset=["species", "body_mass_g"])
    X = df.drop(columns=["species"])  # text columns (island, sex) and gaps, as they are
    clf = Classifier(device="cpu").fit(X, df["species"])
    assert clf.feature_names_in_.tolist() == list(X.columns)
    assert clf.score(X, df["species"]) > 0.95
    reg = Regressor(device="cpu").fit(df.drop(columns=["body_mass_g"]), df["body_mass_g"])
    assert reg.predict(df.drop(columns=["body_mass_g"]).iloc[:3]).shape == (3,)
