"""The report's words and plots on the edges a user hits (issue 18: items 2, 19, 20, 28, 30)."""

from __future__ import annotations

import re

import pytest

from tests.report.test_report import CONFIG, INFO, _clf, _meta, _png
from torchwork.report.html import render_report, verdict


def _subtitle(page: str) -> str:
    return re.search(r"<p class=sub>(.*?)</p>", page, re.S).group(1)


@pytest.mark.parametrize(("model_acc", "base_acc"), [(0.971, 0.943), (0.90, 0.943), (0.95, 0.953)])
@pytest.mark.parametrize(("model_loss", "base_loss"), [(0.0812, 0.1523), (0.533, 0.513)])
def test_the_verdicts_number_pairs_are_in_one_order(model_acc, base_acc, model_loss, base_loss):
    """Item 19: whichever is named first, its accuracy and its log loss come first."""
    metrics = _clf(model_acc, base_acc)
    metrics["model"]["test"]["log_loss"] = model_loss
    metrics["logistic_regression"]["test"]["log_loss"] = base_loss
    text, _ = verdict(metrics)
    found = re.search(r"accuracy ([\d.]+)% against ([\d.]+)%.*\(log loss ([\d.]+) against ([\d.]+)\)", text)
    assert found, text
    acc1, acc2, loss1, loss2 = (float(v) for v in found.groups())
    by_accuracy = {round(100 * model_acc, 1): model_loss, round(100 * base_acc, 1): base_loss}
    assert float(f"{by_accuracy[acc1]:.3g}") == loss1 and float(f"{by_accuracy[acc2]:.3g}") == loss2, text
    first = "model" if text.startswith("The model") else "logistic_regression"
    assert acc1 == round(100 * metrics[first]["test"]["accuracy"], 1), text


def _page(dropped) -> str:
    info = {**INFO, "data": {**INFO["data"], "dropped": dropped}}
    return render_report(title="run", config=CONFIG, info=info, metrics=_clf(0.9, 0.8),
                         model_meta=_meta(["a", "b"], ["species"]), plots={"Loss": _png()})  # fmt: skip


@pytest.mark.parametrize(
    ("dropped", "count"),
    [({"missing_target": 0}, 0), ({}, 0), (0, 0), ({"missing_target": 3, "missing_value": 4}, 7),
     ({"missing_target": 1}, 1), (12, 12)],
)  # fmt: skip
def test_the_subtitle_sums_the_dropped_rows_and_says_nothing_of_none(dropped, count):
    """Item 20: run.json keeps the counts by reason; the page says their sum, and nothing when it is 0."""
    sub = _subtitle(_page(dropped))
    assert "{" not in sub and "missing_target" not in sub, sub
    if count == 0:
        assert "dropped" not in sub, sub
    else:
        noun = "row" if count == 1 else "rows"
        assert f"({count} {noun} with missing values dropped)" in sub, sub


def test_the_loss_plot_names_a_best_start_in_words(monkeypatch):
    """Item 30: the legend says the start was best, not "Best epoch (0)"."""
    from torchwork.report import plots

    figures = []
    monkeypatch.setattr(plots, "png_bytes", lambda fig, path: figures.append(fig) or b"")
    plots.plot_loss_curves([1, 2, 3], [1.0, 1.1, 1.2], [1.0, 1.1, 1.3], best_epoch=0)
    plots.plot_loss_curves([1, 2, 3], [1.0, 0.9, 0.8], [1.0, 0.9, 0.95], best_epoch=2)
    labels = [[t.get_text() for t in fig.axes[0].get_legend().get_texts()] for fig in figures]
    assert "Kept: the start (training did not beat it)" in labels[0] and "Best epoch (0)" not in labels[0]
    assert "Best epoch (2)" in labels[1]
