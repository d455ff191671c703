"""The report at a phone's width, 390 px, in a real browser (issue 18, item 28): no number or date
is broken across lines, and the plots' smallest text shows at 10 CSS px or more.

Uses the harness of ``test_report_layout`` (Chromium in a frame of exactly the width measured).
"""

from __future__ import annotations

import html
import json
import re

import pytest

from tests.report import test_report_layout as layout
from torchwork.report import plots
from torchwork.report.html import render_report

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(layout.CHROMIUM is None, reason="needs Chromium (apt-get install -y chromium)"),
]
WIDTH, HEIGHT = 390, 844

# Each number or date in the page's text, and whether its letters lie on more than one line.
TOKENS = r"/\d{4}-\d{2}-\d{2}T[\d:+]+|\d[\d.,]*e[-+]\d+|(^|[^\w.])[-−]\d[\d.,]*/g"
MEASURE = (
    r"""<script>
(function () {
  function measure() {
    var broken = [], seen = 0, walker = document.createTreeWalker(document.querySelector('main'), NodeFilter.SHOW_TEXT);
    var texts = [];
    for (var n = walker.nextNode(); n; n = walker.nextNode()) texts.push(n);
    // a token may span several text nodes (<span>, <wbr>): measure each element's whole text
    var blocks = document.querySelectorAll('main p, main li, main td, main th, main .verdict, main .card b');
    for (var i = 0; i < blocks.length; i++) {
      var el = blocks[i], text = el.textContent, re = """
    + TOKENS
    + r""", m;
      while ((m = re.exec(text)) !== null) {
        var token = m[0].replace(/^[^\d−-]/, ''), start = m.index + m[0].length - token.length;
        var range = document.createRange(), pos = 0, startSet = false;
        var w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
        for (var t = w.nextNode(); t; t = w.nextNode()) {
          var len = t.textContent.length;
          if (!startSet && start < pos + len) { range.setStart(t, start - pos); startSet = true; }
          if (startSet && start + token.length <= pos + len) { range.setEnd(t, start + token.length - pos); break; }
          pos += len;
        }
        var rects = Array.prototype.filter.call(range.getClientRects(), function (r) { return r.width > 0; });
        var tops = rects.map(function (r) { return Math.round(r.top); });
        seen++;
        if (Math.max.apply(null, tops) - Math.min.apply(null, tops) > 2) broken.push(token + ' in ' + el.tagName);
      }
    }
    var images = Array.prototype.map.call(document.images, function (im) {
      return {alt: im.alt, shown: im.getBoundingClientRect().width, natural: im.naturalWidth};
    });
    parent.postMessage(JSON.stringify({broken: broken, seen: seen, images: images, width: window.innerWidth}), '*');
  }
  if (document.readyState === 'complete') measure(); else window.addEventListener('load', measure);
})();
</script>"""
)


def _smallest_text_pt(monkeypatch) -> dict[int, float]:
    """Records, per PNG made, the smallest visible text on it, in points (after the figure is drawn)."""
    smallest: dict[int, float] = {}
    save = plots.png_bytes

    def spy(fig, path):
        from matplotlib.text import Text

        fig.canvas.draw()
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
                 and t.get_window_extent().width > 0]  # fmt: skip
        data = save(fig, path)
        smallest[len(data)] = min(sizes)
        return data

    monkeypatch.setattr(plots, "png_bytes", spy)
    return smallest


def _tiny_numbers_page() -> str:
    """A regression whose least squares fits almost exactly: MSEs like 6.923e-07, negative R², a date."""
    part = {"mae": 6.1e-04, "mse": 6.923e-07, "rmse": 8.32e-04, "r2": -0.108}
    metrics = {"task": "regression", "model": {"test": part, "train": part},
               "least_squares": {"test": {**part, "mse": 1e-20}, "train": {**part, "mse": 2.5e-21}},
               "rows": {"train": 180, "test": 32}}  # fmt: skip
    info = layout._info(layout.LONG_PATH, 212, ["the model's MSE is 6.923e-07 against 1e-20 on 2026-11-28"])
    return render_report(title="tiny", config=layout._config(layout.LONG_PATH, "y"), info=info, metrics=metrics,
                         model_meta={"preprocessing": {"features": ["a"], "target": ["y"]}}, plots={})  # fmt: skip


def _measure(page: str, tmp_path) -> dict:
    probe = tmp_path / "probe.html"
    probe.write_text(layout.framed(page, WIDTH, HEIGHT, MEASURE), encoding="utf-8")
    dom = layout._chromium_run([layout._window(WIDTH, HEIGHT), "--virtual-time-budget=15000", "--dump-dom",
                                probe.as_uri()], tmp_path / "profile")  # fmt: skip
    found = re.search(r'<pre id="tw-layout">(.*?)</pre>', dom, re.S)
    assert found, dom[-1500:]
    return json.loads(html.unescape(found.group(1)))


def test_no_number_or_date_is_broken_across_lines_at_390_px(tmp_path):
    for page in (_tiny_numbers_page(), layout.regression_page(), layout.classification_page()):
        m = _measure(page, tmp_path)
        assert m["width"] == WIDTH and m["seen"] > 0, m
        assert m["broken"] == [], m["broken"]


def test_plot_text_is_at_least_10_px_at_390_px(tmp_path, monkeypatch):
    smallest = _smallest_text_pt(monkeypatch)
    for page in (layout.regression_page(), layout.classification_page()):
        m = _measure(page, tmp_path)
        assert m["images"], m
        for image in m["images"]:
            # the PNG's pixels per point (DPI / 72), times the page's CSS px per PNG pixel
            scale = plots.DPI / 72 * image["shown"] / image["natural"]
            sizes = [pt * scale for pt in smallest.values()]
            assert min(sizes) >= 9.95, (image["alt"], round(min(sizes), 2), image)
