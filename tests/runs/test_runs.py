"""Your data, your model: train from files and DataFrames, predict, evaluate, inspect, report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import torchwork
from tests.support import assert_one_line_error, cli
from torchwork.evaluation.baselines import LeastSquares
from torchwork.evaluation.metrics import regression_metrics
from torchwork.files.weights import load_weights


def linear_frame(n=600, seed=0, noise=0.5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    df = pd.DataFrame(X, columns=["f0", "f1", "f2", "f3"])
    df["y"] = X @ np.array([1.5, -2.0, 0.5, 3.0]) + 4.0 + noise * rng.normal(size=n)
    return df


def nonlinear_frame(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    df["y"] = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.5 * X[:, 2] + 0.05 * rng.normal(size=n)
    return df


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run of the defaults (an MLP) on a CSV, used by several tests."""
    tmp = tmp_path_factory.mktemp("trained")
    df = nonlinear_frame()
    df.to_csv(tmp / "data.csv", index=False)
    result = cli("train", str(tmp / "data.csv"), "--target", "y", "--test", "0.15", "--out", str(tmp / "run"))
    assert result.returncode == 0, result.stderr
    return tmp, df, result


@pytest.mark.slow
def test_defaults_learn_a_smooth_nonlinear_function(trained):
    tmp, _, result = trained
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    assert metrics["model"]["test"]["r2"] > 0.97
    assert metrics["least_squares"]["test"]["r2"] < 0.5  # a straight line cannot
    assert "The model beats the least-squares line on the test split" in result.stdout


def test_linear_model_reaches_least_squares(tmp_path):
    """Against a closed-form fit computed here, on the rows a sequential split gives to each part."""
    df = linear_frame()
    run = torchwork.train(df, target="y", model="linear", shuffle=False, test=0.15, verbose=False)
    assert run.info["split"] == {"train": 420, "val": 90, "test": 90}  # 70/15/15, in the file's order
    X, y = df[["f0", "f1", "f2", "f3"]].to_numpy(), df["y"].to_numpy()
    A = np.hstack([X, np.ones((len(X), 1))])
    coef, *_ = np.linalg.lstsq(A[:420], y[:420], rcond=None)
    independent = float(np.mean((A[510:] @ coef - y[510:]) ** 2))
    # an honest baseline (the inputs are float32, as the model's: agreement to float32's precision)
    assert run.metrics["least_squares"]["test"]["mse"] == pytest.approx(independent, rel=1e-6)
    assert run.metrics["model"]["test"]["mse"] <= independent * 1.02  # the network reaches it on held-out rows


def test_run_folder_holds_everything(trained):
    tmp, _, _ = trained
    run_dir = tmp / "run"
    names = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert {"config.json", "run.json", "model.safetensors", "model.json", "history.csv", "metrics.json",
            "report.html", "manifest.json", "plots/loss.png", "plots/pred_vs_actual.png",
            "plots/residuals.png"} <= names  # fmt: skip
    assert not (tmp / "run.partial").exists()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["optimizer"] == "adam" and config["standardize"] is True and config["hidden"] == [64, 64]
    meta = json.loads((run_dir / "model.json").read_text())
    assert meta["preprocessing"]["features"] == ["a", "b", "c"] and meta["preprocessing"]["target"] == ["y"]
    assert meta["architecture"] == {"name": "mlp", "args": {"in_features": 3, "out_features": 1,
                                    "hidden": [64, 64], "activation": "relu", "dropout": 0.0, "categories": [],
                                    "skip": True}}  # fmt: skip
    assert set(meta["versions"]) >= {"torchwork", "torch"}
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "lr", "seconds"]
    info = json.loads((run_dir / "run.json").read_text())
    assert len(history) == info["epochs_run"]


