"""``report.html``: one self-contained page (plots embedded) that shows a run."""

from __future__ import annotations

import base64
import html
from typing import Any

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6475;margin:0 0 16px}
.verdict{padding:12px 16px;border-radius:8px;margin:16px 0;font-weight:600}
.good{background:#e4f5e9;color:#155c2c}.bad{background:#fdecea;color:#8a1c12}.even{background:#eef1f6;color:#333}
table{border-collapse:collapse;background:#fff;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde1e7;padding:5px 10px;text-align:right}th{background:#eef1f6}
td.l,th.l{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 14px}
.card b{display:block;font-size:20px}.card span{color:#5b6475;font-size:13px}
img{max-width:100%;background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:6px 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}.wide{grid-column:1/-1}@media(max-width:800px){.grid{grid-template-columns:1fr}}
figure{margin:0}figcaption{color:#5b6475;font-size:13px}
code{background:#eef1f6;padding:1px 4px;border-radius:4px}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = []
    for part in ("train", "val", "test"):
        model = metrics["model"].get(part)
        base = metrics["least_squares"].get(part)
        if model is None:
            continue
        cells = "".join(f"<td>{_fmt(model[m])}</td><td>{_fmt(base[m])}</td>" for m in ("mae", "rmse", "r2"))
        rows.append(f"<tr><td class=l>{part}</td><td>{metrics['rows'][part]}</td>{cells}</tr>")
    head = "".join(f"<th>{m} model</th><th>{m} least squares</th>" for m in ("MAE", "RMSE", "R²"))
    return f"<table><tr><th class=l>split</th><th>rows</th>{head}</tr>{''.join(rows)}</table>"


def verdict(metrics: dict[str, Any]) -> tuple[str, str]:
    """One sentence on whether the network beats a straight line, and its CSS class."""
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
            f"The least-squares line beats the model on the {part} split: the model's MSE is {ratio:.3g} times as high.",
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


def render_report(
    *,
    title: str,
    config: dict[str, Any],
    info: dict[str, Any],
    metrics: dict[str, Any],
    model_meta: dict[str, Any],
    plots: dict[str, bytes],
) -> str:
    """The HTML of a run's report. ``plots`` maps a caption to PNG bytes."""
    text, css = verdict(metrics)
    arch = model_meta["architecture"]
    arch_name = arch.get("name") or arch.get("class")
    cards = [
        ("rows used", f"{info['data']['rows_used']}"),
        ("features", f"{len(model_meta['preprocessing']['features'])}"),
        ("model", f"{arch_name} · {model_meta['parameters']} parameters"),
        ("epochs", f"{info['epochs_run']}" + (" (stopped early)" if info.get("stopped_early") else "")),
        ("best epoch", f"{info['best_epoch']}" if info.get("best_epoch") is not None else "—"),
        ("time", f"{info['seconds']:.1f} s on {info['device']}"),
    ]
    cards_html = "".join(f"<div class=card><b>{_fmt(v)}</b><span>{_fmt(k)}</span></div>" for k, v in cards)
    figures = list(plots.items())
    grid = "".join(
        f"<figure{' class=wide' if cap.startswith('Residuals') else ''}>{_img(png, cap)}"
        f"<figcaption>{_fmt(cap)}</figcaption></figure>"
        for cap, png in figures
    )
    config_rows = "".join(f"<tr><td class=l>{_fmt(k)}</td><td class=l>{_fmt(v)}</td></tr>" for k, v in config.items())
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    dropped = info["data"].get("dropped", 0)
    dropped_note = f" ({dropped} rows with missing values dropped)" if dropped else ""
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1">
<title>{_fmt(title)}</title><style>{_CSS}</style></head><body><main>
<h1>{_fmt(title)}</h1>
<p class=sub>Predicting <code>{_fmt(", ".join(model_meta["preprocessing"]["target"]))}</code> from {len(model_meta["preprocessing"]["features"])} features
of <code>{_fmt(info["data"]["source"])}</code>{dropped_note}. Finished {_fmt(info["finished"])}.</p>
<div class="verdict {css}">{_fmt(text)}</div>
<div class=cards>{cards_html}</div>
<h2>Metrics</h2>
<p>In the target's units. The least-squares line is fitted in closed form on the same training rows.</p>
{_metrics_table(metrics)}
<h2>Plots</h2>
<div class=grid>{grid}</div>
<h2>Features</h2>
<p>{", ".join(f"<code>{_fmt(f)}</code>" for f in model_meta["preprocessing"]["features"])}</p>
<h2>Configuration</h2>
<table>{config_rows}</table>
<p class=sub>{_fmt(versions)}</p>
</main></body></html>
"""
