"""Per-variant summaries of a compare run, computed once and stored on the result.

Everything a table, a figure, the slope sweep or the study shows about a
variant is here: medians over seeds, 95% bootstrap intervals, median curves.
The report layer reads these fields and recomputes nothing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from probe.circuit.result import summarize_for_compare
from probe.compare.results import RunResult
from probe.compare.stats import bootstrap_median_ci, finite_median, median_steps
from probe.core.variants import Variant

Interval = tuple[float | None, float | None, float | None]  # (median, 95% low, 95% high)
NO_INTERVAL: Interval = (None, None, None)


@dataclass(frozen=True)
class VariantSummary:
    """Medians over the seeds of one variant (None where no run has the value).

    Attributes:
        variant: Label. nominal_slope: The variant's (initial) negative slope.
        runs, reached, diverged, born_dead: Counts of runs.
        median_final_loss: Of the final training-set MSE (diverged runs excluded).
        median_steps_to_target: Never-reached runs count as infinitely slow;
            None when at least half never reached the target.
        median_loss_auc: Of the mean per-step loss.
        dead_rate_init, dead_rate_final: Median over runs of the layer-mean dead
            rate on the evaluation set, at initialisation and after training.
        grad_ratio: Median over runs of the geometric mean over layers of ``grad_ratio`` after training.
        activation_route_share: Median of ``sign[0].activation_route_share``.
        circuit: Median over runs of each number of
            :func:`probe.circuit.summarize_for_compare` (output 0's sign circuit:
            circuit sizes, route shares, cancellation); None without circuits.
        slope: Where the variant sits on a slope axis: the nominal slope, or for
            a learned (PReLU) slope the median over seeds of its layer-mean learned slope.
        learnable: The slope is learned.
        steps_interval: ``(median, low, high)`` of steps to target with a 95%
            bootstrap interval; never-reached runs count as ``budget + 1`` (as the
            paired statistics do), diverged runs are left out.
        final_loss_interval: The same for the final training loss.
        upstream_ratio, neg_grad_share, neg_grad_fraction, act_mean: Medians over runs of the layer means.
        negative_route_share: Median of ``sign[0].negative_predictions.activation_route_share``.
        loss_curve_median, loss_curve_q1, loss_curve_q3: Per epoch, the median and
            quartiles over seeds of the epoch's mean minibatch loss (diverged epochs skipped).
        dead_rate_history_median: Per epoch (row 0 = init) and hidden layer, the
            median over seeds of the probe-batch dead rate.
        steps_by_target_median: Per target of the comparison's grid, the median
            steps (never-reached as infinitely slow; None when half or more never reached it).
        collapsed_at_init: Runs with a hidden layer all-negative at initialisation.
        eval_loss: ``(median, low, high)`` of the evaluation-set loss of the final
            parameters over seeds (diverged runs left out), with a 95% bootstrap interval.
        final_accuracy, eval_accuracy: The same for a classifier's training and
            evaluation accuracy; ``(None, None, None)`` for regression.
    """

    variant: str
    nominal_slope: float
    runs: int
    reached: int
    diverged: int
    born_dead: int
    median_final_loss: float | None
    median_steps_to_target: float | None
    median_loss_auc: float | None
    dead_rate_init: float | None
    dead_rate_final: float | None
    grad_ratio: float | None
    activation_route_share: float | None
    circuit: dict[str, float | None] | None = None
    slope: float | None = None
    learnable: bool = False
    steps_interval: Interval = NO_INTERVAL
    final_loss_interval: Interval = NO_INTERVAL
    upstream_ratio: float | None = None
    neg_grad_share: float | None = None
    neg_grad_fraction: float | None = None
    act_mean: float | None = None
    negative_route_share: float | None = None
    loss_curve_median: tuple[float | None, ...] = field(default=(), repr=False)
    loss_curve_q1: tuple[float | None, ...] = field(default=(), repr=False)
    loss_curve_q3: tuple[float | None, ...] = field(default=(), repr=False)
    dead_rate_history_median: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)
    steps_by_target_median: tuple[float | None, ...] = ()
    collapsed_at_init: int = 0
    eval_loss: Interval = NO_INTERVAL
    final_accuracy: Interval = NO_INTERVAL
    eval_accuracy: Interval = NO_INTERVAL

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_variant(variant: str, nominal_slope: float, *, final_loss: Sequence[float | None],
                      steps: Sequence[int | None], loss_auc: Sequence[float | None],
                      diverged: Sequence[bool], born_dead: Sequence[bool],
                      dead_rate_init: Sequence[float | None], dead_rate_final: Sequence[float | None],
                      grad_ratio: Sequence[float | None],
                      route_share: Sequence[float | None],
                      circuit: Sequence[dict | None] = (), **extra) -> VariantSummary:
    """Per-variant medians and counts from per-run values (one entry per seed).

    ``extra`` sets the remaining :class:`VariantSummary` fields as they are.
    """
    return VariantSummary(
        variant=variant, nominal_slope=nominal_slope, runs=len(steps),
        reached=sum(s is not None for s in steps), diverged=sum(map(bool, diverged)),
        born_dead=sum(map(bool, born_dead)),
        median_final_loss=finite_median(final_loss), median_steps_to_target=median_steps(steps),
        median_loss_auc=finite_median(loss_auc), dead_rate_init=finite_median(dead_rate_init),
        dead_rate_final=finite_median(dead_rate_final), grad_ratio=finite_median(grad_ratio),
        activation_route_share=finite_median(route_share),
        circuit=_median_dicts(circuit), **extra,
    )


def summarize_runs(variant: Variant, runs: Sequence[RunResult], budget: int) -> VariantSummary:
    """The :class:`VariantSummary` of one variant's runs (one per seed)."""
    def diag(fn):
        return [None if r.diagnostics is None else fn(r.diagnostics) for r in runs]

    def layer_means(name: str) -> list[float | None]:
        return diag(lambda d: d.layer_mean(name))

    slope = variant.slope
    if variant.learnable:
        learned = [m for m in layer_means("negative_slope") if m is not None]
        slope = float(np.median(learned)) if learned else variant.slope
    steps = [float(budget + 1 if r.steps_to_target is None else r.steps_to_target)
             for r in runs if not r.diverged]
    median_curve, q1, q3 = _curve_band([r.loss_curve for r in runs])
    histories = [r.dead_rate_history for r in runs if r.dead_rate_history]
    return summarize_variant(
        variant.label, variant.slope,
        final_loss=[r.final_loss for r in runs], steps=[r.steps_to_target for r in runs],
        loss_auc=[r.loss_auc for r in runs], diverged=[r.diverged for r in runs],
        born_dead=[r.born_dead for r in runs],
        dead_rate_init=[sum(r.dead_rate_init) / len(r.dead_rate_init) if r.dead_rate_init else None
                        for r in runs],
        dead_rate_final=layer_means("dead_rate"), grad_ratio=diag(lambda d: d.layer_geomean("grad_ratio")),
        route_share=diag(lambda d: d.sign[0].all_samples.activation_route_share if d.sign else None),
        circuit=[None if r.circuit is None else summarize_for_compare(r.circuit) for r in runs],
        slope=slope, learnable=variant.learnable,
        steps_interval=_median_ci(steps),
        final_loss_interval=_median_ci([r.final_loss for r in runs if r.final_loss is not None]),
        eval_loss=_median_ci([r.eval_loss for r in runs if r.eval_loss is not None]),
        final_accuracy=_median_ci([r.final_accuracy for r in runs if r.final_accuracy is not None]),
        eval_accuracy=_median_ci([r.eval_accuracy for r in runs if r.eval_accuracy is not None]),
        upstream_ratio=finite_median(layer_means("upstream_ratio")),
        neg_grad_share=finite_median(layer_means("neg_grad_share")),
        neg_grad_fraction=finite_median(layer_means("neg_grad_fraction")),
        act_mean=finite_median(layer_means("act_mean")),
        negative_route_share=finite_median(
            diag(lambda d: d.sign[0].negative_predictions.activation_route_share if d.sign else None)),
        loss_curve_median=median_curve, loss_curve_q1=q1, loss_curve_q3=q3,
        steps_by_target_median=tuple(median_steps([r.steps_by_target[k] for r in runs])
                                     for k in range(len(runs[0].steps_by_target) if runs else 0)),
        collapsed_at_init=sum(r.collapsed_layer_at_init for r in runs),
        dead_rate_history_median=tuple(tuple(float(v) for v in row)
                                       for row in np.median(np.array(histories, dtype=float), axis=0))
        if histories else None,
    )


def _median_ci(values: Sequence[float]) -> Interval:
    if not values:
        return NO_INTERVAL
    arr = np.asarray(values, dtype=float)
    lo, hi = bootstrap_median_ci(arr)
    return (float(np.median(arr)), lo, hi)


def _curve_band(curves: Sequence[Sequence[float | None]]) -> tuple[tuple[float | None, ...], ...]:
    """Median and quartiles over runs, epoch by epoch (NaN/None skipped; None where no run has a value)."""
    arr = np.array([[np.nan if v is None else v for v in c] for c in curves], dtype=float)
    if arr.size == 0:
        return (), (), ()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN epoch (every run diverged)
        med = np.nanmedian(arr, axis=0)
        q1, q3 = np.nanpercentile(arr, [25, 75], axis=0)
    return tuple(tuple(None if not math.isfinite(v) else float(v) for v in row) for row in (med, q1, q3))


def _median_dicts(dicts: Sequence[dict | None]) -> dict[str, float | None] | None:
    """Key by key median of numeric dicts (None values and missing dicts skipped)."""
    present = [d for d in dicts if d is not None]
    if not present:
        return None
    return {key: finite_median([d.get(key) for d in present]) for key in present[0]}
