"""``report.html``: one self-contained page that shows a run, its verdict and its tables.

The page loads nothing and runs no script: the styles are inline and the plots are data URIs.
It reads at any width from 320 px: tables too wide for a phone scroll inside their own box,
long paths and code wrap, and plots take the column's width (two columns on wide screens, one
on phones). Regression and classification metrics are both understood (``metrics["task"]``).
:func:`verdict` is the one sentence on whether the network beats its baselines.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import struct
from collections.abc import Sequence
from typing import Any

from torchwork.core.errors import counted
from torchwork.evaluation.metrics import TREES


# --------------------------------------------------------------------- numbers, text and tables
def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return html.escape(str(value))


def number_text(value: Any, kind: str = "num") -> str:
    """A metric as the tables show it: ``pct`` 97.1%, ``p3`` 0.971, ``num`` four significant digits."""
    if value is None:
        return "—"
    if isinstance(value, (bool, int)):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if kind == "pct":
        return f"{v:.1%}"
    if kind == "p3":
        return f"{v:.3f}"
    if v == 0:
        return "0"
    a = abs(v)
    if 1e-3 <= a < 1e6:
        return f"{v:.{max(0, 3 - math.floor(math.log10(a)))}f}"
    return f"{v:.3e}"


def json_text(value: Any) -> str:
    """A configuration value in JSON spelling (null, true, [64, 64], {}); text as it is."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


# Tokens a line must not split: numbers in scientific notation (6.923e-07), negative numbers, dates
# and times (2026-11-28T04:33:04+00:00). A browser breaks after a hyphen, and in a squeezed
# table cell or a card (overflow-wrap) anywhere.
_WHOLE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[+-]\d{2}:\d{2}|Z)?)?"
    r"|(?<![\w.])[-−]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)%?"
    r"|(?<![\w.])[-−]\d[\d,]*(?:\.\d+)?%?"
)


def whole(escaped: str) -> str:
    """Escaped text (or HTML without digits in its tags) with each number or date that a line
    could split kept on one line (``<span class=nw>``)."""
    return _WHOLE.sub(lambda m: f"<span class=nw>{m.group(0)}</span>", escaped)


def breakable(text: str) -> str:
    """Escaped text that may wrap after each / \\ : . _ not followed by a digit (long paths and dotted names)."""
    return re.sub(r"([/\\:._])(?=[^\s\d])", r"\1<wbr>", html.escape(text))


def _png_size(png: bytes) -> tuple[int, int] | None:
    if png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR":
        width, height = struct.unpack(">II", png[16:24])
        return int(width), int(height)
    return None


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    size = _png_size(png)
    dims = f" width={size[0]} height={size[1]}" if size else ""
    return f'<img alt="{html.escape(alt)}"{dims} src="data:image/png;base64,{data}">'


def is_classification(metrics: dict[str, Any]) -> bool:
    return metrics.get("task") == "classification" or "logistic_regression" in metrics


def html_table(body: str, css: str = "") -> str:
    """A table in its own box, which scrolls sideways when the table is wider than the page.

    ``css="stack"``: on phones each row becomes a block of text instead (no sideways scrolling).
    """
    cls = f" class={css}" if css else ""
    return f"<div class=scroll><table{cls}>{body}</table></div>"


def dropped_rows(dropped: Any) -> int:
    """The rows left out, from ``run.json``'s ``dropped``: a count, or counts by reason (summed)."""
    if isinstance(dropped, dict):
        return sum(int(v) for v in dropped.values() if isinstance(v, int | float))
    return int(dropped) if isinstance(dropped, int | float) else 0


def best_epoch_text(best: Any) -> str:
    """The epoch whose weights were kept, as a person reads it: epochs count from 1, and 0 (``run.json``'s
    spelling) is the weights training started from, which training did not beat (see recipe.keep_start)."""
    if best is None:
        return "—"
    return "the start (training did not beat it)" if best == 0 else str(best)