def test_scalers_are_fitted_on_the_training_split_only():
    """With a sequential split the training rows are the first 85%: the scalers are theirs alone."""
    df = nonlinear_frame(n=400)
    run = torchwork.train(df, target="y", shuffle=False, epochs=1, verbose=False)
    pre = run.meta["preprocessing"]
    means = [c["mean"] for c in pre["columns"]]
    scales = [c["scale"] for c in pre["columns"]]
    train = df.iloc[:340]
    np.testing.assert_allclose(means, train[["a", "b", "c"]].mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(scales, train[["a", "b", "c"]].std(ddof=0).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(pre["targets"]["scale"], [train["y"].std(ddof=0)], rtol=1e-12)
    assert not np.allclose(means, df[["a", "b", "c"]].mean().to_numpy())


def test_report_is_one_self_contained_page(trained):
    tmp, _, _ = trained
    html = (tmp / "run" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "beats the least-squares line" in html and "best epoch" in html


def test_predict_adds_a_column_and_accepts_reordered_columns(trained, tmp_path):
    tmp, df, _ = trained
    new = df[["c", "a", "b"]].iloc[:25]  # reordered, no target
    new.to_csv(tmp_path / "new.csv", index=False)
    result = cli("predict", str(tmp / "run"), str(tmp_path / "new.csv"), "--out", str(tmp_path / "pred.csv"))
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "pred.csv")
    assert list(out.columns) == ["c", "a", "b", "prediction"]
    run = torchwork.load_run(tmp / "run")
    np.testing.assert_allclose(out["prediction"], run.predict(df[["a", "b", "c"]].iloc[:25]).ravel(), rtol=1e-12)
    # The same rows in the original order give the same predictions.
    np.testing.assert_array_equal(run.predict(new).ravel(), run.predict(df[["a", "b", "c"]].iloc[:25]).ravel())


def test_predict_to_parquet_and_stdout(trained, tmp_path):
    tmp, df, _ = trained
    df.iloc[:10].to_parquet(tmp_path / "new.parquet")  # labelled rows are fine too
    assert (
        cli("predict", str(tmp / "run"), str(tmp_path / "new.parquet"), "--out", str(tmp_path / "p.parquet")).returncode
        == 0
    )
    out = pd.read_parquet(tmp_path / "p.parquet")
    assert list(out.columns) == ["a", "b", "c", "y", "prediction"] and len(out) == 10
    result = cli("predict", str(tmp / "run"), str(tmp_path / "new.parquet"))
    assert result.stdout.splitlines()[0] == "a,b,c,y,prediction" and len(result.stdout.splitlines()) == 11


def test_predict_schema_errors_list_columns_by_name(trained, tmp_path):
    tmp, df, _ = trained
    df[["a", "c"]].assign(extra=1.0, id=2).to_csv(tmp_path / "bad.csv", index=False)
    result = cli("predict", str(tmp / "run"), str(tmp_path / "bad.csv"))
    assert_one_line_error(result, "missing columns 'b'", "unexpected columns 'extra', 'id'", "expects 'a', 'b', 'c'")
    df[["a", "b", "c"]].assign(id=range(len(df))).to_csv(tmp_path / "extra.csv", index=False)
    result = cli("predict", str(tmp / "run"), str(tmp_path / "extra.csv"), "--allow-extra-columns")
    assert result.returncode == 0 and result.stdout.splitlines()[0] == "a,b,c,id,prediction"


def test_evaluate_matches_metrics_computed_here(trained, tmp_path):
    tmp, df, _ = trained
    rows = df.iloc[::7]
    rows.to_csv(tmp_path / "eval.csv", index=False)
    result = cli("evaluate", str(tmp / "run"), str(tmp_path / "eval.csv"), "--json")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    preds = torchwork.load_run(tmp / "run").predict(rows[["a", "b", "c"]])
    expected = regression_metrics(rows[["y"]].to_numpy(), preds)
    assert got["model"] == pytest.approx(expected, rel=1e-12)
    assert got["rows"] == len(rows) and "least_squares" in got
    text = cli("evaluate", str(tmp / "run"), str(tmp_path / "eval.csv")).stdout
    assert "least_squares" in text and "R²" in text
    rows.drop(columns="y").to_csv(tmp_path / "unlabelled.csv", index=False)
    assert_one_line_error(cli("evaluate", str(tmp / "run"), str(tmp_path / "unlabelled.csv")), "no target column 'y'")


def test_inspect_a_run(trained):
    tmp, _, _ = trained
    result = cli("inspect", str(tmp / "run"))
    assert result.returncode == 0, result.stderr
    for fragment in (
        "model:      mlp",
        "features:   a (numeric), b (numeric), c (numeric)",
        "target:     y",
        "net.0.weight",
        "test ",
    ):
        assert fragment in result.stdout


@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet", "npy", "npz", "dataframe", "array", "tensor"])
def test_every_input_format_trains_the_same_model(tmp_path, kind):
    df = linear_frame(n=120)
    target = "y"
    if kind == "csv":
        data = tmp_path / "d.csv"
        df.to_csv(data, index=False)
    elif kind == "tsv":
        data = tmp_path / "d.tsv"
        df.to_csv(data, index=False, sep="\t")
    elif kind == "parquet":
        data = tmp_path / "d.parquet"
        df.to_parquet(data)
    elif kind == "npy":
        data = tmp_path / "d.npy"
        np.save(data, df.to_numpy())
        target = "4"
    elif kind == "npz":
        data = tmp_path / "d.npz"
        np.savez(data, X=df[["f0", "f1", "f2", "f3"]].to_numpy(), y=df["y"].to_numpy())
    elif kind == "dataframe":
        data = df
    elif kind == "array":
        data, target = df.to_numpy(), "-1"
    else:
        data, target = torch.from_numpy(df.to_numpy()), "4"
    run = torchwork.train(data, target=target, epochs=3, verbose=False)
    reference = torchwork.train(df, target="y", epochs=3, verbose=False)
    for k, v in reference.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[k], v), (kind, k)


@pytest.mark.slow
def test_flags_override_the_config_file(tmp_path):
    df = linear_frame(n=200)
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "run.toml").write_text('data = "d.csv"\ntarget = "y"\nepochs = 7\nmodel = "linear"\nlr = 0.01\n'
                                       'optimizer = "adam"\n[optimizer_args]\namsgrad = true\n')  # fmt: skip
    result = cli("train", "--config", str(tmp_path / "run.toml"), "--epochs", "4", "--out", str(tmp_path / "r"), "-q")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["epochs"] == 4 and config["model"] == "linear" and config["lr"] == 0.01
    assert config["optimizer_args"] == {"amsgrad": True}
    assert config["data"] == str(tmp_path / "d.csv")  # relative to the config file
    (tmp_path / "run.yaml").write_text("target: y\nhidden: [8, 4]\nactivation: tanh\nearly_stopping: 0\nepochs: 3\n")
    result = cli(
        "train", str(tmp_path / "d.csv"), "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "r2"), "-q"
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "r2" / "model.json").read_text())
    assert meta["architecture"]["args"]["hidden"] == [8, 4]
    assert json.loads((tmp_path / "r2" / "run.json").read_text())["epochs_run"] == 3


