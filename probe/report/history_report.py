"""``probe history``: the summary table, the figures over training steps, the markdown report.

Reads :class:`probe.experiment.history.History` objects; computes nothing
beyond picking series out of them. Several runs share one set of axes: with one
run each hidden layer has its own colour; with several, each run has its colour
and each layer its line style.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from rich.console import Group
from rich.table import Table
from rich.text import Text

from probe.core.io import StagedOutputs
from probe.experiment.history import History, HistorySummary
from probe.report.figures import PALETTE, colour, new_figure
from probe.report.fmt import fmt, legible_group, pct
from probe.report.markdown import ReportWriter, environment_lines, rich_table_markdown

STYLES = ("-", "--", ":", "-.")
MARKERS = ("", "o", "^", "s")  # with the line styles: 16 layers told apart before any pair repeats
MAX_PANELS = 16


def summary_table(summaries: Sequence[HistorySummary]) -> Table:
    """One row per run and hidden layer: recorded steps, peak window-dead share, grad_ratio start and end."""
    table = Table(title="Training history (probe.track)", title_justify="left", caption_justify="left",
                  caption="dead: share of the layer's units with z<=0 on every sample of the recorded batch. "
                          "window-dead: the same over every batch in the window of recorded steps; peak: its "
                          "largest value and the first step reaching it. grad_ratio: mean |dL/dz| where z<=0 "
                          "over where z>0, at the first and last record.")
    table.add_column("run", justify="left", no_wrap=True)
    for col in ("layer", "units", "first step", "last step", "dead start", "dead end", "peak window-dead",
                "at step", "grad_ratio start", "grad_ratio end"):
        table.add_column(col, justify="right", no_wrap=True)
    for s in summaries:
        if not s.layers:
            table.add_row(Text(s.label), *["—"] * 10)
        for lay in s.layers:
            table.add_row(Text(s.label), str(lay.layer), str(lay.units), str(lay.first_step), str(lay.last_step),
                          pct(lay.dead_rate_start), pct(lay.dead_rate_end), pct(lay.peak_window_dead_share),
                          str(lay.peak_step), fmt(lay.grad_ratio_start), fmt(lay.grad_ratio_end))
    return table


def _lines(summaries: Sequence[HistorySummary]) -> list[Text]:
    out = []
    for s in summaries:
        loss = "" if s.loss_start is None else f"; loss {fmt(s.loss_start)} → {fmt(s.loss_end)}"
        alerts = f"; {s.alerts} alert{'s' if s.alerts != 1 else ''}" if s.alerts else ""
        out.append(Text(f"{s.label}: {s.model or 'model ?'}, every {s.every or '?'} steps, {s.records} records"
                        f"{loss}{alerts}"))
        out.extend(Text(f"note: {n}", style="yellow") for n in s.notes)
    return out


def history_renderable(summaries: Sequence[HistorySummary]) -> Group:
    """The table and one line per run (model, loss at the ends, alerts, notes)."""
    return legible_group(summary_table(summaries), *_lines(summaries))


def _style(run: int, layer: int, runs: int) -> dict:
    if runs == 1:  # colours name the layers; past the palette, the line style changes too
        return {"color": colour(layer), "ls": STYLES[(layer // len(PALETTE)) % len(STYLES)]}
    return {"color": colour(run), **_layer_style(layer)}


def _layer_style(layer: int) -> dict:
    """Several runs: colours name the runs, line style and marker the layer."""
    return {"ls": STYLES[layer % len(STYLES)], "marker": MARKERS[(layer // len(STYLES)) % len(MARKERS)],
            "markersize": 3, "markevery": 0.2}


def _layer_ranges(layers: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``layers 1-3, 6``."""
    parts, start = [], None
    for i, layer in enumerate(layers):
        start = layer if start is None else start
        if i + 1 == len(layers) or layers[i + 1] != layer + 1:
            parts.append(f"{start + 1}" if start == layer else f"{start + 1}-{layer + 1}")
            start = None
    return ("layer " if len(layers) == 1 else "layers ") + ", ".join(parts)


