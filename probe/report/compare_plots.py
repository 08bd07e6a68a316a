"""Figures of a ``probe compare`` result. They draw what the result holds: every median and interval
comes from its summaries (:mod:`probe.compare.summaries`).
"""

from __future__ import annotations


import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from probe.compare.results import CompareResult
from probe.core.errors import ProbeError
from probe.report.figures import colour, figure_and_axes, new_figure


def _check_result(result: object) -> None:
    """These figures draw a compare result; anything else gets a ProbeError that says so."""
    if not isinstance(result, CompareResult):
        raise ProbeError("This figure draws a comparison of variants",
                         expected="the result of probe.compare_variants(...)", found=type(result).__name__,
                         fix="for one model's analysis use probe.plot_grad_ratio({'name': [result.diagnostics]})")


def _by_variant(result: CompareResult) -> dict[str, list]:
    groups: dict[str, list] = {v.label: [] for v in result.variants}
    for run in result.runs:
        groups[run.variant].append(run)
    return groups


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def loss_curves_figure(result: CompareResult, ax=None) -> Figure:
    """Training loss per epoch: median over seeds, interquartile band, log scale, target marked.

    Args:
        result: A compare result.
        ax: Draw into these matplotlib axes (a notebook's own); default: a new figure.
    """
    _check_result(result)
    fig, ax = figure_and_axes(ax, 8.4, 4.0)
    for i, s in enumerate(result.summaries):
        med = _floats(s.loss_curve_median)
        if med.size == 0 or np.all(np.isnan(med)):
            continue
        epochs = np.arange(1, med.size + 1)
        ax.plot(epochs, med, color=colour(i), lw=1.8, label=f"{s.variant} (median of {s.runs} seeds)")
        ax.fill_between(epochs, _floats(s.loss_curve_q1), _floats(s.loss_curve_q3), color=colour(i),
                        alpha=0.18, lw=0)
    target = result.scenario.train.target_loss
    if target is not None:  # None: the target is an accuracy
        ax.axhline(target, color="black", ls=":", lw=1.2, label=f"target loss {target:g}")
    from matplotlib.ticker import MaxNLocator

    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"epoch ({result.steps_per_epoch} optimizer steps each)")
    ax.set_ylabel("training loss (mean over the epoch)")
    ax.set_title(f"{result.scenario.name}: loss curves (band = interquartile range)")
    fig.legend(fontsize=8, loc="outside right upper")
    return fig


def steps_paired_figure(result: CompareResult, ax=None) -> Figure:
    """Steps to target per seed, one grey line per seed joining the variants.

    A run that never reached the target is drawn as a hollow marker on the
    'not reached' line above the training budget.
    """
    _check_result(result)
    groups = _by_variant(result)
    labels = list(groups)
    fig, ax = figure_and_axes(ax, max(4.0, 1.4 * len(labels) + 2.5), 4.0)
    never = result.budget * 1.08
    seeds = sorted({r.seed for r in result.runs})
    for seed in seeds:
        ys = [next((r.steps_to_target for r in groups[lab] if r.seed == seed), None) for lab in labels]
        ax.plot(range(len(labels)), [never if y is None else y for y in ys], color="grey", alpha=0.45, lw=1)
    for i, lab in enumerate(labels):
        reached = [r.steps_to_target for r in groups[lab] if r.steps_to_target is not None]
        missed = sum(r.steps_to_target is None for r in groups[lab])
        ax.scatter([i] * len(reached), reached, color=colour(i), s=22, zorder=3)
        if missed:
            ax.scatter([i], [never], facecolors="none", edgecolors=colour(i), s=60, zorder=3,
                       label=f"{lab}: {missed} run(s) never reached the target")
            ax.annotate(f"x{missed}", (i, never), xytext=(7, -3), textcoords="offset points", fontsize=8)
    missed_any = any(r.steps_to_target is None for r in result.runs)
    if missed_any:  # show the budget and the 'not reached' level only when they carry runs
        ax.axhline(result.budget, color="black", ls=":", lw=1)
        ax.text(len(labels) - 0.5, result.budget, "budget ", va="bottom", ha="right", fontsize=8)
        ax.text(-0.45, never, "not reached", va="bottom", ha="left", fontsize=8, color="grey")
        ax.set_ylim(0, never * 1.08)
    else:
        reached = [r.steps_to_target for r in result.runs]
        pad = max(1.0, 0.08 * (max(reached) - min(reached)))
        ax.set_ylim(min(reached) - pad, max(reached) + pad)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_ylabel("optimizer steps to target loss")
    ax.set_title("Steps to target, paired by seed (one line per seed)")
    if any(r.steps_to_target is None for r in result.runs):
        ax.legend(fontsize=7, loc="lower left")
    return fig