def percent(value: float) -> str:
    return f"{value:.1%}"


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


# ---------------------------------------------------------------------------------- the verdict
def _pair(first: dict[str, Any], second: dict[str, Any], within: str = "") -> str:
    """``accuracy A against B{within} (log loss A against B)``: both pairs in the same order, ``first`` first."""
    text = f"accuracy {percent(float(first['accuracy']))} against {percent(float(second['accuracy']))}{within}"
    if first.get("log_loss") is not None and second.get("log_loss") is not None:
        text += f" (log loss {float(first['log_loss']):.3g} against {float(second['log_loss']):.3g})"
    return text


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
    diff = round(ours - theirs, 12)
    if diff >= 0.005:
        text = f"The model beats {base_name} on the {part} split: {_pair(m, b)}."
        css = "good"
    elif diff <= -0.005:  # the baseline is named first: each pair of numbers is in that order
        name = base_name[0].upper() + base_name[1:]
        text = f"{name} beats the model on the {part} split: {_pair(b, m)}."
        css = "bad"
    else:
        text = f"The model and {base_name} do equally well on the {part} split: {_pair(m, b, ', within half a point')}."
        css = "even"
    majority = (metrics.get("majority_class") or {}).get(part)
    if base_key != "majority_class" and majority and ours < float(majority["accuracy"]) + 0.005:
        share = percent(float(majority["accuracy"]))
        text += f" The model does no better than always predicting the most common class ({share})."
        css = "bad"
    return text, css


TREES_NAME = "gradient-boosted trees"


def _trees_sentence(metrics: dict[str, Any], part: str) -> str:
    """``" Gradient-boosted trees do better on this table: …"`` when they beat the model on ``part``
    (regression: MSE 1 % lower; classification: accuracy half a point higher, or as high within
    half a point with a log loss 5 % lower); else nothing."""
    model, trees = metrics.get("model", {}).get(part), (metrics.get(TREES) or {}).get(part)
    if not model or not trees:
        return ""
    lead = f" Gradient-boosted trees do better on this table ({part} split): "
    if not is_classification(metrics):
        ours, theirs = float(model["mse"]), float(trees["mse"])
        if ours > 0 and theirs < 0.99 * ours:
            return lead + f"MSE {1 - theirs / ours:.1%} lower than the model's ({theirs:.4g} against {ours:.4g})."
        return ""
    diff = round(float(trees["accuracy"]) - float(model["accuracy"]), 12)
    loss_t, loss_m = trees.get("log_loss"), model.get("log_loss")
    sharper = loss_t is not None and loss_m is not None and float(loss_t) < 0.95 * float(loss_m)
    if diff >= 0.005 or (diff > -0.005 and sharper):
        return lead + _pair(trees, model) + "."
    return ""


def verdict(metrics: dict[str, Any]) -> tuple[str, str]:
    """One sentence on whether the network beats its baseline, and its CSS class (good, even, bad).

    Regression: the model against the least-squares line, by MSE. Classification: against the
    logistic regression, by accuracy (equal within half a point), with the log loss beside it.
    Judged on the test split, else validation, else training. When scikit-learn's gradient-boosted
    trees (fitted on the same rows) beat the model there, a second sentence says so, and a verdict
    that was good is only even.
    """
    text, css = _linear_verdict(metrics)
    part = next((p for p in ("test", "val", "train") if p in metrics.get("model", {})), "train")
    trees = _trees_sentence(metrics, part)
    return text + trees, ("even" if trees and css == "good" else css)


def _linear_verdict(metrics: dict[str, Any]) -> tuple[str, str]:
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


