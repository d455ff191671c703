"""Real tables (text, categories, missing values) and classification, against scikit-learn on the same rows.

The datasets ship with packages (palmerpenguins, scikit-learn): nothing is downloaded. The
split compared is the run's own (from :func:`torchwork.runs.recipe.prepare`, which the run
used); scikit-learn's models and metric functions are the references.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import torchwork
from tests.support import assert_one_line_error, cli
from torchwork.runs.config import TrainConfig
from torchwork.runs.prepare import prepare

pytest.importorskip("sklearn")
palmerpenguins = pytest.importorskip("palmerpenguins")

from sklearn import metrics as skm  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("penguins") / "penguins.csv"
    palmerpenguins.load_penguins().to_csv(path, index=False)  # the raw table: text, gaps and all
    return path


HELD_OUT = "0.15"  # a test split asked for (the default has none): the tests score it against scikit-learn's


def split_rows(csv, target, **options):
    """The rows of each part, as the run split them (same configuration, same seed, the test split asked for)."""
    config = {"data": str(csv), "target": target, "test": float(HELD_OUT), **options}
    prepared = prepare(TrainConfig().updated(config).validate())
    return {part: prepared.rows[prepared.parts[part]] for part in ("train", "val", "test")}


def sklearn_table_model(estimator, numeric, categorical):
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                              OneHotEncoder(handle_unknown="ignore")), categorical),
    ])  # fmt: skip
    return make_pipeline(prep, estimator)


def test_penguins_regression_from_the_raw_csv(penguins_csv, tmp_path):
    result = cli(
        "train", str(penguins_csv), "--target", "body_mass_g", "--test", HELD_OUT, "--out", str(tmp_path / "run")
    )
    assert result.returncode == 0, result.stderr
    assert "columns: species categorical (text), island categorical (text)" in result.stderr
    assert "dropped 2 rows with a missing target" in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    frame = pd.read_csv(penguins_csv)
    rows = split_rows(penguins_csv, "body_mass_g")
    features = [c for c in frame.columns if c != "body_mass_g"]
    numeric = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "year"]
    reference = sklearn_table_model(Ridge(alpha=1.0), numeric, ["species", "island", "sex"])
    train = frame.iloc[np.concatenate([rows["train"], rows["val"]])]
    reference.fit(train[features], train["body_mass_g"])
    test = frame.iloc[rows["test"]]
    r2_sklearn = skm.r2_score(test["body_mass_g"], reference.predict(test[features]))
    assert metrics["model"]["test"]["r2"] >= r2_sklearn - 0.01, (metrics["model"]["test"], r2_sklearn)

    # Raw new rows: text columns as they are, a gap, and an island never seen in training.
    new = frame.drop(columns="body_mass_g").iloc[[0, 3, 200]].copy()
    new.iloc[0, new.columns.get_loc("island")] = "Atlantis"
    new.to_csv(tmp_path / "new.csv", index=False)
    out = cli("predict", str(tmp_path / "run"), str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv"))
    assert out.returncode == 0, out.stderr
    assert "1 row with a value of 'island' never seen in training" in out.stderr
    predictions = pd.read_csv(tmp_path / "p.csv")["prediction"]
    assert predictions.notna().all() and predictions.between(2000, 7000).all()


def test_penguin_species_and_every_classification_metric(penguins_csv, tmp_path):
    result = cli("train", str(penguins_csv), "--target", "species", "--test", HELD_OUT, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "task: classification of 'species' (3 classes)" in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    test = metrics["model"]["test"]
    assert test["accuracy"] >= 0.97
    assert set(test) == {"accuracy", "balanced_accuracy", "f1_macro", "log_loss", "ece", "roc_auc",
                         "confusion_matrix", "per_class"}  # fmt: skip
    assert metrics["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert {"logistic_regression", "majority_class"} <= set(metrics)

    # The metrics are scikit-learn's on the run's own test predictions.
    frame = pd.read_csv(penguins_csv)
    rows = split_rows(penguins_csv, "species")
    run = torchwork.load_run(tmp_path / "run")
    test_rows = frame.iloc[rows["test"]]
    proba = run.predict_proba(test_rows)
    truth = test_rows["species"].map({c: i for i, c in enumerate(metrics["classes"])}).to_numpy()
    assert test["accuracy"] == pytest.approx(skm.accuracy_score(truth, proba.argmax(1)))
    assert test["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(truth, proba.argmax(1)))
    assert test["f1_macro"] == pytest.approx(skm.f1_score(truth, proba.argmax(1), average="macro"))
    assert test["log_loss"] == pytest.approx(skm.log_loss(truth, proba, labels=[0, 1, 2]), rel=1e-6)
    assert test["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, proba, multi_class="ovr"), rel=1e-6)
    assert test["confusion_matrix"] == skm.confusion_matrix(truth, proba.argmax(1)).tolist()

    # predict: the label as spelled in training, and one probability per class.
    test_rows.drop(columns="species").to_csv(tmp_path / "new.csv", index=False)
    out = cli("predict", str(tmp_path / "run"), str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv"))
    assert out.returncode == 0, out.stderr
    p = pd.read_csv(tmp_path / "p.csv")
    assert list(p.columns[-4:]) == ["prediction", "proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]
    assert set(p["prediction"]) <= {"Adelie", "Chinstrap", "Gentoo"}
    np.testing.assert_allclose(p[["proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]].sum(axis=1), 1.0, rtol=1e-6)
    evaluated = json.loads(cli("evaluate", str(tmp_path / "run"), str(penguins_csv), "--json").stdout)
    assert set(evaluated["model"]) >= {"accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc"}
    assert evaluated["task"] == "classification" and evaluated["rows"] == len(frame)
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Confusion matrix" in html and "logistic regression" in html.lower()


@pytest.mark.parametrize(("name", "task"), [("iris", "auto"), ("wine", "auto"), ("breast_cancer", "classification")])
def test_at_least_as_accurate_as_logistic_regression(name, task, tmp_path):
    """Multiclass (iris, wine) and binary 0/1 labels (breast_cancer, with --task classification)."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.rename(columns={"target": "label"})
    if name != "breast_cancer":
        frame["label"] = [bunch.target_names[i] for i in bunch.target]  # text labels
    csv = tmp_path / f"{name}.csv"
    frame.to_csv(csv, index=False)
    run = torchwork.train(str(csv), target="label", task=task, test=float(HELD_OUT), verbose=False)
    rows = split_rows(csv, "label", task=task)
    features = [c for c in frame.columns if c != "label"]
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    train = frame.iloc[np.concatenate([rows["train"], rows["val"]])]
    reference.fit(train[features], train["label"])
    test = frame.iloc[rows["test"]]
    sklearn_accuracy = skm.accuracy_score(test["label"], reference.predict(test[features]))
    ours = run.metrics["model"]["test"]["accuracy"]
    assert ours >= sklearn_accuracy - 0.01, (name, ours, sklearn_accuracy)
    assert skm.accuracy_score(test["label"], run.predict(test[features])) == pytest.approx(ours)