def dead_rate_figure(result: CompareResult) -> Figure | None:
    """Median dead rate per hidden layer over training (fixed probe batch), one panel per layer.

    Panels share one y-axis (0 to the largest value, at least 5%), so a flicker
    of one unit does not look like a collapse; lines that coincide are dashed
    in turn so that each variant stays visible.
    """
    medians = [s.dead_rate_history_median for s in result.summaries]
    if not any(medians):
        return None
    n_layers = len(next(m for m in medians if m)[0])
    ncols = min(n_layers, 3)
    nrows = -(-n_layers // ncols)
    fig, axes = new_figure(3.6 * ncols + 0.6, 2.6 * nrows + 0.8, ncols=ncols, nrows=nrows,
                           sharex=True, sharey=True, squeeze=False)
    flat = axes.ravel()
    top = 5.0
    dashes = ["-", "--", "-.", ":", (0, (5, 1))]
    for i, (label, history) in enumerate(zip((s.variant for s in result.summaries), medians)):
        if not history:
            continue
        med = 100 * np.array(history, dtype=float)  # [epochs + 1, layers]
        top = max(top, float(med.max()) * 1.1)
        for layer in range(n_layers):
            flat[layer].plot(np.arange(med.shape[0]), med[:, layer], color=colour(i), lw=1.6,
                             ls=dashes[i % len(dashes)], label=label)
    for layer, ax in enumerate(flat):
        if layer >= n_layers:
            ax.set_visible(False)
            continue
        ax.set_title(f"hidden layer {layer + 1}", fontsize=9)
    flat[0].set_ylim(0, min(top, 100.0) * 1.03)  # a little headroom: a 100% line stays visible
    fig.supxlabel("epoch (0 = initialisation)", fontsize=9)
    fig.supylabel("dead units, % (median over seeds)", fontsize=9)
    fig.legend(*flat[0].get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    return fig


def slope_sweep_figure(result: CompareResult) -> Figure | None:
    """Steps to target and final loss against the negative slope, medians with 95% bootstrap intervals.

    ReLU is drawn at slope 0 on a symmetric-log axis; PReLU (learned slope) at
    the median of its learned slopes, with a distinct marker. None with fewer
    than three variants or any variant outside the ReLU family (no slope axis).
    """
    if len(result.variants) < 3 or any(v.slope is None for v in result.variants):
        return None
    fig, (ax1, ax2) = new_figure(10.0, 4.0, ncols=2)
    intervals = result.summaries
    lin = min((v.slope for v in result.variants if v.slope > 0), default=0.01)
    xs = _dodged([iv.slope for iv in intervals])
    for i, iv in enumerate(intervals):
        marker = "D" if iv.learnable else "o"
        x = xs[i]
        for ax, (mid, lo, hi), censored_at in ((ax1, iv.steps_interval, result.budget),
                                               (ax2, iv.final_loss_interval, None)):
            if mid is None:
                continue
            censored = censored_at is not None and mid > censored_at
            ax.errorbar([x], [mid], yerr=[[mid - lo], [hi - mid]], fmt=marker, color=colour(i), capsize=3,
                        mfc="none" if censored else colour(i),
                        label=iv.variant + (" (median not reached)" if censored else ""))
    for ax in (ax1, ax2):
        ax.set_xscale("symlog", linthresh=lin)
    ax1.set_ylabel("steps to target (median, 95% CI)")
    if any(iv.steps_interval[0] is not None and iv.steps_interval[2] > result.budget for iv in intervals):
        ax1.axhline(result.budget, color="black", ls=":", lw=1)
        ax1.text(0.99, result.budget, "budget", transform=ax1.get_yaxis_transform(), ha="right",
                 va="bottom", fontsize=8)
    ax2.set_ylabel("final training loss (median, 95% CI)")
    losses = [v for iv in intervals for v in iv.final_loss_interval if v is not None]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 10:
        ax2.set_yscale("log")
    ax1.set_title("Does the slope need tuning? Speed")
    ax2.set_title("... and final loss")
    fig.supxlabel("negative slope (symlog axis; relu at 0, prelu at its learned median)", fontsize=9)
    fig.legend(*ax1.get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    return fig


def _dodged(slopes: list[float], close: float = 0.15, step: float = 0.07) -> list[float]:
    """x positions: slopes within ``close`` (relative) of a neighbour are spread by ``step``.

    Lone points stay on their true slope; a learned PReLU slope that lands next to
    a fixed one (0.3 and 0.298) is moved apart just enough to be read.
    """
    order = sorted(range(len(slopes)), key=lambda k: slopes[k])
    groups: list[list[int]] = []
    for k in order:
        last = groups[-1][-1] if groups else None
        if last is not None and slopes[last] > 0 and slopes[k] <= slopes[last] * (1 + close):
            groups[-1].append(k)
        else:
            groups.append([k])
    xs = list(slopes)
    for group in groups:
        for rank, k in enumerate(group):
            xs[k] = slopes[k] * (1 + step * (rank - (len(group) - 1) / 2))
    return xs



def speedup_by_target_figure(result: CompareResult, ax=None) -> Figure:
    """Median steps ratio (a / b) against the target loss, with 95% intervals, one line per pair.

    Above 1, b needs fewer steps to reach that loss; filled markers where the
    sign test names a leader, hollow where the target is inconclusive.
    """
    _check_result(result)
    fig, ax = figure_and_axes(ax, 7.2, 4.0)
    for i, c in enumerate(result.comparisons):
        pts = [(t.target, t.speedup, t.ci_low, t.ci_high, t.winner is not None) for t in c.by_target
               if t.speedup is not None]
        if not pts:
            continue
        xs, ys, lo, hi, called = map(np.array, zip(*pts))
        ax.plot(xs, ys, color=colour(i), lw=1.2, label=f"{c.a} / {c.b}")
        ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], fmt="none", ecolor=colour(i), capsize=3, lw=1)
        ax.scatter(xs[called], ys[called], color=colour(i), zorder=3, s=30)
        ax.scatter(xs[~called], ys[~called], facecolors="white", edgecolors=colour(i), zorder=3, s=30)
    ax.axhline(1.0, color="black", lw=0.8, ls=":")
    if not ax.get_legend_handles_labels()[0]:
        ax.text(0.5, 0.5, "no variant reached any target", ha="center", va="center", transform=ax.transAxes)
        return fig
    ax.set_xscale("log")
    ax.set_xticks(list(result.targets), [f"{t:g}" for t in result.targets])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("target accuracy (log scale; larger = later in training)"
                  if result.scenario.target_measure == "accuracy"
                  else "target loss (log scale; smaller = later in training)")
    ax.set_ylabel("median steps a / steps b (95% CI)")
    ax.set_title("Who gets there first, target by target (filled: sign test p < 0.05)", loc="left", fontsize=10)
    fig.legend(fontsize=8, loc="outside right upper")
    return fig


plot_loss_curves = loss_curves_figure
plot_steps_to_target = steps_paired_figure
