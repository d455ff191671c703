"""``report.html``: one self-contained page (plots embedded) that shows a run.

The page loads nothing and runs no script: the styles are inline and the plots are data URIs.
It reads at any width from 320 px: tables too wide for a phone scroll inside their own box,
long paths and code wrap, and plots take the column's width (two columns on wide screens, one
on phones). Every plot has the same width (``report.figures.FIGSIZE``), so their text shows at
one size. Regression and classification metrics are both understood (``metrics["task"]``).
The page's sections are in ``report.sections``, the verdict in ``report.verdicts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torchwork.report.formatting import (
    as_list,
    breakable,
    format_value,
    html_table,
    img_tag,
    is_classification,
    json_text,
)
from torchwork.report.sections import columns_table, metrics_table, per_class_section
from torchwork.report.verdicts import verdict

__all__ = ["render_report", "verdict"]

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
        ("best epoch", f"{info['best_epoch']}" if info.get("best_epoch") is not None else "—"),
    ]
    if info.get("seconds") is not None:
        cards.append((f"time on {info.get('device', '?')}", f"{info['seconds']:.1f} s"))
    cards_html = "".join(
        f"<div class='card{' wide' if k == 'model' else ''}'><b>{breakable(v)}</b><span>{format_value(k)}</span></div>"
        for k, v in cards
    )

    target = ", ".join(targets)
    source = f" of <code>{breakable(str(data['source']))}</code>" if data.get("source") else ""
    dropped = data.get("dropped", 0)
    dropped_note = f" ({dropped} rows with missing values dropped)" if dropped else ""
    finished = f" Finished {format_value(info['finished'])}." if info.get("finished") else ""
    if classification:
        shown = f" ({format_value(', '.join(classes))})" if 0 < len(classes) <= 8 else ""
        what = f"Classifying <code>{format_value(target)}</code> into {len(classes)} classes{shown}"
    else:
        what = f"Predicting <code>{format_value(target)}</code>"
    lead = f"{what} from {len(features)} features{source}{dropped_note}.{finished}"

    all_notes = list(dict.fromkeys([*as_list(info.get("notes")), *as_list(notes)]))
    notes_html = (
        "<ul class=notes>" + "".join(f"<li>{breakable(n)}</li>" for n in all_notes) + "</ul>" if all_notes else ""
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
        explain += " The best value of each group is in bold."
    else:
        explain = (
            "In the target's units. The least-squares line is fitted in closed form on the same training rows; "
            "the better value of each pair is in bold."
        )
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
<div class="verdict {css}">{format_value(text)}</div>
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