@pytest.mark.slow
def test_same_seed_same_run(tmp_path):
    nonlinear_frame(n=300).to_csv(tmp_path / "d.csv", index=False)
    for name in ("a", "b"):
        assert cli("train", str(tmp_path / "d.csv"), "--target", "y", "--epochs", "5", "--dropout", "0.1",
                   "--out", str(tmp_path / name), "-q").returncode == 0  # fmt: skip
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    ha, hb = (pd.read_csv(tmp_path / n / "history.csv").drop(columns="seconds") for n in "ab")
    pd.testing.assert_frame_equal(ha, hb)
    cli(
        "train",
        str(tmp_path / "d.csv"),
        "--target",
        "y",
        "--epochs",
        "5",
        "--seed",
        "1",
        "--out",
        str(tmp_path / "c"),
        "-q",
    )
    assert (tmp_path / "c" / "model.safetensors").read_bytes() != (tmp_path / "a" / "model.safetensors").read_bytes()


def test_scheduler_clipping_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    linear_frame(n=200).to_csv(tmp_path / "d.csv", index=False)
    result = cli("train", str(tmp_path / "d.csv"), "--target", "y", "--epochs", "6", "--scheduler", "step",
                 "--clip-grad", "0.5", "--tensorboard", "--out", str(tmp_path / "r"), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lrs = pd.read_csv(tmp_path / "r" / "history.csv")["lr"].tolist()
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])  # step_size = epochs // 3
    assert list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))


def test_progress_is_plain_lines_off_a_terminal(tmp_path):
    """Off a terminal: plain lines (no bar), the first epoch and the last always among them."""
    linear_frame(n=100).to_csv(tmp_path / "d.csv", index=False)
    result = cli("train", str(tmp_path / "d.csv"), "--target", "y", "--epochs", "3", "--out", str(tmp_path / "r"))
    lines = [line.split(" | ")[0] for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert (
        lines[0] == "epoch 1/3" and lines[-1] == "epoch 3/3" and set(lines) <= {"epoch 1/3", "epoch 2/3", "epoch 3/3"}
    )
    assert "\r" not in result.stderr


def test_your_own_module(tmp_path):
    linear_frame(n=150).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "run.toml").write_text('model = "tests.custom_models:TinyNet"\n[model_args]\nwidth = 5\n')
    train = ("train", str(tmp_path / "d.csv"), "--target", "y", "--config", str(tmp_path / "run.toml"), "--epochs", "3",
             "--out", str(tmp_path / "r"), "-q")  # fmt: skip
    # A class named in a config file is not consent to import it.
    assert_one_line_error(cli(*train), "run.toml: key 'model'", "tests.custom_models:TinyNet", "--trust-model-code")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()
    result = cli(*train, "--trust-model-code")
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "r" / "model.json").read_text())
    assert meta["architecture"] == {"class": "tests.custom_models:TinyNet",
                                    "args": {"width": 5, "in_features": 4, "out_features": 1}}  # fmt: skip
    assert_one_line_error(cli("predict", str(tmp_path / "r"), str(tmp_path / "d.csv")), "--trust-model-code")
    ok = cli("predict", str(tmp_path / "r"), str(tmp_path / "d.csv"), "--trust-model-code")
    assert ok.returncode == 0, ok.stderr
    assert load_weights(tmp_path / "r" / "model.safetensors").tensors["body.0.weight"].shape == (5, 4)


