"""Slope sweeps: per-variant medians with bootstrap intervals, placed at each variant's slope.

Answers "does the slope need tuning?": steps to target and final loss as a
function of the negative slope. For PReLU the slope is learned, so it is placed
at the median over seeds of its learned slopes (mean over layers, read from the
final diagnostics).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from probe.compare.run import CompareResult
from probe.compare.stats import bootstrap_median_ci


@dataclass(frozen=True)
class VariantInterval:
    """Median and 95% bootstrap interval of steps to target and final loss for one variant.

    ``steps`` counts a never-reached run as ``budget + 1`` (as the paired
    statistics do), so an interval touching the budget means "often not reached".
    Each of ``steps`` and ``final_loss`` is ``(median, low, high)`` or ``(None, None, None)``.
    """

    label: str
    slope: float
    learnable: bool
    steps: tuple[float | None, float | None, float | None]
    final_loss: tuple[float | None, float | None, float | None]

    def to_dict(self) -> dict:
        return {"variant": self.label, "slope": self.slope, "learnable": self.learnable,
                "steps_median": self.steps[0], "steps_ci": list(self.steps[1:]),
                "final_loss_median": self.final_loss[0], "final_loss_ci": list(self.final_loss[1:])}


def _median_ci(values: list[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return (None, None, None)
    arr = np.asarray(values, dtype=float)
    lo, hi = bootstrap_median_ci(arr)
    return (float(np.median(arr)), lo, hi)


def variant_intervals(result: CompareResult) -> list[VariantInterval]:
    """One :class:`VariantInterval` per variant, in the order given to compare."""
    out = []
    for v in result.variants:
        runs = [r for r in result.runs if r.variant == v.label]
        steps = [float(result.budget + 1 if r.steps_to_target is None else r.steps_to_target)
                 for r in runs if not r.diverged]
        losses = [r.final_loss for r in runs if r.final_loss is not None]
        slope = v.slope
        if v.learnable:
            learned = [statistics.fmean(lay.negative_slope for lay in r.diagnostics.layers)
                       for r in runs if r.diagnostics is not None and r.diagnostics.layers]
            slope = float(np.median(learned)) if learned else v.slope
        out.append(VariantInterval(v.label, slope, v.learnable, _median_ci(steps), _median_ci(losses)))
    return out