def history_figure(histories: Sequence[History]) -> Figure:
    """Loss, window-dead share, grad_ratio against the slope and the activation route, on one step axis.

    Rows (shared step axis): the loss passed to ``tracker.step``; each hidden
    layer's window-dead share; each layer's grad_ratio on a log axis with the
    nominal slope dashed (a ReLU's ratio is exactly 0 and is named, not drawn);
    the share of output 0's downward mass carried by negative activations (of class
    0's logit margin, for a history recorded with ``sign_target="margin"``).
    """
    fig, axes = new_figure(9.0, 9.0, nrows=4, sharex=True)
    runs = len(histories)
    loss_ax, dead_ax, ratio_ax, route_ax = axes
    ratios: list[float] = []
    zero_ratio = []  # per run with a ReLU layer: its label and those layers
    for r, h in enumerate(histories):
        steps = h.steps()
        loss = h.series("loss")
        if np.any(~np.isnan(loss)):
            loss_ax.plot(steps, loss, color=colour(r) if runs > 1 else "black", lw=1.4, label=h.label)
        slopes, zero_layers = set(), []
        for i in range(h.layers):
            style = _style(r, i, runs)
            dead_ax.plot(steps, 100 * h.series("window_dead_share", i), lw=1.4, label=f"layer {i + 1}", **style)
            ratio = h.series("grad_ratio", i)
            shown = np.where(ratio > 0, ratio, np.nan)
            if np.any(~np.isnan(shown)):
                ratio_ax.plot(steps, shown, lw=1.2, **style)
                ratios.extend(shown[~np.isnan(shown)].tolist())
            elif np.any(ratio == 0):
                zero_layers.append(i)
            slopes.update(s for s in h.series("negative_slope", i) if s is not None and s > 0)
        if zero_layers:
            zero_ratio.append(_layer_ranges(zero_layers) if runs == 1 else f"{h.label}, {_layer_ranges(zero_layers)}")
        for slope in sorted(slopes):  # a broad pale band: line styles belong to the layers
            ratio_ax.axhline(slope, color=colour(r) if runs > 1 else "grey", lw=5, alpha=0.25)
            ratios.append(slope)
        route = h.sign_series("activation_route_share")
        if np.any(~np.isnan(route)):
            route_ax.plot(steps, 100 * route, color=colour(r) if runs > 1 else "black", lw=1.4, label=h.label)
    loss_ax.set_ylabel("loss")
    if loss_ax.lines and all(np.nanmin(line.get_ydata()) > 0 for line in loss_ax.lines):
        loss_ax.set_yscale("log")
    if not loss_ax.lines:
        loss_ax.text(0.5, 0.5, "no loss recorded (tracker.step(loss) records it)", ha="center", va="center",
                     transform=loss_ax.transAxes)
    dead_ax.set_ylabel("window-dead units (%)")
    dead_ax.set_ylim(bottom=0)
    ratio_ax.set_ylabel("grad_ratio")
    if ratios:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ratio_ax.set_yscale("log")
        ratio_ax.set_ylim(min(ratios) / 3, min(max(ratios) * 3, 10.0))
        ratio_ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ratio_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ratio_ax.yaxis.set_minor_formatter(NullFormatter())
    note = "pale band: nominal slope" if ratios else ""
    if zero_ratio:
        note = (note + "; " if note else "") + "exactly 0 (ReLU): " + "; ".join(zero_ratio)
    if note:
        ratio_ax.text(0.01, 0.04 if ratios else 0.5, textwrap.fill(note, 90), transform=ratio_ax.transAxes,
                      fontsize=8, va="bottom" if ratios else "center")
    route_ax.set_ylabel("act. route (%)")
    route_ax.set_xlabel("training step")
    route_ax.set_ylim(bottom=0)
    loss_ax.set_title("Training history: loss, dead units, negative-side gradient, sign routes", loc="left")
    ratio_ax.set_title("grad_ratio = mean|g| (z≤0) / mean|g| (z>0)", loc="left", fontsize=9)
    targets = {h.header.get("sign_target", "logit") for h in histories}
    of = {"logit": "output 0", "margin": "class 0's logit margin"}
    route_ax.set_title(f"share of {' / '.join(of.get(t, str(t)) for t in sorted(targets))}'s downward mass "
                       "through negative activations", loc="left", fontsize=9)
    dead_ax.set_title("units inactive on every sample of every batch in the window", loc="left", fontsize=9)
    if runs == 1:
        handles, labels = dead_ax.get_legend_handles_labels()
    else:  # colours name the runs, line styles the layers
        from matplotlib.lines import Line2D

        depth = max(h.layers for h in histories)
        handles = [Line2D([], [], color=colour(r), lw=2) for r in range(runs)] + \
                  [Line2D([], [], color="black", lw=1.2, **_layer_style(i)) for i in range(depth)]
        labels = [h.label for h in histories] + [f"layer {i + 1}" for i in range(depth)]
    if handles:
        fig.legend(handles, labels, fontsize=8, loc="outside right upper")
    return fig