def test_python_api_in_memory(tmp_path):
    df = linear_frame(n=300)
    run = torchwork.train(df, target="y", model="linear", verbose=False)
    assert run.path is None and not list(tmp_path.iterdir())
    preds = run.predict(df.drop(columns="y"))
    assert preds.shape == (300,)  # one target: one value per row, as scikit-learn's predict
    ls = LeastSquares().fit(df.drop(columns="y").to_numpy(), df[["y"]].to_numpy())
    r2_ls = regression_metrics(df[["y"]], ls.predict(df.drop(columns="y")))["r2"]
    assert regression_metrics(df[["y"]], preds)["r2"] > r2_ls - 0.01
    assert run.evaluate(df)["model"]["r2"] > 0.95


def test_several_targets_get_one_prediction_column_each(tmp_path):
    df = linear_frame(n=200)
    df["z"] = -df["y"]
    run = torchwork.train(df, target=["y", "z"], model="linear", epochs=3, verbose=False)
    frame, _ = run.predict_table(df.drop(columns=["y", "z"]), column="p")
    assert list(frame.columns)[-2:] == ["p_y", "p_z"]
    frame, _ = run.predict_table(df.drop(columns=["y", "z"]))
    assert list(frame.columns)[-2:] == ["y_pred", "z_pred"]


def test_verdict_when_least_squares_is_exact():
    from torchwork.report.html import verdict

    metrics = {"model": {"test": {"mse": 0.01}}, "least_squares": {"test": {"mse": 1e-31}}}
    text, css = verdict(metrics)
    assert "least squares fits the target exactly" in text and css == "bad" and "%" not in text
    text, _ = verdict({"model": {"test": {"mse": 9.0}}, "least_squares": {"test": {"mse": 3.0}}})
    assert "3 times as high" in text


