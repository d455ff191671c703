"""The report's verdict: one sentence on whether the network beats its baseline."""

from __future__ import annotations

from typing import Any

from torchwork.report.formatting import is_classification, percent


def _classification_verdict(metrics: dict[str, Any]) -> tuple[str, str]:
    model = metrics.get("model", {})
    base_key, base_name = "logistic_regression", "the logistic regression"
    if not metrics.get(base_key):
        base_key, base_name = "majority_class", "the majority-class baseline"
    base = metrics.get(base_key) or {}
    part = next((p for p in ("test", "val", "train") if p in model and p in base), None)
    if part is None:
        part = next((p for p in ("test", "val", "train") if p in model), None)
        if part is None:
            return "No metrics to judge the model by.", "even"
        return (
            f"The model's accuracy on the {part} split is {percent(model[part]['accuracy'])} "
            "(no baseline to compare with).",
            "even",
        )
    m, b = model[part], base[part]
    ours, theirs = float(m["accuracy"]), float(b["accuracy"])
    loss = ""
    if m.get("log_loss") is not None and b.get("log_loss") is not None:
        loss = f" (log loss {float(m['log_loss']):.3g} against {float(b['log_loss']):.3g})"
    diff = round(ours - theirs, 12)
    if diff >= 0.005:
        scores = f"accuracy {percent(ours)} against {percent(theirs)}{loss}"
        text = f"The model beats {base_name} on the {part} split: {scores}."
        css = "good"
    elif diff <= -0.005:
        name = base_name[0].upper() + base_name[1:]
        text = f"{name} beats the model on the {part} split: accuracy {percent(theirs)} against {percent(ours)}{loss}."
        css = "bad"
    else:
        text = (
            f"The model and {base_name} do equally well on the {part} split: accuracy {percent(ours)} against "
            f"{percent(theirs)}, within half a point{loss}."
        )
        css = "even"
    majority = (metrics.get("majority_class") or {}).get(part)
    if base_key != "majority_class" and majority and ours < float(majority["accuracy"]) + 0.005:
        share = percent(float(majority["accuracy"]))
        text += f" The model does no better than always predicting the most common class ({share})."
        css = "bad"
    return text, css


def verdict(metrics: dict[str, Any]) -> tuple[str, str]:
    """One sentence on whether the network beats its baseline, and its CSS class (good, even, bad).

    Regression: the model against the least-squares line, by MSE. Classification: against the
    logistic regression, by accuracy (equal within half a point), with the log loss beside it.
    Judged on the test split, else validation, else training.
    """
    if is_classification(metrics):
        return _classification_verdict(metrics)
    part = next((p for p in ("test", "val", "train") if p in metrics["model"]), "train")
    model, base = metrics["model"][part]["mse"], metrics["least_squares"][part]["mse"]
    if base <= 1e-12 * model or base == 0:  # the target is (almost exactly) linear in the features
        return (
            f"On the {part} split least squares fits the target exactly (MSE {base:.3g}); "
            f"the model's MSE is {model:.3g}.",
            "bad" if model > 0 else "even",
        )
    ratio = model / base
    if ratio < 0.99:
        return f"The model beats the least-squares line on the {part} split: MSE {1 - ratio:.1%} lower.", "good"
    if ratio > 2:
        return (
            f"The least-squares line beats the model on the {part} split: "
            f"the model's MSE is {ratio:.3g} times as high.",
            "bad",
        )
    if ratio > 1.01:
        return (
            f"The least-squares line beats the model on the {part} split: the model's MSE is {ratio - 1:.1%} higher.",
            "bad",
        )
    return (
        f"The model and the least-squares line do equally well on the {part} split (MSE within 1%).",
        "even",
    )