# ------------------------------------------------------------------------------------- sections
PARTS = ("train", "val", "test")
# (key, label, which way is better, format) of each metric in the metrics table.
REGRESSION_METRICS = (
    ("mae", "MAE", "lower is better", "num"),
    ("mse", "MSE", "lower is better", "num"),
    ("rmse", "RMSE", "lower is better", "num"),
    ("r2", "R²", "higher is better", "num"),
)
CLASSIFICATION_METRICS = (
    ("accuracy", "accuracy", "higher is better", "pct"),
    ("balanced_accuracy", "balanced accuracy", "higher is better", "pct"),
    ("f1_macro", "F1 (macro)", "higher is better", "p3"),
    ("log_loss", "log loss", "lower is better", "num"),
    ("ece", "calibration error (ECE)", "lower is better", "p3"),
    ("roc_auc", "ROC AUC", "higher is better", "p3"),
)
REGRESSION_MODELS = (("model", "model"), ("least_squares", "least squares"), (TREES, TREES_NAME))
CLASSIFICATION_MODELS = (
    ("model", "model"),
    ("logistic_regression", "logistic regression"),
    ("majority_class", "majority class"),
    (TREES, TREES_NAME),
)


def metrics_table(metrics: dict[str, Any]) -> str:
    """Splits as columns; per metric, one row for the model and one per baseline; the best in bold."""
    classification = is_classification(metrics)
    specs = CLASSIFICATION_METRICS if classification else REGRESSION_METRICS
    sources = CLASSIFICATION_MODELS if classification else REGRESSION_MODELS
    parts = [p for p in PARTS if p in metrics.get("model", {})]
    head = "<thead><tr><th class=l scope=col>split</th>" + "".join(f"<th scope=col>{p}</th>" for p in parts)
    head += "</tr></thead>"
    counts = metrics.get("rows", {})
    rows = (
        "<tbody><tr><th class=l scope=row>rows</th>"
        + "".join(f"<td>{number_text(counts.get(p))}</td>" for p in parts)
        + "</tr></tbody>"
    )
    groups = []
    for key, label, better, kind in specs:
        present = [(src, name) for src, name in sources if any(key in metrics.get(src, {}).get(p, {}) for p in parts)]
        if not present:
            continue
        best: dict[str, float] = {}
        for p in parts:
            values = [metrics[src][p].get(key) for src, _ in present if p in metrics[src]]
            values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
            if len(values) > 1 and min(values) != max(values):
                best[p] = min(values) if better.startswith("lower") else max(values)
        lines = [f"<tr class=group><th class=l colspan={len(parts) + 1}>{label}<span>{better}</span></th></tr>"]
        for src, name in present:
            cells = []
            for p in parts:
                value = metrics[src].get(p, {}).get(key)
                text = number_text(value, kind)
                bold = value is not None and p in best and float(value) == best[p]
                cells.append(f"<td>{'<b>' + text + '</b>' if bold else text}</td>")
            lines.append(f"<tr><td class=l>{name}</td>{''.join(cells)}</tr>")
        groups.append(f"<tbody>{''.join(lines)}</tbody>")
    return html_table(head + rows + "".join(groups))


def _class_names(metrics: dict[str, Any], n: int) -> list[str]:
    names = [str(c) for c in metrics.get("classes") or []]
    return names if len(names) == n else [f"class {k}" for k in range(n)]


