"""One matplotlib style for every probe figure, on plain ``Figure`` objects.

Figures are built as ``matplotlib.figure.Figure`` (as scikit-learn's Display
objects do), never through pyplot: importing probe or drawing a report leaves
matplotlib's global backend and state alone, and a figure function given an
``ax`` draws into the caller's own axes.
"""

from __future__ import annotations

import matplotlib
from matplotlib.figure import Figure

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


def new_figure(width: float = 6.4, height: float = 4.0, ncols: int = 1, nrows: int = 1,
               **subplots) -> tuple[Figure, object]:
    """A figure in probe's style with ``nrows x ncols`` axes (squeezed, like ``plt.subplots``)."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(nrows, ncols, **{"squeeze": True, **subplots})
    return fig, axes


def figure_and_axes(ax, width: float, height: float) -> tuple[Figure, object]:
    """The caller's ``ax`` and its figure, or a new styled figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    return new_figure(width, height)


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]