def test_a_classifier_with_categories_exports_and_runs_without_torchwork(penguins_csv, tmp_path):
    pytest.importorskip("onnxruntime")
    assert cli("train", str(penguins_csv), "--target", "species", "--epochs", "30", "--out", str(tmp_path / "run"),
               "-q").returncode == 0  # fmt: skip
    result = cli("export", str(tmp_path / "run"), "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert result.returncode == 0, result.stderr
    vocabulary = json.loads((tmp_path / "m.onnx.vocabulary.json").read_text())
    assert vocabulary["outputs"] == {"kind": "class probabilities", "classes": ["Adelie", "Chinstrap", "Gentoo"]}
    island = next(i for i in vocabulary["inputs"] if i["name"] == "island")
    import onnxruntime as ort

    run = torchwork.load_run(tmp_path / "run")
    rows = pd.read_csv(penguins_csv).drop(columns="species").iloc[:20]
    X = run.pre.raw_inputs(rows)
    j = [i["name"] for i in vocabulary["inputs"]].index("island")
    assert X[:, j].tolist() == [island["codes"][v] for v in rows["island"]]  # the codes are the vocabulary's
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: X})[0]
    np.testing.assert_allclose(got, run.predict_proba(rows), atol=1e-5)


def test_unseen_category_in_python_and_the_report_of_fills(penguins_csv):
    frame = pd.read_csv(penguins_csv)
    run = torchwork.train(frame, target="body_mass_g", epochs=20, verbose=False)
    new = frame.drop(columns="body_mass_g").iloc[:4].copy()
    new["sex"] = ["female", None, "unknown-sex", "male"]
    _, p = run.predicted(new)
    assert p.unknown == {"sex": 1} and p.filled["sex"] == 1
    assert run.predict(new).shape == (4,) and np.isfinite(run.predict(new)).all()


