"""The report's plots (each a valid PNG, all one width) and page (numbers, JSON spellings, verdicts)."""

from __future__ import annotations

import html
import io
import re
import struct

import numpy as np
import pytest
import torch

from torchwork.report import plots
from torchwork.report.html import render_report, verdict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def check_png(data: bytes) -> tuple[int, int]:
    """The PNG's (width, height), after checking its signature, its IEND chunk and that it decodes."""
    import matplotlib.image

    assert isinstance(data, bytes) and data.startswith(PNG_SIGNATURE)
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    width, height = struct.unpack(">II", data[16:24])
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0  # something was drawn
    return width, height


def _proba(X: np.ndarray) -> np.ndarray:
    """Three classes, nearest of three centres, softly."""
    centres = np.array([[0.0, 0.0], [3.0, 1.0], [1.0, 3.0]])[:, : X.shape[1]]
    d = -((X[:, None, :] - centres[None]) ** 2).sum(-1)
    e = np.exp(d - d.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _all_plots() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    y = rng.normal(size=60)
    X2, y3 = rng.normal(size=(60, 2)) * 2, rng.integers(0, 3, 60)
    fpr, tpr = np.array([0.0, 0.1, 0.4, 1.0]), np.array([0.0, 0.6, 0.9, 1.0])
    recall, precision = np.array([1.0, 0.8, 0.3, 0.0]), np.array([0.5, 0.7, 0.9, 1.0])
    return {
        "predictions": plots.plot_predictions(y[:40], y[:40], y[40:], y[40:], y[40:] + 0.1),
        "loss": plots.plot_loss_curves([1, 2, 3], [3.0, 2.0, 1.0], [3.5, None, 1.5], log_scale=True, best_epoch=3),
        "pred_vs_actual": plots.plot_pred_vs_actual(torch.tensor(y), y + 0.1),
        "residuals": plots.plot_residuals(y, y + rng.normal(size=60) * 0.1),
        "confusion": plots.plot_confusion_matrix([[5, 1, 0], [2, 7, 1], [0, 0, 9]], CLASSES, title="Confusion (test)"),
        "roc": plots.plot_roc_curves({"model": (fpr, tpr, 0.91), "logistic regression": (fpr, tpr**2, None)}),
        "pr": plots.plot_pr_curves({"model": (recall, precision, 0.8)}, chance=0.5),
        "balance": plots.plot_class_balance({"train": [40, 10, 20], "val": [8, 2, 5], "test": [9, 1, 5]}, CLASSES),
        "regions_2d": plots.plot_decision_regions(
            _proba, X2[:40], y3[:40], X2[40:], y3[40:], CLASSES, ["bill", "flipper"], resolution=40
        ),
        # Class codes as the function's answer, class names and a tensor as the labels.
        "regions_1d": plots.plot_decision_regions(
            lambda X: _proba(X).argmax(axis=1), X2[:40, :1], np.array(CLASSES)[y3[:40]], X2[40:, :1],
            torch.tensor(y3[40:]), CLASSES, ["bill"], resolution=40,
        ),
    }  # fmt: skip


@pytest.fixture(scope="module")
def all_plots() -> dict[str, bytes]:
    return _all_plots()


def test_every_plot_is_a_png_of_one_width(all_plots):
    sizes = {name: check_png(png) for name, png in all_plots.items()}
    widths = {w for w, _ in sizes.values()}
    # One width in pixels: shown at one width on the page, every plot's text shows at one size.
    assert widths == {round(plots.FIGSIZE[0] * plots.DPI)}, sizes


def test_plots_write_their_file(tmp_path):
    data = plots.plot_confusion_matrix(np.eye(2, dtype=int) * 3, None, path=tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes() == data
    binary = plots.plot_decision_regions(
        lambda X: 1 / (1 + np.exp(-X[:, 0])), [[-1.0], [1.0]], [0, 1], [[0.5]], [1], ["no", "yes"], ["x"]
    )
    check_png(binary)


def test_plot_arguments_are_checked():
    with pytest.raises(ValueError, match="one or two features"):
        plots.plot_decision_regions(_proba, np.zeros((4, 3)), [0] * 4, np.zeros((2, 3)), [0] * 2, CLASSES, "abc")
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix([[1, 2]], ["a"])
    with pytest.raises(ValueError, match="expected 3 names"):
        plots.plot_class_balance({"train": [1, 2, 3]}, ["a", "b"])


# ----------------------------------------------------------------- the page
PNG = b""


def _png() -> bytes:
    global PNG
    if not PNG:
        PNG = plots.plot_loss_curves([1, 2], [2.0, 1.0])
    return PNG


CONFIG = {
    "data": "/data/a/very/long/folder/name/that/goes/on/and/on/sensors_2024_all_sites_merged.csv",
    "target": ["power"],
    "features": None,
    "shuffle": True,
    "compile": False,
    "hidden": [64, 64],
    "model_args": {},
    "scheduler_args": {"step_size": 10, "gamma": 0.5},
    "lr": 0.001,
    "activation": "relu",
}
INFO = {
    "data": {"source": CONFIG["data"], "rows": 1200, "rows_used": 1190, "dropped": 10},
    "device": "cpu",
    "epochs_run": 40,
    "stopped_early": True,
    "best_epoch": 31,
    "seconds": 2.3,
    "finished": "2026-01-01T00:00:00+00:00",
    "notes": ["Training stopped early: no improvement for 10 epochs."],
    "versions": {"torchwork": "0.1.0", "torch": "2.13.0+cpu"},
}


def _meta(features: list[str], target: list[str]) -> dict:
    return {
        "architecture": {"name": "mlp", "args": {}},
        "parameters": 4545,
        "preprocessing": {"features": features, "target": target},
    }


def _reg(mse_model: float, mse_ls: float) -> dict:
    return {
        "model": {
            "train": {"mae": 2.81693, "mse": 13.0881, "rmse": 3.61775, "r2": 0.983718},
            "test": {"mae": 3.01081, "mse": mse_model, "rmse": 4.22914, "r2": 0.976512},
        },
        "least_squares": {
            "train": {"mae": 20.7822, "mse": 611.620, "rmse": 24.7310, "r2": 0.239152},
            "test": {"mae": 19.4634, "mse": mse_ls, "rmse": 24.4881, "r2": 0.212522},
        },
        "rows": {"train": 840, "test": 180},
    }


def _clf_part(accuracy: float, log_loss: float | None, roc_auc: float | None = 0.987) -> dict:
    return {
        "accuracy": accuracy,
        "balanced_accuracy": accuracy - 0.012,
        "f1_macro": accuracy - 0.02,
        "log_loss": log_loss,
        "roc_auc": roc_auc,
        "confusion_matrix": [[30, 1, 0], [2, 12, 0], [0, 0, 25]],
        "per_class": [
            {"precision": 0.9375, "recall": 0.967742, "f1": 0.952381, "support": 31},
            {"precision": 0.923077, "recall": 0.857143, "f1": 0.888889, "support": 14},
            {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 25},
        ],
    }


def _clf(model_acc: float, lr_acc: float, majority_acc: float = 0.443) -> dict:
    return {
        "task": "classification",
        "classes": CLASSES,
        "model": {"train": _clf_part(0.99, 0.04), "test": _clf_part(model_acc, 0.0812)},
        "logistic_regression": {"train": _clf_part(0.95, 0.14), "test": _clf_part(lr_acc, 0.1523)},
        "majority_class": {"train": _clf_part(0.44, 1.05, None), "test": _clf_part(majority_acc, 1.0986, None)},
        "rows": {"train": 238, "test": 70},
    }


def _render(metrics: dict, **kw) -> str:
    meta = _meta(["bill_length_mm", "flipper_length_mm"], ["species"] if "task" in metrics else ["power"])
    return render_report(title="Run <penguins>", config=CONFIG, info=INFO, metrics=metrics, model_meta=meta,
                         plots={"Loss": _png(), "Other": _png()}, **kw)  # fmt: skip


def _config_values(page: str) -> dict[str, str]:
    section = page.split("<h2>Configuration</h2>", 1)[1]
    pairs = re.findall(r"<th class=l scope=row>(.*?)</th><td class='l v'>(.*?)</td>", section)
    return {k: v.replace("<wbr>", "") for k, v in pairs}


def test_regression_report_shows_its_numbers_and_json_config():
    page = _render(_reg(17.8857, 599.668))
    for text in ("2.817", "3.011", "20.78", "19.46", "24.49", "0.9837", "0.2125", "17.89", "599.7", "840", "180"):
        assert f"{text}</" in page, text
    assert "<th scope=col>train</th><th scope=col>test</th>" in page and "<th scope=col>val</th>" not in page
    values = _config_values(page)
    assert values["features"] == "null" and values["shuffle"] == "true" and values["compile"] == "false"
    assert values["hidden"] == "[64, 64]" and values["model_args"] == "{}" and values["target"] == "[&quot;power&quot;]"
    assert values["scheduler_args"] == "{&quot;step_size&quot;: 10, &quot;gamma&quot;: 0.5}"
    assert values["lr"] == "0.001" and values["activation"] == "relu" and values["data"] == CONFIG["data"]
    assert not {"None", "True", "False"} & set(values.values())
    assert "The model beats the least-squares line on the test split: MSE 97.0% lower." in page
    assert "Run &lt;penguins&gt;" in page and "<penguins>" not in page
    assert "Training stopped early: no improvement for 10 epochs." in page
    assert "10 rows with missing values dropped" in page and "<b>31</b><span>best epoch</span>" in page


def test_the_page_is_self_contained():
    for page in (_render(_reg(17.9, 600.0)), _render(_clf(0.971, 0.943))):
        assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
        assert "<link" not in page and "@import" not in page and "url(" not in page
        sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
        assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
        size = f"width={round(plots.FIGSIZE[0] * plots.DPI)} height={round(plots.FIGSIZE[1] * plots.DPI)}"
        assert size in page  # the plot's size, so the page lays out before it decodes


def test_classification_report_shows_its_numbers():
    columns = [
        {"name": "bill_length_mm", "kind": "numeric", "detail": "mean 43.9, sd 5.5", "filled": 2},
        {"name": "island", "kind": "categorical", "detail": "3 categories, 0 rare", "filled": 0, "unknown": 1},
    ]
    page = _render(_clf(0.971, 0.943), columns=columns, notes=["2 rows had no species and were dropped."])
    metrics = page.split("<h2>Metrics</h2>", 1)[1].split("<h3>", 1)[0]
    for text in ("97.1%", "94.3%", "44.3%", "95.9%", "0.951", "0.08120", "0.1523", "1.099", "0.987", "238", "70"):
        assert f"{text}</" in metrics, text
    assert "<b>97.1%</b>" in metrics  # the best of the three
    assert "—" in metrics  # the majority class has no ROC AUC
    per_class = page.split("Each class, test split", 1)[1].split("<h2>", 1)[0]
    for text in ("Chinstrap", "0.938", "0.968", "0.952", "0.923", "0.857", "0.889", "1.000", "31", "14", "25"):
        assert f"{text}</" in per_class, text
    assert "Confusion matrix, test split" in per_class and "<b>30</b>" in per_class and "<b>12</b>" in per_class
    assert "Classifying <code>species</code> into 3 classes (Adelie, Chinstrap, Gentoo)" in page
    assert "<b>3</b><span>classes</span>" in page
    cols = page.split("<h2>Columns</h2>", 1)[1].split("<h2>", 1)[0]
    for text in ("bill_length_mm", "numeric", "mean 43.9, sd 5.5", "3 categories, 0 rare", "unknown"):
        assert text in cols, text
    island = r"island</code></th><td class=l>categorical</td><td class='l wrap'>3 categories, 0 rare</td>"
    assert re.search(island + "<td data-label=filled>0</td><td data-label=unknown>1</td>", cols)
    assert "2 rows had no species and were dropped." in page.split("<h2>", 1)[0]  # near the top


@pytest.mark.parametrize(
    ("model", "base", "css", "sentence"),
    [
        (0.971, 0.943, "good", "The model beats the logistic regression on the test split: accuracy 97.1% against "
                               "94.3% (log loss 0.0812 against 0.152)."),
        (0.95, 0.953, "even", "The model and the logistic regression do equally well on the test split: accuracy "
                              "95.0% against 95.3%, within half a point (log loss 0.0812 against 0.152)."),
        (0.90, 0.943, "bad", "The logistic regression beats the model on the test split: accuracy 94.3% against "
                             "90.0% (log loss 0.152 against 0.0812)."),
    ],
)  # fmt: skip
def test_classification_verdict(model, base, css, sentence):
    assert verdict(_clf(model, base)) == (sentence, css)
    assert sentence in _render(_clf(model, base))
    assert f'<div class="verdict {css}">' in _render(_clf(model, base))


def test_classification_verdict_is_honest_about_the_majority_class_and_missing_splits():
    text, css = verdict(_clf(0.45, 0.40, majority_acc=0.45))
    assert text.startswith("The model beats the logistic regression") and css == "bad"
    assert "no better than always predicting the most common class (45.0%)" in text
    metrics = _clf(0.9, 0.8)
    metrics["model"]["val"] = metrics["model"].pop("test")
    metrics["logistic_regression"]["val"] = metrics["logistic_regression"].pop("test")
    metrics["majority_class"]["val"] = metrics["majority_class"].pop("test")
    metrics["model"]["val"]["log_loss"] = None
    text, css = verdict(metrics)
    assert (
        text == "The model beats the logistic regression on the val split: accuracy 90.0% against 80.0%."
        and css == "good"
    )
    del metrics["logistic_regression"]
    text, _ = verdict(metrics)
    assert "the majority-class baseline on the val split" in text
    page = _render(metrics)
    assert "Each class, val split" in page and "logistic regression" not in page


def test_regression_verdict_is_unchanged():
    assert verdict(_reg(17.9, 600.0))[1] == "good"
    assert verdict(_reg(600.0, 600.0)) == (
        "The model and the least-squares line do equally well on the test split (MSE within 1%).",
        "even",
    )
    text, css = verdict(_reg(660.0, 600.0))
    assert text == "The least-squares line beats the model on the test split: the model's MSE is 10.0% higher."
    assert css == "bad" and html.escape(text) in _render(_reg(660.0, 600.0))


def _drawn(monkeypatch, module, make):
    """The figure a plot function draws (its PNG is not rendered)."""
    figures = []
    monkeypatch.setattr(module, "png_bytes", lambda fig, path: figures.append(fig) or b"")
    make()
    return figures[0]


def _points(ax):
    return sum(len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets"))


def _notes(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_scatter_plots_draw_a_fixed_sample_of_many_rows(monkeypatch):
    """A scatter of 240,000 rows is one blot, and matplotlib's cost (memory too) grows with it: the
    plots draw MAX_POINTS rows chosen at random, the same ones every time, and say so; the
    histogram and the axes still cover every row."""
    from torchwork.report import plots as classification_plots
    from torchwork.report import plots as figures
    from torchwork.report import plots as regression_plots

    limit, n = figures.MAX_POINTS, figures.MAX_POINTS * 3
    rng = np.random.default_rng(1)
    t = rng.normal(size=n)
    p = t + rng.normal(size=n) * 0.1
    t[7] = 50.0  # the largest value, and row 7 is not in every sample: the diagonal still reaches it
    fig = _drawn(monkeypatch, regression_plots, lambda: plots.plot_pred_vs_actual(t, p))
    ax = fig.axes[0]
    assert _points(ax) == limit and _notes(fig) == [f"{limit:,} of {n:,} rows shown, at random"]
    drawn = np.asarray(ax.collections[0].get_offsets())
    again = np.asarray(_drawn(monkeypatch, regression_plots, lambda: plots.plot_pred_vs_actual(t, p)).axes[0]
                       .collections[0].get_offsets())  # fmt: skip
    assert np.array_equal(drawn, again)
    rows = {float(v) for v in t}
    assert len({float(v) for v in drawn[:, 0]} & rows) == limit  # rows of the data, each once
    assert max(ax.lines[0].get_xdata()) >= 50.0

    fig = _drawn(monkeypatch, regression_plots, lambda: plots.plot_residuals(t, p))
    scatter_ax, hist_ax = fig.axes
    assert _points(scatter_ax) == limit and len(_notes(fig)) == 1
    assert sum(patch.get_width() for patch in hist_ax.patches) == n  # the histogram counts every row

    small = _drawn(monkeypatch, regression_plots, lambda: plots.plot_pred_vs_actual(t[:limit], p[:limit]))
    assert _points(small.axes[0]) == limit and _notes(small) == []

    X = rng.normal(size=(n, 2))

    def regions():
        split = (X[:, 0] > 0).astype(int)
        plots.plot_decision_regions(lambda A: (A[:, 0] > 0).astype(int), X, split, X[:100], split[:100], ["a", "b"],
                                    ["u", "v"], resolution=20)  # fmt: skip

    fig = _drawn(monkeypatch, classification_plots, regions)
    assert _points(fig.axes[0]) == limit + 100
    assert _notes(fig) == [f"{limit + 100:,} of {n + 100:,} rows shown, at random"]

    fig = _drawn(monkeypatch, plots, lambda: plots.plot_predictions(t, t, t[:10], t[:10], p[:10]))
    assert _points(fig.axes[0]) == limit + 20 and len(_notes(fig)) == 1
