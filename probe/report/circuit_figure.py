"""A readable PNG of one group's circuit: layered layout, strongest edges only.

Layers are columns (inputs left, output right); units are spread evenly down
each column. Edges are coloured by the sign of their contribution
``W[k, j] * mean(a_j)`` (blue pushes the receiving unit up, red down) and
their width grows with its magnitude relative to the strongest edge of the
same layer. Only the ``top_edges`` strongest edges are drawn, split evenly
over the Linear layers so that every layer stays visible (edges into the
outputs: only those into output K). Node colour is the unit's mean
attribution of output K; a black ring marks the 90% circuit.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from probe.circuit.result import CircuitResult, contributions
from probe.circuit.validate import check_positive_int
from probe.core.io import atomic_write_bytes

POSITIVE_COLOUR, NEGATIVE_COLOUR = "#2166ac", "#b2182b"  # edges: blue pushes its receiver up, red down
NODE_CMAP = "PuOr"  # nodes: orange pushes output K down, purple up (other hues than the edges' meaning)
LABEL_ALL_UP_TO = 16  # wider layers label only their strongest units, so text never overlaps


def _positions(widths: list[int]) -> list[np.ndarray]:
    """y of every unit per layer, spread over [0, 1] top to bottom."""
    return [1.0 - (np.arange(n) + 0.5) / n for n in widths]


def _strongest(contrib: np.ndarray, keep: int) -> list[tuple[int, int]]:
    """(receiver, sender) of the ``keep`` largest |contributions|, ties to lower indices."""
    flat = np.abs(contrib).ravel()
    order = np.argsort(-flat, kind="stable")[:keep]
    return [tuple(int(v) for v in divmod(int(i), contrib.shape[1])) for i in order if flat[i] > 0]


def draw_circuit(result: CircuitResult, path: str | Path, group: str = "negative", *,
                 top_edges: int = 240, dpi: int = 150) -> Path:
    """Draw one group's circuit to a PNG file, atomically (see :func:`circuit_figure`).

    Returns:
        The path written.
    """
    fig = circuit_figure(result, group, top_edges=top_edges, dpi=dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())


def circuit_figure(result: CircuitResult, group: str = "negative", *, top_edges: int = 240,
                   dpi: int = 150, ax=None) -> Figure:
    """One group's circuit as a matplotlib ``Figure`` (no pyplot, no global backend).

    Args:
        result: From :func:`probe.circuit.trace_circuit`.
        group: ``negative`` or ``positive``.
        top_edges: How many edges to draw in all (split evenly over the layers).
        dpi: Resolution.
        ax: Draw into these matplotlib axes (a notebook's own; the colour bar and
            legend go to its figure); default: a new figure.
    """
    check_positive_int("top_edges", top_edges)
    circ = result.group(group)
    widths = list(result.widths)
    ys = _positions(widths)
    n_lin = len(result.weights)
    contribs = contributions(result.weights, circ)
    contribs[-1] = np.where(np.arange(widths[-1])[:, None] == result.output, contribs[-1], 0.0)

    # capped width: a deep network gets narrower columns rather than an unreadable strip
    own = ax is None
    if own:
        fig = Figure(figsize=(min(2.4 * len(widths) + 2.0, 14.0), 8.0), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.04, 0.08, 0.80, 0.80))
    else:
        fig = ax.figure
    ax.set_xlim(-0.35, len(widths) - 0.5)
    ax.set_ylim(-0.03, 1.03)
    ax.axis("off")

    per_layer = max(1, top_edges // n_lin)
    for li, c in enumerate(contribs):
        edges = _strongest(c, per_layer)
        peak = max((abs(c[k, j]) for k, j in edges), default=0.0)
        for k, j in reversed(edges):  # strongest drawn last, on top
            mag = abs(c[k, j]) / peak
            ax.plot([li, li + 1], [ys[li][j], ys[li + 1][k]], lw=0.3 + 2.7 * mag, alpha=0.25 + 0.6 * mag,
                    color=POSITIVE_COLOUR if c[k, j] > 0 else NEGATIVE_COLOUR, solid_capstyle="round",
                    zorder=1 + mag)

    attr = np.concatenate([np.asarray(lay.mean_attribution) for lay in circ.layers[:-1]])
    span = float(np.abs(attr).max()) if attr.size and np.abs(attr).max() > 0 else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span)
    scatter = None
    for lay in circ.layers:
        n = lay.units
        values = np.asarray(lay.mean_attribution) if lay.kind != "output" else np.zeros(n)
        ring = np.isin(np.arange(n), lay.circuit_units)
        size = 60 if n <= LABEL_ALL_UP_TO else 22
        scatter = ax.scatter(np.full(n, lay.layer), ys[lay.layer], c=values, cmap=NODE_CMAP, norm=norm, s=size,
                             edgecolors=np.where(ring, "black", "#999999"), linewidths=np.where(ring, 1.1, 0.4),
                             zorder=5)
        if lay.kind == "output":
            label_units = [result.output]
        elif n <= LABEL_ALL_UP_TO:
            label_units = list(range(n))
        else:
            label_units = list(np.argsort(-np.asarray(lay.mean_abs_attribution), kind="stable")[:4])
        for u in label_units:
            ax.annotate(str(u), (lay.layer, ys[lay.layer][u]), xytext=(5, 0), textcoords="offset points",
                        fontsize=7, va="center", zorder=6,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
        crowded = len(widths) > 6  # narrow columns: short labels, the legend explains them
        title = ("inputs" if lay.kind == "input" else f"output {result.output}" if lay.kind == "output"
                 else f"h{lay.layer}" if crowded else f"hidden {lay.layer}")
        size_note = "" if lay.kind == "output" else (f"\n{len(lay.circuit_units)}/{n}" if crowded
                                                       else f"\n{len(lay.circuit_units)}/{n} in circuit")
        ax.text(lay.layer, 1.05, title + size_note, ha="center", va="bottom", fontsize=8 if crowded else 9)

    cbar = fig.colorbar(scatter, cax=fig.add_axes((0.87, 0.30, 0.015, 0.45))) if own else \
        fig.colorbar(scatter, ax=ax, fraction=0.03)
    cbar.set_label(f"mean attribution of output {result.output}\n(orange: pushes it down, purple: up)",
                   fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    handles = [Line2D([], [], color=POSITIVE_COLOUR, lw=2, label="edge: contribution > 0 (pushes its receiver up)"),
               Line2D([], [], color=NEGATIVE_COLOUR, lw=2, label="edge: contribution < 0 (pushes its receiver down)"),
               Line2D([], [], ls="", marker="o", mfc="white", mec="black",
                      label="in 90% circuit (k/n above each layer; by mean |attribution|, fill = signed mean)")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Sign circuit of output {result.output}, {circ.name} predictions "
                 f"({circ.samples} samples, {result.activation}); "
                 + ("all edges" if per_layer >= max(c.size for c in contribs)
                    else f"strongest {per_layer} edges per layer by |W·mean a|"), fontsize=10)
    return fig


plot_circuit = circuit_figure
