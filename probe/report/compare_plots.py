"""Figures of a ``probe compare`` result. They draw what the result holds; statistics come from probe.stats."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from probe.compare import CompareResult
from probe.report.figures import colour, new_figure


def _by_variant(result: CompareResult) -> dict[str, list]:
    groups: dict[str, list] = {v.label: [] for v in result.variants}
    for run in result.runs:
        groups[run.variant].append(run)
    return groups


def loss_curves_figure(result: CompareResult) -> Figure:
    """Training loss per epoch: median over seeds, interquartile band, log scale, target marked."""
    fig, ax = new_figure(6.4, 4.0)
    for i, (label, runs) in enumerate(_by_variant(result).items()):
        curves = np.array([[np.nan if v is None else v for v in r.loss_curve] for r in runs], dtype=float)
        if curves.size == 0 or np.all(np.isnan(curves)):
            continue
        epochs = np.arange(1, curves.shape[1] + 1)
        with np.errstate(all="ignore"):
            med = np.nanmedian(curves, axis=0)
            q1, q3 = np.nanpercentile(curves, [25, 75], axis=0)
        ax.plot(epochs, med, color=colour(i), lw=1.8, label=f"{label} (median of {len(runs)} seeds)")
        ax.fill_between(epochs, q1, q3, color=colour(i), alpha=0.18, lw=0)
    target = result.scenario.train.target_loss
    ax.axhline(target, color="black", ls=":", lw=1.2, label=f"target loss {target:g}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (mean over the epoch)")
    ax.set_title(f"{result.scenario.name}: loss curves (band = interquartile range)")
    ax.legend(fontsize=8)
    return fig


def steps_paired_figure(result: CompareResult) -> Figure:
    """Steps to target per seed, one grey line per seed joining the variants.

    A run that never reached the target is drawn as a hollow marker on the
    'not reached' line above the training budget.
    """
    groups = _by_variant(result)
    labels = list(groups)
    fig, ax = new_figure(max(4.0, 1.4 * len(labels) + 2.5), 4.0)
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
            ax.scatter([i] * missed, [never] * missed, facecolors="none", edgecolors=colour(i), s=40,
                       zorder=3, label=f"{lab}: {missed} run(s) never reached the target")
    ax.axhline(result.budget, color="black", ls=":", lw=1)
    ax.text(len(labels) - 0.5, result.budget, "budget ", va="bottom", ha="right", fontsize=8)
    if any(r.steps_to_target is None for r in result.runs):
        ax.text(-0.45, never, "not reached", va="bottom", ha="left", fontsize=8, color="grey")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_ylim(0, never * 1.08)
    ax.set_ylabel("optimizer steps to target loss")
    ax.set_title("Steps to target, paired by seed (one line per seed)")
    if any(r.steps_to_target is None for r in result.runs):
        ax.legend(fontsize=7, loc="lower left")
    return fig


def dead_rate_figure(result: CompareResult) -> Figure | None:
    """Median dead rate per hidden layer over training (fixed probe batch), one panel per layer."""
    groups = _by_variant(result)
    runs = [r for r in result.runs if r.dead_rate_history]
    if not runs:
        return None
    n_layers = len(runs[0].dead_rate_history[0])
    fig, axes = new_figure(min(3.4 * n_layers, 13), 3.4, ncols=n_layers)
    axes = np.atleast_1d(axes)
    for i, (label, vruns) in enumerate(groups.items()):
        hist = np.array([r.dead_rate_history for r in vruns if r.dead_rate_history], dtype=float)
        if hist.size == 0:
            continue
        med = np.median(hist, axis=0)  # [epochs + 1, layers]
        for layer, ax in enumerate(axes):
            ax.plot(np.arange(med.shape[0]), 100 * med[:, layer], color=colour(i), label=label)
    for layer, ax in enumerate(axes):
        ax.set_title(f"hidden layer {layer + 1}")
        ax.set_xlabel("epoch (0 = initialisation)")
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("dead units, % (median over seeds)")
    axes[0].legend(fontsize=8)
    return fig


def slope_sweep_figure(result: CompareResult) -> Figure | None:
    """Steps to target and final loss against the negative slope, medians with 95% bootstrap intervals.

    ReLU is drawn at slope 0 on a symmetric-log axis; PReLU (learned slope) at
    the median of its learned slopes, with a distinct marker.
    """
    from probe.sweep import variant_intervals

    if len(result.variants) < 3:
        return None
    fig, (ax1, ax2) = new_figure(10.0, 3.8, ncols=2)
    for i, iv in enumerate(variant_intervals(result)):
        marker = "D" if iv.learnable else "o"
        for ax, (mid, lo, hi) in ((ax1, iv.steps), (ax2, iv.final_loss)):
            if mid is None:
                continue
            ax.errorbar([iv.slope], [mid], yerr=[[mid - lo], [hi - mid]], fmt=marker, color=colour(i),
                        capsize=3, label=iv.label)
    lin = min((v.slope for v in result.variants if v.slope > 0), default=0.01)
    for ax in (ax1, ax2):
        ax.set_xscale("symlog", linthresh=lin)
        ax.set_xlabel("negative slope (symlog; relu at 0, prelu at its learned median)")
    ax1.set_ylabel("steps to target (median, 95% CI)")
    ax1.axhline(result.budget, color="black", ls=":", lw=1)
    ax2.set_ylabel("final training loss (median, 95% CI)")
    ax2.set_yscale("log")
    ax1.set_title("Does the slope need tuning? Speed")
    ax2.set_title("... and final loss")
    ax2.legend(fontsize=7, loc="best")
    return fig


def finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]