def dead_figure(histories: Sequence[History]) -> Figure:
    """Per hidden layer: the share of units dead on the recorded batch (thin) and window-dead (thick)."""
    n = max((h.layers for h in histories), default=0)
    shown = min(max(n, 1), MAX_PANELS)
    ncols = min(shown, 4)
    nrows = -(-shown // ncols)
    fig, axes = new_figure(3.2 * ncols + 1.6, 2.5 * nrows + 0.8, ncols=ncols, nrows=nrows, sharex=True,
                           squeeze=False)
    flat = axes.ravel()
    for i, ax in enumerate(flat):
        if i >= shown:
            ax.set_visible(False)
            continue
        for r, h in enumerate(histories):
            if i >= h.layers:
                continue
            steps = h.steps()
            ax.plot(steps, 100 * h.series("dead_rate", i), color=colour(r), lw=0.8, alpha=0.5)
            ax.plot(steps, 100 * h.series("window_dead_share", i), color=colour(r), lw=1.8,
                    label=h.label if i == 0 else None)
        ax.set_title(f"layer {i + 1}", fontsize=9)
        ax.set_ylim(bottom=0)
    if n > MAX_PANELS:
        fig.suptitle(f"first {MAX_PANELS} of {n} hidden layers", fontsize=9)
    fig.supxlabel("training step", fontsize=9)
    fig.supylabel("% of the layer's units", fontsize=9)
    if histories:
        fig.legend(fontsize=8, loc="outside right upper",
                   title="thick: window-dead\nthin: dead on the batch", title_fontsize=8)
    return fig


def write_history_report(histories: Sequence[History], path: str | Path, command: str,
                         outputs: StagedOutputs | None = None) -> Path:
    """Write ``path`` (markdown) with the summary table and the figures; atomic."""
    summaries = [h.summary() for h in histories]
    with ReportWriter(path, outputs) as rw:
        runs = "\n".join(f"- `{s.label}`: {s.path} ({s.model or 'model ?'}, every {s.every or '?'} steps, "
                         f"{s.records} records{', ' + str(s.alerts) + ' alerts' if s.alerts else ''})"
                         for s in summaries)
        rw.add("# probe history", "\n".join(environment_lines(command)), runs,
               rich_table_markdown(summary_table(summaries), heading=2))
        notes = [n for s in summaries for n in s.notes]
        if notes:
            rw.add("\n".join(f"- note: {n}" for n in notes))
        if any(h.records for h in histories):
            rw.add("## Over training")
            rw.figure(history_figure(histories), "history.png",
                      "loss, window-dead share, grad_ratio and activation route over training steps")
            rw.add("## Dead units per layer")
            rw.figure(dead_figure(histories), "dead.png", "dead and window-dead share per hidden layer")
    return rw.path