def test_runs_work_from_any_folder(tmp_path, monkeypatch):
    """The data path is recorded absolute: export (and resume) do not depend on the current folder."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    linear_frame(n=120).to_csv(tmp_path / "a" / "d.csv", index=False)
    monkeypatch.chdir(tmp_path / "a")
    assert cli("train", "d.csv", "--target", "y", "--epochs", "3", "--out", "run", "-q").returncode == 0
    assert json.loads((tmp_path / "a" / "run" / "config.json").read_text())["data"] == str(tmp_path / "a" / "d.csv")
    monkeypatch.chdir(tmp_path / "b")
    result = cli("export", "../a/run", "--format", "exported", "--out", "m.pt2")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_resume_of_your_own_class_needs_trust(tmp_path):
    import subprocess
    import sys

    from tests.support import ENV, ROOT

    linear_frame(n=150).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "c.toml").write_text('model = "tests.custom_models:TinyNet"\n')
    out = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-m", "tests.kill_driver", "after-save", "1", "train", str(tmp_path / "d.csv"),
         "--target", "y", "--config", str(tmp_path / "c.toml"), "--checkpoint-every", "1", "--epochs", "5",
         "--out", str(out), "-q", "--trust-model-code"],
        cwd=ROOT, env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    assert_one_line_error(cli("resume", str(out)), "tests.custom_models:TinyNet", "--trust-model-code")
    assert cli("resume", str(out), "--trust-model-code", "-q").returncode == 0
    assert (out / "model.safetensors").exists()


def test_resume_from_a_dataframe_needs_the_same_data(tmp_path):
    from tests.support import KillAfter, Killed
    from torchwork.runs import lifecycle

    df = linear_frame(n=150)
    original = lifecycle.Checkpointer
    lifecycle.Checkpointer = lambda *a, **k: KillAfter(*a, at_epoch=2, **k)  # the run dies after epoch 2's checkpoint
    try:
        with pytest.raises(Killed):
            torchwork.train(df, target="y", epochs=5, checkpoint_every=1, out=tmp_path / "run", verbose=False)
    finally:
        lifecycle.Checkpointer = original
    with pytest.raises(torchwork.InputError, match="trained from in-memory data"):
        torchwork.resume(tmp_path / "run")
    with pytest.raises(torchwork.InputError, match="not the data the run started with"):
        torchwork.resume(tmp_path / "run", data=df.iloc[:-1])
    run = torchwork.resume(tmp_path / "run", data=df, verbose=False)
    reference = torchwork.train(df, target="y", epochs=5, verbose=False)
    assert run.metrics == reference.metrics


def test_a_run_whose_start_was_best_says_so_in_its_summary_and_notes(tmp_path):
    # The linear model starts from least squares or, when the validation rows prefer it, ridge;
    # L-BFGS then heads for least squares, the exact optimum of the training loss, which does no
    # better on validation: no epoch improves on the start, and the run must say that it kept it
    # (not only "stopped early"), by the name of the start it kept.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": X @ [1.0, -2.0, 0.5] + rng.normal(size=300)})
    frame.to_csv(tmp_path / "lin.csv", index=False)
    result = cli("train", str(tmp_path / "lin.csv"), "--target", "y", "--model", "linear", "--epochs", "5", "-q",
                 "--out", str(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = torchwork.load_run(tmp_path / "run")
    assert run.info["best_epoch"] == 0
    epochs_line = next(line for line in result.stdout.splitlines() if line.startswith("epochs:"))
    assert "no epoch improved on the start" in epochs_line
    assert "the ridge line, alpha " in epochs_line or "the least-squares line" in epochs_line
    assert any("no epoch improved on the start" in note for note in run.info["notes"])


def test_a_classifier_on_a_separated_validation_slice_stops_instead_of_sharpening_for_ever():
    # Two blobs far apart: the validation log loss falls for ever, ever more slowly, as the logits
    # grow. Only a fall of at least 0.001 nats counts, so early stopping ends the fit and keeps an
    # early epoch's weights instead of the 1000th epoch's most over-confident ones.
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-4, 1, size=(100, 2)), rng.normal(4, 1, size=(100, 2))])
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "label": ["left"] * 100 + ["right"] * 100})
    run = torchwork.train(frame, target="label", epochs=1000, verbose=False)
    assert run.info["stopped_early"] and run.info["epochs_run"] < 1000
    assert run.metrics["model"]["val"]["accuracy"] == 1.0


def _skewed(n=800, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    price = np.exp(1.5 * X[:, 0] - X[:, 1] + 0.3 * rng.normal(size=n) + 10)  # log-normal: a price
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "price": price})


def test_a_skewed_positive_target_is_learnt_in_log_space_when_asked_and_predicted_in_its_units(tmp_path):
    from torchwork.runs.run import Deployable

    frame = _skewed()
    run = torchwork.train(frame, target="price", epochs=30, target_transform="log", out=tmp_path / "run",
                          verbose=False)  # fmt: skip
    assert run.meta["preprocessing"]["targets"]["log"] is True
    assert any("learnt as log(1 + target)" in note for note in run.info["notes"])
    loaded = torchwork.load_run(tmp_path / "run")
    predictions = loaded.predict(frame)
    assert (predictions > 0).all()
    with torch.no_grad():
        exported = Deployable(loaded.model, loaded.pre).eval()(torch.from_numpy(loaded.pre.raw_inputs(frame)))
    np.testing.assert_allclose(exported.double().numpy()[:, 0], predictions, rtol=1e-4)
    # and it pays: on rows of the same kind that neither run saw, the log-space run's RMSE is lower
    kept = torchwork.train(frame, target="price", epochs=30, verbose=False)  # the default: as it is
    assert kept.meta["preprocessing"]["targets"]["log"] is False
    new = _skewed(seed=1)
    rmse = {name: np.sqrt(np.mean((r.predict(new) - new["price"].to_numpy()) ** 2)) for name, r in
            (("log", loaded), ("as it is", kept))}  # fmt: skip
    assert rmse["log"] < rmse["as it is"], rmse


def test_log_asked_for_a_target_with_negative_values_is_one_line(tmp_path):
    frame = _skewed()
    frame["price"] -= frame["price"].median()
    frame.to_csv(tmp_path / "neg.csv", index=False)
    assert_one_line_error(cli("train", str(tmp_path / "neg.csv"), "--target", "price", "--target-transform", "log"),
                          "--target-transform", "log needs targets >= 0")  # fmt: skip