def per_class_section(metrics: dict[str, Any]) -> str:
    """Per-class precision, recall, F1 and the confusion matrix of the model, on test (else val, else train)."""
    model = metrics.get("model", {})
    part = next((p for p in ("test", "val", "train") if model.get(p, {}).get("per_class")), None)
    if part is None:
        return ""
    per_class = model[part]["per_class"]
    names = _class_names(metrics, len(per_class))
    head = (
        "<thead><tr><th class=l scope=col>class</th><th scope=col>precision</th><th scope=col>recall</th>"
        "<th scope=col>F1</th><th scope=col>rows</th></tr></thead>"
    )
    body = "".join(
        f"<tr><th class=l scope=row>{html.escape(name)}</th><td>{number_text(c.get('precision'), 'p3')}</td>"
        f"<td>{number_text(c.get('recall'), 'p3')}</td><td>{number_text(c.get('f1'), 'p3')}</td>"
        f"<td>{number_text(c.get('support'))}</td></tr>"
        for name, c in zip(names, per_class, strict=True)
    )
    out = [f"<h3>Each class, {part} split</h3>", html_table(f"{head}<tbody>{body}</tbody>")]
    cm = model[part].get("confusion_matrix")
    if cm and len(cm) == len(names):
        out.append(f"<h3>Confusion matrix, {part} split</h3>")
        out.append(
            "<p class=sub>Rows are the actual class, columns the predicted one; shaded by the share of the row.</p>"
        )
        # On phones the columns are headed by the class's number (the rows say which is which).
        top = "".join(
            f"<th scope=col><span class=name>{html.escape(n)}</span><span class=n>{k + 1}</span></th>"
            for k, n in enumerate(names)
        )
        lines = []
        for i, (name, row) in enumerate(zip(names, cm, strict=True)):
            total = sum(row)
            cells = []
            for j, count in enumerate(row):
                share = count / total if total else 0.0
                colour = "#fff" if share > 0.55 else "inherit"
                style = f' style="background:rgba(31,95,191,{share:.2f});color:{colour}"' if share else ""
                text = f"<b>{count}</b>" if i == j else f"{count}"
                cells.append(f"<td class=cm{style}>{text}</td>")
            number = f"<span class=n>{i + 1} </span>"
            lines.append(f"<tr><th class=l scope=row>{number}{html.escape(name)}</th>{''.join(cells)}</tr>")
        head = f"<thead><tr><th class=l scope=col>actual \\ predicted</th>{top}</tr></thead>"
        out.append(html_table(f"{head}<tbody>{''.join(lines)}</tbody>", "cmx"))
    return "".join(out)


def columns_table(columns: Sequence[dict[str, Any]]) -> str:
    unknown = any(c.get("unknown") is not None for c in columns)
    head = "<thead><tr><th class=l scope=col>column</th><th class=l scope=col>kind</th>"
    head += "<th class=l scope=col>detail</th><th scope=col>filled</th>"
    head += ("<th scope=col>unknown</th>" if unknown else "") + "</tr></thead>"
    rows = []
    for c in columns:
        cells = (
            f"<th class=l scope=row><code>{html.escape(str(c.get('name', '')))}</code></th>"
            f"<td class=l>{html.escape(str(c.get('kind', '')))}</td>"
            f"<td class='l wrap'>{html.escape(str(c.get('detail', '')))}</td>"
            f"<td data-label=filled>{number_text(c.get('filled', 0))}</td>"
        )
        if unknown:
            cells += f"<td data-label=unknown>{number_text(c.get('unknown'))}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return html_table(f"{head}<tbody>{''.join(rows)}</tbody>", "stack")


# ------------------------------------------------------------------------------------- the page

