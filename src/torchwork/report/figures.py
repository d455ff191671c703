"""The figure style every plot shares: its size, fonts and colours, and PNG bytes out.

Figures use matplotlib's object API with the Agg canvas: no display, no global pyplot state.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from torchwork.files.atomic import atomic_write

FIGSIZE = (5.6, 3.9)  # inches; every plot has this width (some are taller)
DPI = 150
TITLE_SIZE, LABEL_SIZE, TICK_SIZE, LEGEND_SIZE, NOTE_SIZE = 12.0, 10.5, 9.5, 9.0, 8.5

# The tutorial's colours: training data blue, testing data green, predictions red.
TRAIN_COLOUR, VAL_COLOUR, TEST_COLOUR, PRED_COLOUR = "#1f5fbf", "#d98a1a", "#2a9d3c", "#d62728"
SPLIT_COLOURS = {"train": TRAIN_COLOUR, "val": VAL_COLOUR, "test": TEST_COLOUR}
CURVE_COLOURS = ("#1f5fbf", "#d98a1a", "#7b4fb0", "#2a9d3c", "#c2417a", "#6b6b6b")
# Pale region colours, neither blue nor green, so that the data's markers stand out on them.
REGION_COLOURS = ("#f6c9a3", "#d8c6ee", "#f5b5c4", "#f1e29a", "#d9d9d9", "#cdb59c", "#bfe3e6", "#f0c2ee")
CLASS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


MAX_POINTS = 5000  # a scatter draws at most this many rows: more is one blot, and costs memory and time


def point_sample(n: int, limit: int = MAX_POINTS) -> np.ndarray | None:
    """Which of ``n`` rows a scatter draws: None for all of them, else ``limit`` rows drawn at random
    (seeded: the same rows every time), in row order."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))


def sample_note(ax: Any, shown: int, n: int) -> None:
    """Say on the plot that it draws a sample of the rows."""
    ax.annotate(f"{shown:,} of {n:,} rows shown, at random", xy=(0.01, 0.01), xycoords="axes fraction",
                fontsize=NOTE_SIZE, color="#555555", va="bottom", ha="left")  # fmt: skip


def new_figure(figsize: tuple[float, float] = FIGSIZE) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def style_axes(*axes: Any) -> None:
    """The same font sizes on every plot (set on each element: no global rcParams)."""
    for ax in axes:
        ax.title.set_fontsize(TITLE_SIZE)
        ax.xaxis.label.set_fontsize(LABEL_SIZE)
        ax.yaxis.label.set_fontsize(LABEL_SIZE)
        ax.tick_params(labelsize=TICK_SIZE)
        ax.xaxis.get_offset_text().set_fontsize(TICK_SIZE)
        ax.yaxis.get_offset_text().set_fontsize(TICK_SIZE)
        legend = ax.get_legend()
        if legend is not None:
            for text in legend.get_texts():
                text.set_fontsize(LEGEND_SIZE)


def png_bytes(fig: Any, path: str | os.PathLike[str] | None) -> bytes:
    buf = io.BytesIO()
    # No bbox_inches="tight": every PNG keeps the figure's exact width, so text scales alike on the page.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    data = buf.getvalue()
    if path is not None:
        atomic_write(path, data)
    return data


def as_numpy(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def shorten(name: Any, limit: int = 16) -> str:
    """A class name for a tick label or a legend: long ones cut, so that they leave room for the plot."""
    text = str(name)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def class_labels(class_names: Sequence[Any] | None, n: int) -> list[str]:
    """Class names as plots show them (cut to 16 characters)."""
    if class_names is None:
        return [f"class {k}" for k in range(n)]
    if len(class_names) != n:
        raise ValueError(f"class_names: expected {n} names, got {len(class_names)}")
    return [shorten(c) for c in class_names]


def percent_formatter() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)
