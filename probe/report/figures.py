"""One matplotlib style for every probe figure (non-interactive backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # never open a window; reports are written from terminals and CI

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

#: Colour per variant family, stable across figures.
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}


def new_figure(width: float = 6.4, height: float = 4.0, ncols: int = 1) -> tuple[Figure, object]:
    """A figure in probe's style with ``ncols`` side-by-side axes."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=True,
                                 constrained_layout=True)
    return fig, axes


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]