_CSS = """
*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:26px;line-height:1.25;margin:8px 0 6px;overflow-wrap:anywhere}
h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
h3{font-size:16px;margin:20px 0 6px}
p,li,figcaption{overflow-wrap:anywhere}
.sub{color:#5b6475;margin:0 0 16px}
.verdict{padding:12px 16px;border-radius:8px;margin:16px 0;font-weight:600}
.good{background:#e4f5e9;color:#155c2c}.bad{background:#fdecea;color:#8a1c12}.even{background:#eef1f6;color:#333}
.notes{background:#fff8e1;border:1px solid #f0dc9c;border-radius:8px;margin:12px 0;padding:8px 16px 8px 32px}
.notes li{margin:2px 0}
.scroll{max-width:100%;overflow-x:auto;margin:8px 0}
table{border-collapse:collapse;background:#fff;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde1e7;padding:5px 10px;text-align:right;vertical-align:top}
thead th{background:#eef1f6}
th.l,td.l{text-align:left}
td:not(.l):not(.v):not(.wrap){white-space:nowrap}.nw{white-space:nowrap}
tr.group th{background:#f6f7f9;font-weight:600;padding-top:7px}
tr.group span{color:#5b6475;font-weight:400;font-size:13px;margin-left:6px}
tbody th[scope=row]{font-weight:600;background:#fafbfc}
td.v{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
td.wrap{overflow-wrap:anywhere}
td.cm{min-width:3em}
.cmx .n{display:none}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));grid-auto-flow:dense;gap:10px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 14px;min-width:0}
.card.wide{grid-column:span 2}
.card b{display:block;font-size:19px;line-height:1.3;overflow-wrap:anywhere}.card span{color:#5b6475;font-size:13px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:16px}
figure{margin:0;min-width:0}
figcaption{color:#5b6475;font-size:13px}
img{display:block;width:100%;height:auto;background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:6px 0}
code{background:#eef1f6;padding:1px 4px;border-radius:4px;overflow-wrap:anywhere;font-size:.92em}
@media(max-width:800px){.grid{grid-template-columns:minmax(0,1fr)}}
@media(max-width:600px){
main{padding:16px 14px 48px}h1{font-size:22px}h2{font-size:18px}
th,td{padding:4px 5px}thead th{font-size:13px}
.cards{grid-template-columns:repeat(2,minmax(0,1fr));gap:8px}.card{padding:8px 10px}.card b{font-size:17px}
.cmx .n{display:inline}.cmx .name{display:none}
table.stack{width:100%}.stack thead{display:none}
.stack tr{display:flex;flex-wrap:wrap;align-items:baseline;gap:0 12px;border:1px solid #dde1e7;border-top:0;padding:6px 10px}
.stack tr:first-child{border-top:1px solid #dde1e7}
.stack th,.stack td,.stack tbody th[scope=row]{display:block;border:0;padding:0;background:none;text-align:left;min-width:0}
.stack td[data-label]{white-space:nowrap}.stack td[data-label]::before{content:attr(data-label) " ";color:#5b6475}
}
@media(max-width:380px){main{padding:12px 10px 40px}table{font-size:13px}th,td{padding:3px 4px}tr.group span{display:block;margin:0}}
"""


TREES_EXPLAINED = (
    " The gradient-boosted trees are scikit-learn's HistGradientBoosting at its defaults (categories split "
    "natively), fitted on the same training rows."
)


