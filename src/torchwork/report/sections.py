"""The report's tables: the metrics against the baselines, each class with its confusion matrix, the columns."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from torchwork.report.formatting import html_table, is_classification, number_text

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
    ("roc_auc", "ROC AUC", "higher is better", "p3"),
)
REGRESSION_MODELS = (("model", "model"), ("least_squares", "least squares"))
CLASSIFICATION_MODELS = (
    ("model", "model"),
    ("logistic_regression", "logistic regression"),
    ("majority_class", "majority class"),
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