def test_bad_class_requests_are_one_line(penguins_csv, tmp_path):
    assert_one_line_error(cli("train", str(penguins_csv), "--target", "species", "--loss", "mse", "-q"),
                          "'mse' is a regression loss")  # fmt: skip
    assert_one_line_error(cli("train", str(penguins_csv), "--target", "species", "--loss", "bce", "-q"),
                          "bce takes two classes; the target has 3")  # fmt: skip


@pytest.mark.parametrize(("name", "classes"), [("breast_cancer", 2), ("digits", 10)])
def test_integer_class_labels_train_as_classification_and_say_how_to_override(name, classes, tmp_path):
    """Issue 17 item 2: scikit-learn's own 0/1 and 0-9 targets are classes; the choice is printed with its flag."""
    from sklearn import datasets

    frame = getattr(datasets, f"load_{name}")(as_frame=True).frame
    csv = tmp_path / f"{name}.csv"
    frame.to_csv(csv, index=False)
    result = cli("train", str(csv), "--target", "target", "--epochs", "2", "--out", str(tmp_path / "auto"))
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert f"task: classification of 'target' ({classes} classes)" in said
    note = next(line for line in said.splitlines() if line.startswith("note: the target 'target'"))
    assert "--task regression" in note
    run = torchwork.load_run(tmp_path / "auto")
    assert run.task == "classification" and run.classes == list(range(classes))
    forced = cli("train", str(csv), "--target", "target", "--task", "regression", "--epochs", "2", "--out",
                 str(tmp_path / "forced"))  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert "task: regression of target" in forced.stdout + forced.stderr
    assert torchwork.load_run(tmp_path / "forced").task == "regression"


def test_the_estimators_keep_their_task_on_integer_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] > 0).astype(int)
    regressor = torchwork.Regressor(epochs=3, hidden=(8,)).fit(X, y)
    assert not hasattr(regressor, "classes_") and regressor.preprocessor_.task == "regression"
    assert len(np.unique(regressor.predict(X))) > 2  # numbers, not labels
    classifier = torchwork.Classifier(epochs=3, hidden=(8,)).fit(X, y + 1)
    assert list(classifier.classes_) == [1, 2] and set(classifier.predict(X)) <= {1, 2}


def test_classes_chosen_from_numbers_too_small_to_split_name_the_other_task():
    frame = pd.DataFrame({"a": np.arange(30.0), "y": [0] * 29 + [1]})  # two values: classes; one has 1 row
    with pytest.raises(torchwork.InputError, match=r"class '1' has 1 row.*; or pass --task regression"):
        prepare(TrainConfig(target=["y"], shuffle=True).validate(), frame)
    assert prepare(TrainConfig(target=["y"], task="regression").validate(), frame).pre.task == "regression"
