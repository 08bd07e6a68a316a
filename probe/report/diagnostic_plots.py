"""Figures of one or more networks' diagnostics (used by analyze and compare reports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from probe.diagnostics import NetworkDiagnostics
from probe.report.figures import colour, figure_and_axes, new_figure


def grad_ratio_figure(groups: Mapping[str, Sequence[NetworkDiagnostics]], ax=None) -> Figure:
    """Measured grad_ratio per hidden layer against each variant's nominal slope.

    One dot per network and layer. A fixed-slope variant gets a dashed line at
    its slope (the local-derivative ratio: 0.01 means "100x smaller"); a learned
    (PReLU) slope differs per network and layer, so each of its dots gets a
    short tick at that layer's own learned slope instead, and a smooth
    activation (GELU, ELU, ...) a tick at its measured mean derivative over the
    negative region (``local_slope_neg``). ReLU's ratio is
    exactly 0, which a log axis cannot show: it is named in the legend only.

    Args:
        groups: Label -> the diagnostics of its networks (one for ``probe analyze``).
        ax: Draw into these matplotlib axes (a notebook's own); default: a new figure.
    """
    fig, ax = figure_and_axes(ax, 7.6, 4.0)
    n_layers = max(len(d.layers) for ds in groups.values() for d in ds)
    values: list[float] = []
    for i, (label, diags) in enumerate(groups.items()):
        # learned (PReLU) or measured (smooth kinds: mean f'(z) over z<=0) slopes differ per layer: ticks
        learned = label.startswith("prelu") or any(lay.negative_slope is None for d in diags for lay in d.layers)
        measured = any(lay.negative_slope is None and lay.prelu_slopes is None for d in diags for lay in d.layers)
        xs, ys, ticks = [], [], []
        for n, d in enumerate(diags):
            # learned slopes differ per network: spread its networks so each dot keeps its tick
            spread = 0.1 * (n / max(len(diags) - 1, 1) - 0.5) if learned else 0.0
            for lay in d.layers:
                r = lay.gradient.grad_ratio if lay.gradient else None
                if r is None or r <= 0:
                    continue
                xs.append(lay.index + 1 + 0.12 * (i - (len(groups) - 1) / 2) + spread)
                ys.append(r)
                ticks.append(_slope(lay))
        slope = _slope(diags[0].layers[0]) if diags and diags[0].layers else 0.0
        if slope <= 0 and not learned:
            ax.scatter([], [], s=18, color=colour(i), label=f"{label}: exactly 0 (not on a log axis)")
            continue
        name = (f"{label} (mean f'(z≤0): ticks)" if measured else f"{label} (learned slopes: ticks)") if learned \
            else f"{label} (nominal {slope:.3g}, dashed)"
        values.extend(ys)
        ax.scatter(xs, ys, s=18, alpha=0.7, color=colour(i), label=name, zorder=3)
        if learned:  # a learned slope <= 0 has no place on a log axis: its dot stands alone
            shown = [(x, y, t) for x, y, t in zip(xs, ys, ticks) if t > 0]
            if shown:
                tx, ty, tt = zip(*shown)
                ax.scatter(tx, tt, marker="_", s=60, color=colour(i), alpha=0.9, zorder=2)
                ax.vlines(tx, ty, tt, color=colour(i), lw=0.5, alpha=0.6, zorder=1)
                values.extend(tt)
        else:
            ax.axhline(slope, color=colour(i), ls="--", lw=1)
            values.append(slope)
    if not values:  # ReLU only: every ratio is exactly 0, which a log axis cannot show
        ax.text(0.5, 0.5, "grad_ratio is exactly 0 in every layer:\nno gradient passes the negative "
                "side of a ReLU", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    else:  # at least a factor of 3 either side, so the lines and dots read clearly
        ax.set_yscale("log")
        ax.set_ylim(min(values) / 3, min(max(values) * 3, 10.0))
    ax.set_xticks(layer_ticks(n_layers))
    ax.set_xlim(0.5, n_layers + 0.5)
    ax.set_xlabel("hidden layer")
    ax.set_ylabel("grad_ratio = mean|g| (z≤0) / mean|g| (z>0)")
    ax.set_title("Negative-side gradient vs nominal slope", loc="left")
    fig.legend(fontsize=8, loc="outside right upper")
    return fig


def sign_routes_figure(shares: Mapping[str, float | None], output: int = 0,
                       negative_only: bool = True) -> Figure:
    """Stacked bars of the final layer's downward mass: negative weights vs negative activations.

    Each bar is a label's ``activation_route_share`` (``pos_neg``, W>0, h<0) and
    its complement (``neg_pos``, W<0, h>0) in the downward mass, over the samples
    predicted negative (or all samples): one network's value, or a variant's
    median from its summary. None: not measured (no negative prediction).
    """
    fig, ax = new_figure(6.4, 3.6)
    labels = list(shares)
    measured = [shares[k] is not None for k in labels]
    act_share = [float(shares[k]) if shares[k] is not None else 0.0 for k in labels]
    weight_share = [1 - a if ok else 0.0 for a, ok in zip(act_share, measured)]
    x = np.arange(len(labels))
    if not any(weight_share) and not any(act_share):
        ax.text(0.5, 0.5, f"no sample is predicted negative for output {output}", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    width = 0.6
    # route colours stay clear of the per-variant palette
    ax.bar(x, weight_share, width, color="#8c8c8c", label="negative weight (W<0, h>0)")
    ax.bar(x, act_share, width, bottom=weight_share, color="#e0b000",
           label="negative activation (W>0, h<0), % above bar")
    ax.set_xlim(-0.75, len(labels) - 0.25)
    for xi, a, ok in zip(x, act_share, measured):
        ax.text(xi, 1.01, f"{100 * a:.1f}%" if ok else "no negative\npredictions", ha="center",
                va="bottom", fontsize=8)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("share of the downward mass")
    subset = "samples predicted negative" if negative_only else "all samples"
    ax.set_title(f"How output {output} is pushed negative ({subset})")
    fig.legend(fontsize=8, loc="outside lower center", ncols=2)
    return fig


MAX_PANELS = 16  # past this many hidden layers, the histograms become one heatmap


def layer_ticks(n_layers: int, most: int = 12) -> list[int]:
    """Hidden-layer numbers to label on an axis: all of them up to ``most``, else an even subset."""
    step = max(1, -(-n_layers // most))
    return list(range(1, n_layers + 1, step))


def active_fraction_figure(diag: NetworkDiagnostics) -> Figure:
    """Histogram of per-unit active fractions per hidden layer.

    Panels wrap four to a row, so 1 to 16 layers stay legible; deeper networks
    get one heatmap (layer x active-fraction bin, colour = share of the layer's
    units) instead. Counts are shown as shares of the layer's units, so a
    1024-wide layer reads like a 4-wide one.
    """
    n = len(diag.layers)
    if n > MAX_PANELS:
        return _active_fraction_heatmap(diag)
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = new_figure(3.0 * ncols + 0.6, 2.4 * nrows + 0.6, ncols=ncols, nrows=nrows, sharex=True,
                           sharey=True, squeeze=False)
    flat = axes.ravel()
    for ax, lay in zip(flat, diag.layers):
        hist = np.asarray(lay.activity.active_fraction_histogram, dtype=float)
        edges = np.linspace(0, 1, len(hist) + 1)
        ax.bar(edges[:-1], 100 * hist / max(hist.sum(), 1), width=edges[1] - edges[0], align="edge",
               color=colour(0), edgecolor="white")
        ax.set_title(f"layer {lay.index + 1}: {lay.activity.dead_units}/{lay.units} dead", fontsize=9)
    for ax in flat[n:]:
        ax.set_visible(False)
    fig.supxlabel("fraction of samples with z > 0 (per unit)", fontsize=9)
    fig.supylabel("% of the layer's units", fontsize=9)
    return fig


def _active_fraction_heatmap(diag: NetworkDiagnostics) -> Figure:
    n = len(diag.layers)
    fig, ax = new_figure(7.0, min(0.25 * n + 1.5, 9.0))
    rows = []
    for lay in diag.layers:
        hist = np.asarray(lay.activity.active_fraction_histogram, dtype=float)
        rows.append(100 * hist / max(hist.sum(), 1))
    image = ax.imshow(np.array(rows), aspect="auto", cmap="viridis", origin="upper",
                      extent=(0.0, 1.0, n + 0.5, 0.5))
    ax.set_yticks(layer_ticks(n, most=20))
    ax.set_xlabel("fraction of samples with z > 0 (per unit)")
    ax.set_ylabel("hidden layer")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="% of the layer's units")
    return fig


plot_grad_ratio = grad_ratio_figure


def _slope(layer) -> float:
    """The nominal slope, else the measured mean derivative over the negative region (smooth kinds)."""
    if layer.negative_slope is not None:
        return layer.negative_slope
    return layer.activity.local_slope_neg or 0.0