def render_report(
    *,
    title: str,
    config: dict[str, Any],
    info: dict[str, Any],
    metrics: dict[str, Any],
    model_meta: dict[str, Any],
    plots: dict[str, bytes],
    columns: Sequence[dict[str, Any]] | None = None,
    notes: Sequence[str] | None = None,
) -> str:
    """The HTML of a run's report. ``plots`` maps a caption to PNG bytes.

    ``columns`` describes the input columns (``name``, ``kind``, ``detail``, ``filled``, optional
    ``unknown``) for a "Columns" table; ``notes`` (and ``info["notes"]``) are shown near the top.
    """
    text, css = verdict(metrics)
    classification = is_classification(metrics)
    pre = model_meta.get("preprocessing", {})
    features, targets = as_list(pre.get("features")), as_list(pre.get("target"))
    arch = model_meta.get("architecture", {})
    arch_name = arch.get("name") or arch.get("class") or "model"
    data = info.get("data", {})
    classes = [str(c) for c in metrics.get("classes") or []]
    cards = [("rows used", f"{data.get('rows_used', '—')}"), ("features", f"{len(features)}")]
    if classification:
        cards.append(("classes", f"{len(classes)}"))
    params = model_meta.get("parameters")
    count = f" · {params:,} parameters" if isinstance(params, int) else f" · {params} parameters" if params else ""
    cards.append(("model", f"{arch_name}{count}"))
    cards += [
        ("epochs, stopped early" if info.get("stopped_early") else "epochs", f"{info.get('epochs_run', '—')}"),
        ("best epoch", best_epoch_text(info.get("best_epoch"))),
    ]
    if info.get("seconds") is not None:
        cards.append((f"time on {info.get('device', '?')}", f"{info['seconds']:.1f} s"))
    cards_html = "".join(
        f"<div class='card{' wide' if k == 'model' else ''}'><b>{whole(breakable(v))}</b>"
        f"<span>{format_value(k)}</span></div>"
        for k, v in cards
    )

    target = ", ".join(targets)
    source = f" of <code>{breakable(str(data['source']))}</code>" if data.get("source") else ""
    dropped = dropped_rows(data.get("dropped"))
    dropped_note = f" ({counted(dropped, 'row')} with missing values dropped)" if dropped else ""
    finished = f" Finished {whole(format_value(info['finished']))}." if info.get("finished") else ""
    if classification:
        shown = f" ({format_value(', '.join(classes))})" if 0 < len(classes) <= 8 else ""
        what = f"Classifying <code>{format_value(target)}</code> into {len(classes)} classes{shown}"
    else:
        what = f"Predicting <code>{format_value(target)}</code>"
    lead = f"{what} from {len(features)} features{source}{dropped_note}.{finished}"

    all_notes = list(dict.fromkeys([*as_list(info.get("notes")), *as_list(notes)]))
    notes_html = (
        "<ul class=notes>" + "".join(f"<li>{whole(breakable(n))}</li>" for n in all_notes) + "</ul>"
        if all_notes
        else ""
    )

    if classification:
        explain = (
            "Accuracy is the share of rows given the right class; balanced accuracy is the mean of the classes' "
            "recalls; log loss scores the predicted probabilities."
        )
        if metrics.get("logistic_regression"):
            explain += " The logistic regression is fitted on the same training rows."
        if metrics.get("majority_class"):
            explain += " The majority class always predicts the training split's most common class."
        if metrics.get(TREES):
            explain += TREES_EXPLAINED
        explain += " The best value of each group is in bold."
    else:
        explain = "In the target's units. The least-squares line is fitted in closed form on the same training rows."
        if metrics.get(TREES):
            explain += TREES_EXPLAINED
        explain += " The best value of each group is in bold."
    figures = "".join(
        f"<figure>{img_tag(png, cap)}<figcaption>{format_value(cap)}</figcaption></figure>"
        for cap, png in plots.items()
    )
    plots_html = f"<h2>Plots</h2>\n<div class=grid>{figures}</div>" if plots else ""
    if columns:
        inputs = (
            "<h2>Columns</h2>\n<p>The model reads "
            + ", ".join(f"<code>{format_value(f)}</code>" for f in features)
            + ". <i>filled</i> counts the missing values that were filled in.</p>\n"
            + columns_table(columns)
        )
    else:
        inputs = "<h2>Features</h2>\n<p>" + ", ".join(f"<code>{format_value(f)}</code>" for f in features) + "</p>"
    config_rows = "".join(
        f"<tr><th class=l scope=row>{format_value(k)}</th><td class='l v'>{breakable(json_text(v))}</td></tr>"
        for k, v in config.items()
    )
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    per_class = per_class_section(metrics) if classification else ""
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1">
<title>{format_value(title)}</title><style>{_CSS}</style></head><body><main>
<h1>{format_value(title)}</h1>
<p class=sub>{lead}</p>
<div class="verdict {css}">{whole(format_value(text))}</div>
{notes_html}
<div class=cards>{cards_html}</div>
<h2>Metrics</h2>
<p>{explain}</p>
{metrics_table(metrics)}
{per_class}
{plots_html}
{inputs}
<h2>Configuration</h2>
{html_table(f"<tbody>{config_rows}</tbody>", "stack")}
<p class=sub>{format_value(versions)}</p>
</main></body></html>
"""
