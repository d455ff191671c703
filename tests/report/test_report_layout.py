"""The report in a real headless browser (Chromium): no sideways scrolling at 1280, 414 or 320 px.

Headless Chromium will not make its window narrower than 500 px, so each page is shown in a
frame of exactly the width and height measured (``<iframe srcdoc>``, its own viewport: media
queries and scrollbars as in a window that size) inside a window at least that wide. A small
script in the page measures the layout once it and its images have loaded and posts the result
to the outer page, which writes it into the DOM; ``chromium --dump-dom`` prints it.
Screenshots of the whole page at both widths are left in the test's ``tmp_path`` for a person
to look at. Skipped where Chromium is not installed (CI: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from torchwork.evaluation.metrics import classification_metrics, precision_recall_curve, regression_metrics, roc_curve
from torchwork.report import plots
from torchwork.report.html import render_report


def _chromium() -> str | None:
    names = (os.environ.get("TORCHWORK_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome")
    return next((path for name in names if name and (path := shutil.which(name))), None)


CHROMIUM = _chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium for a real browser (apt-get install -y chromium)"),
]
SIZES = {"desktop": (1280, 900), "phone": (414, 896), "small-phone": (320, 640)}
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip

# Runs in the page after it and its images have loaded; posts what it measured to the outer page.
MEASURE = """<script>
(function () {
  function describe(el, r) {
    var text = (el.getAttribute('alt') || el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
    return el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' "' + text + '" '
      + Math.round(r.left) + '..' + Math.round(r.right);
  }
  function scroller(el) {
    for (var p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      var o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') return p;
    }
    return null;
  }
  function measure() {
    var root = document.documentElement, main = document.querySelector('main'), ms = getComputedStyle(main);
    var view = root.clientWidth, overflowing = [], insideBox = [];
    var all = document.body.getElementsByTagName('*');
    for (var i = 0; i < all.length; i++) {
      var r = all[i].getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.right > view + 0.5 || r.left < -0.5) (scroller(all[i]) ? insideBox : overflowing).push(describe(all[i], r));
    }
    var out = {
      innerWidth: window.innerWidth, clientWidth: view, scrollWidth: root.scrollWidth,
      bodyScrollWidth: document.body.scrollWidth, scrollHeight: root.scrollHeight,
      contentWidth: main.clientWidth - parseFloat(ms.paddingLeft) - parseFloat(ms.paddingRight),
      images: Array.prototype.map.call(document.images, function (im) {
        return {alt: im.alt, width: im.getBoundingClientRect().width, loaded: im.complete && im.naturalWidth > 0};
      }),
      boxes: Array.prototype.map.call(document.querySelectorAll('.scroll'), function (b) {
        return {width: b.clientWidth, tableWidth: b.scrollWidth, scrolls: b.scrollWidth > b.clientWidth + 0.5};
      }),
      overflowing: overflowing, insideScrollBox: insideBox
    };
    parent.postMessage(JSON.stringify(out), '*');
  }
  if (document.readyState === 'complete') measure(); else window.addEventListener('load', measure);
})();
</script>"""

# The outer page: writes what the framed page posts into <pre id=tw-layout>.
RECEIVE = """<script>
window.addEventListener('message', function (e) {
  var pre = document.createElement('pre');
  pre.id = 'tw-layout';
  pre.textContent = e.data;
  document.body.appendChild(pre);
});
</script>"""


def framed(page: str, width: int, height: int, script: str = "") -> str:
    """An outer page that shows ``page`` (with ``script`` added) in a frame of exactly width x height."""
    inner = page.replace("</body>", script + "</body>")
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        "<style>html,body{margin:0;padding:0;overflow:hidden;background:#fff}iframe{display:block;border:0}</style>"
        f'</head><body><iframe width={width} height={height} srcdoc="{html.escape(inner, quote=True)}"></iframe>'
        f"{RECEIVE if script else ''}</body></html>"
    )


LONG_PATH = (
    "/home/runner/work/solar-farm-forecasting/solar-farm-forecasting/data/processed/2024-q3/"
    "sensors_all_sites_merged_cleaned_resampled_15min_v3_final_FINAL.csv"
)


def _info(source: str, rows: int, notes: list[str]) -> dict[str, Any]:
    return {
        "format": "torchwork-run/2",
        "data": {"source": source, "sha256": "f9fc3a2e" * 8, "rows": rows + 12, "rows_used": rows, "dropped": 12},
        "split": {"train": int(rows * 0.7), "val": int(rows * 0.15), "test": rows - int(rows * 0.7) - int(rows * 0.15)},
        "device": "cpu",
        "epochs_run": 183,
        "stopped_early": True,
        "best_epoch": 153,
        "seconds": 12.41,
        "finished": "2026-11-28T04:33:04+00:00",
        "notes": notes,
        "versions": {"torchwork": "0.1.0", "torch": "2.13.0+cpu", "numpy": "2.4.6", "python": "3.11.7"},
    }


def _config(data: str, target: str) -> dict[str, Any]:
    return {
        "data": data, "target": [target], "features": None, "drop_missing": False, "val": 0.15, "test": 0.15,
        "shuffle": True, "standardize": True,
        "model": "my_company.forecasting.models:GatedResidualNetworkWithAttention",
        "hidden": [256, 256, 128, 64], "activation": "relu", "dropout": 0.1,
        "model_args": {"attention_heads": 8, "use_layer_norm": True, "residual_gate": "sigmoid", "context": None},
        "loss": "mse", "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.01, "optimizer_args": {},
        "scheduler": "reduce_on_plateau", "scheduler_args": {"factor": 0.5, "patience": 10}, "clip_grad": None,
        "epochs": 500, "batch_size": 64, "early_stopping": 30, "seed": 0, "device": "auto", "precision": "32",
        "compile": False, "tensorboard": False, "checkpoint_every": None, "checkpoint_every_steps": None,
        "out": "/home/runner/work/solar-farm-forecasting/runs/gated-residual-attention-2024-q3-all-sites-lr1e-3",
    }  # fmt: skip


def _loss_curve(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    epochs = np.arange(1, 184)
    train = 0.9 * np.exp(-epochs / 25) + 0.02 + 0.003 * rng.random(183)
    return epochs, train, train * 1.15 + 0.01 + 0.004 * rng.random(183)


def regression_page() -> str:
    """A report as a long run on a wide table would have it, with long paths and names."""
    rng = np.random.default_rng(1)
    features = [
        "hour_of_day", "cloud_cover_fraction_from_satellite", "ambient_temperature_celsius",
        "wind_speed_m_per_s", "panel_temperature_celsius", "irradiance_w_per_m2_forecast",
    ]  # fmt: skip
    X = rng.normal(size=(1400, 1))
    y = 50 + 25 * np.sin(X[:, 0] * 2) + rng.normal(0, 4, 1400)
    pred = y + rng.normal(0, 3.5, 1400)
    parts = {"train": slice(0, 980), "val": slice(980, 1190), "test": slice(1190, 1400)}
    metrics = {
        "task": "regression",
        "model": {p: regression_metrics(y[s], pred[s]) for p, s in parts.items()},
        "least_squares": {p: regression_metrics(y[s], 50 + 18 * X[s, 0]) for p, s in parts.items()},
        "rows": {p: s.stop - s.start for p, s in parts.items()},
    }
    e, tr, va = _loss_curve(rng)
    test = parts["test"]
    figures = {
        "Training and validation loss": plots.plot_loss_curves(
            e, tr, va, title="Training and validation loss curves", test_label="Validation loss", log_scale=True,
            best_epoch=153,
        ),
        "Predicted vs actual (test split)": plots.plot_pred_vs_actual(
            y[test], pred[test], title="Predicted vs actual (test)"
        ),
        "Residuals (test split)": plots.plot_residuals(y[test], pred[test], title="Residuals (test)"),
        "Predictions (the tutorial's plot)": plots.plot_predictions(X[:980], y[:980], X[test], y[test], pred[test]),
    }  # fmt: skip
    meta = {
        "architecture": {"class": "my_company.forecasting.models:GatedResidualNetworkWithAttention", "args": {}},
        "parameters": 1284737,
        "preprocessing": {"features": features, "target": ["power_output_kw_inverter_total"]},
    }
    return render_report(
        title="torchwork run gated-residual-attention-2024-q3-all-sites-lr1e-3",
        config=_config(LONG_PATH, "power_output_kw_inverter_total"),
        info=_info(LONG_PATH, 1400, ["Stopped early: the validation loss did not improve for 30 epochs."]),
        metrics=metrics, model_meta=meta, plots=figures,
    )  # fmt: skip


def classification_page() -> str:
    """A classification report: five classes, per-class and confusion tables, columns, notes."""
    rng = np.random.default_rng(2)
    classes = ["Adelie", "Chinstrap", "Gentoo", "Emperor", "Macaroni (Eudyptes chrysolophus)"]
    k, n = len(classes), 900
    centres = rng.normal(0, 2.2, size=(k, 2))
    y = rng.integers(0, k, n)
    X = centres[y] + rng.normal(0, 1, size=(n, 2))

    def proba(Z: np.ndarray, sharp: float = 1.0) -> np.ndarray:
        d = -sharp * ((Z[:, None, :] - centres[None]) ** 2).sum(-1)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    parts = {"train": slice(0, 630), "val": slice(630, 765), "test": slice(765, 900)}
    counts = np.bincount(y[parts["train"]], minlength=k)
    majority = np.tile(np.eye(k)[counts.argmax()] * 0.999 + 0.001 / k, (n, 1))
    majority /= majority.sum(axis=1, keepdims=True)
    metrics: dict[str, Any] = {"task": "classification", "classes": classes, "rows": {}}
    for name, p in (("model", proba(X)), ("logistic_regression", proba(X, 0.3)), ("majority_class", majority)):
        metrics[name] = {part: classification_metrics(y[s], p[s]) for part, s in parts.items()}
    for part, s in parts.items():
        metrics["rows"][part] = s.stop - s.start
    test = parts["test"]
    yb = (y[test] == 1).astype(int)
    curves_roc, curves_pr = {}, {}
    for label, p in (("model", proba(X[test])), ("logistic regression", proba(X[test], 0.3))):
        fpr, tpr, _ = roc_curve(yb, p[:, 1])
        precision, recall, _ = precision_recall_curve(yb, p[:, 1])
        curves_roc[label] = (fpr, tpr, float(np.trapezoid(tpr, fpr)))
        curves_pr[label] = (recall, precision, None)
    e, tr, va = _loss_curve(rng)
    figures = {
        "Training and validation loss": plots.plot_loss_curves(e, tr, va, test_label="Validation loss", best_epoch=153),
        "Confusion matrix (test split)": plots.plot_confusion_matrix(
            metrics["model"]["test"]["confusion_matrix"], classes, title="Confusion matrix (test)"
        ),
        "ROC curves, Chinstrap against the rest (test split)": plots.plot_roc_curves(curves_roc),
        "Precision-recall, Chinstrap against the rest (test split)": plots.plot_pr_curves(curves_pr, chance=yb.mean()),
        "Classes in each split": plots.plot_class_balance(
            {part: np.bincount(y[s], minlength=k).tolist() for part, s in parts.items()}, classes
        ),
        "Decision regions": plots.plot_decision_regions(
            proba, X[parts["train"]], y[parts["train"]], X[test], y[test], classes,
            ["bill_length_mm", "flipper_length_mm"],
        ),
    }  # fmt: skip
    features = ["bill_length_mm", "flipper_length_mm", "island", "sex", "observed_at", "is_breeding_colony"]
    columns = [
        {"name": "bill_length_mm", "kind": "numeric", "detail": "mean 43.9, sd 5.46", "filled": 2},
        {"name": "flipper_length_mm", "kind": "numeric", "detail": "mean 200.9, sd 14.1", "filled": 2},
        {"name": "island", "kind": "categorical", "detail": "3 categories, 0 rare", "filled": 0, "unknown": 0},
        {"name": "sex", "kind": "categorical", "detail": "2 categories, 0 rare", "filled": 11, "unknown": 0},
        {"name": "observed_at", "kind": "datetime", "detail": "2007-11-11 to 2009-12-01; year, month, weekday",
         "filled": 0},
        {"name": "is_breeding_colony", "kind": "boolean", "detail": "61% true", "filled": 0},
    ]  # fmt: skip
    meta = {"architecture": {"name": "mlp", "args": {}}, "parameters": 6213,
            "preprocessing": {"features": features, "target": ["species"]}}  # fmt: skip
    path = LONG_PATH.replace("sensors_all_sites", "penguins_palmer_station_all_islands")
    return render_report(
        title="torchwork run penguins-species-from-measurements-and-islands-2007-2009",
        config=_config(path, "species"), info=_info(path, 900, []), metrics=metrics, model_meta=meta,
        plots=figures, columns=columns,
        notes=[f"13 rows of {path} had no species and were left out.", "Class 'Macaroni' has only 4 training rows."],
    )  # fmt: skip


def _chromium_run(args: list[str], profile: Path) -> str:
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pages")
    out = {}
    for name, page in (("regression", regression_page()), ("classification", classification_page())):
        out[name] = folder / f"{name}.html"
        out[name].write_text(page, encoding="utf-8")
    return out


def _window(width: int, height: int) -> str:
    return f"--window-size={max(width, 800)},{height}"


@pytest.mark.parametrize("kind", ["regression", "classification"])
@pytest.mark.parametrize("size", list(SIZES))
def test_the_report_fits_the_screen(pages, kind, size, tmp_path):
    width, height = SIZES[size]
    page = pages[kind].read_text(encoding="utf-8")
    probe = tmp_path / f"{kind}-probe.html"
    probe.write_text(framed(page, width, height, MEASURE), encoding="utf-8")
    dom = _chromium_run(
        [_window(width, height), "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()], tmp_path / "profile-dom"
    )
    found = re.search(r'<pre id="tw-layout">(.*?)</pre>', dom, re.S)
    assert found, f"the measuring script left no result: {dom[-1500:]}"
    m = json.loads(html.unescape(found.group(1)))
    print(f"\n{kind} at {width}x{height}: {json.dumps({k: v for k, v in m.items() if k != 'images'})}")
    print("images: " + ", ".join(f"{i['width']:.1f}px" for i in m["images"]))
    assert m["innerWidth"] == width, m  # the frame really is this wide
    assert m["scrollWidth"] <= m["clientWidth"] and m["bodyScrollWidth"] <= m["clientWidth"], m
    assert m["overflowing"] == [], m["overflowing"]
    assert m["images"] and all(i["loaded"] for i in m["images"]), m["images"]
    image_widths = [i["width"] for i in m["images"]]
    assert max(image_widths) - min(image_widths) < 1, image_widths  # one width: one size of text in every plot
    if width < 600:
        assert min(image_widths) >= 0.9 * m["contentWidth"], (image_widths, m["contentWidth"])
    else:
        assert 2 * max(image_widths) <= m["contentWidth"], (image_widths, m["contentWidth"])  # two to a row

    # The whole page, for a person to look at: a frame as tall as the page, cut to its width.
    tall = min(int(m["scrollHeight"]), 16000)
    outer = tmp_path / f"{kind}-shot.html"
    outer.write_text(framed(page, width, tall), encoding="utf-8")
    shot = tmp_path / f"report-{kind}-{width}.png"
    _chromium_run(
        ["--hide-scrollbars", _window(width, tall), "--virtual-time-budget=15000", f"--screenshot={shot}",
         outer.as_uri()],
        tmp_path / "profile-shot",
    )  # fmt: skip
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    matplotlib.image.imsave(shot, pixels[:, :width])
    print(f"screenshot: {shot}")
