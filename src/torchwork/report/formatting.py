"""How the report page writes values: numbers, JSON spellings, escaped text that wraps, tables in a
scrolling box, and plots as data URIs.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import struct
from typing import Any


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


def percent(value: float) -> str:
    return f"{value:.1%}"


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]
