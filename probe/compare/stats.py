"""Paired comparisons of variants over seeds, and per-variant summaries.

Runs are paired by seed: for a seed, every variant starts from the same
weights and sees the same data order, so per-seed differences isolate the
activation.

Never-reached handling: a run that never reached the target loss is counted
as reaching it at ``budget + 1`` steps, where ``budget`` is the number of
optimiser steps every run had. That is later than every run that did reach it,
so it loses every pairing against such a run, and a speed-up computed against
it is a lower bound. Two runs of a seed that both never reached it are a tie
(ratio 1, no winner, dropped by the Wilcoxon test as a zero difference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05


def finite_median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not None/NaN; None if none are left."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return float(np.median(vals)) if vals else None


@dataclass(frozen=True)
class PairedComparison:
    """Variant ``a`` against variant ``b`` on the seeds both ran.

    Attributes:
        a, b: Variant labels. ``speedup`` > 1 means ``b`` reached the target faster.
        seeds: Number of paired seeds.
        reached_a, reached_b: Seeds on which each reached the target.
        speedup: Median over seeds of ``steps_a / steps_b`` (never-reached as
            ``budget + 1``); None when neither reached the target on any seed.
        ci_low, ci_high: 95% percentile bootstrap interval of that median
            (``n_boot`` resamples of seeds, seeded, deterministic).
        wins_a, wins_b, ties: Seeds on which each needed fewer steps.
        p_value: Two-sided paired Wilcoxon signed-rank test on
            ``log(steps_a) - log(steps_b)`` (scipy, zero differences dropped);
            None when every pair ties.
        verdict: One plain sentence; says so when the evidence is too weak.
        winner: The clearly faster variant (p < 0.05 and the interval excludes
            1), or None when the evidence does not call one.
    """

    a: str
    b: str
    seeds: int
    reached_a: int
    reached_b: int
    speedup: float | None
    ci_low: float | None
    ci_high: float | None
    wins_a: int
    wins_b: int
    ties: int
    p_value: float | None
    verdict: str
    winner: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_median_ci(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (resampling with replacement)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    meds = np.median(values[idx], axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(meds, [tail, 100 - tail])
    return float(lo), float(hi)


def wilcoxon_p(diffs: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences; None if all are zero."""
    if not np.any(diffs != 0):
        return None
    return float(sps.wilcoxon(diffs, zero_method="wilcox", alternative="two-sided").pvalue)


def compare_steps(a: str, b: str, steps_a: Sequence[int | None], steps_b: Sequence[int | None],
                  budget: int, *, n_boot: int = 2000, seed: int = 0) -> PairedComparison:
    """Compare steps-to-target of two variants, paired by position (seed).

    Args:
        a, b: Variant labels.
        steps_a, steps_b: Steps to target per seed, None where never reached.
        budget: Optimiser steps each run had (never-reached counts as ``budget + 1``).
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.
    """
    if len(steps_a) != len(steps_b):
        raise ValueError("steps_a and steps_b must be paired seed by seed")
    never = budget + 1
    sa = np.array([never if s is None else s for s in steps_a], dtype=float)
    sb = np.array([never if s is None else s for s in steps_b], dtype=float)
    n = len(sa)
    reached_a, reached_b = sum(s is not None for s in steps_a), sum(s is not None for s in steps_b)
    wins_a, wins_b = int(np.sum(sa < sb)), int(np.sum(sb < sa))
    ties = n - wins_a - wins_b
    speedup = lo = hi = p = None
    if n and (reached_a or reached_b):
        ratios = sa / sb
        speedup = float(np.median(ratios))
        lo, hi = bootstrap_median_ci(ratios, n_boot=n_boot, seed=seed)
        p = wilcoxon_p(np.log(sa) - np.log(sb))
    cmp = PairedComparison(a, b, n, reached_a, reached_b, speedup, lo, hi, wins_a, wins_b, ties, p, "")
    winner = None
    if is_clear(cmp):
        winner = b if speedup >= 1 else a
    return PairedComparison(**{**asdict(cmp), "verdict": verdict(cmp), "winner": winner})


def is_clear(c: PairedComparison) -> bool:
    """A difference is called only when p < 0.05 and the 95% interval of the ratio excludes 1."""
    return c.p_value is not None and c.p_value < ALPHA and (c.ci_low > 1 or c.ci_high < 1)


def _fmt_p(p: float | None) -> str:
    return "no p-value: every seed tied" if p is None else (f"p={p:.2g}" if p >= 0.001 else "p<0.001")


def verdict(c: PairedComparison) -> str:
    """A sentence that calls a winner only when p < 0.05 and the 95% interval excludes 1."""
    if c.seeds == 0:
        return "no paired seeds to compare"
    if c.speedup is None:
        return (f"neither {c.a} nor {c.b} reached the target loss on any of {c.seeds} seeds; "
                "compare final losses instead")
    faster, slower = (c.b, c.a) if c.speedup >= 1 else (c.a, c.b)
    factor = c.speedup if c.speedup >= 1 else 1 / c.speedup
    lo, hi = (c.ci_low, c.ci_high) if c.speedup >= 1 else (1 / c.ci_high, 1 / c.ci_low)
    wins = c.wins_b if faster == c.b else c.wins_a
    clear = is_clear(c)
    if clear:
        missed = c.seeds - (c.reached_a if slower == c.a else c.reached_b)
        bound = (f"; {slower} never reached the target on {missed}/{c.seeds} seeds (counted at the "
                 "budget), so the factor is a lower bound") if missed else ""
        return (f"{faster} reached the target {factor:.3g}x faster than {slower} "
                f"(95% CI {lo:.3g}-{hi:.3g}), winning {wins}/{c.seeds} seeds, {_fmt_p(c.p_value)}{bound}")
    if c.p_value is not None and c.p_value < ALPHA:
        why = f"{_fmt_p(c.p_value)}, but the 95% CI {c.ci_low:.3g}-{c.ci_high:.3g} of the median ratio includes 1"
    else:
        why = (f"{_fmt_p(c.p_value)}, not below 0.05; median ratio {c.speedup:.3g}, "
               f"95% CI {c.ci_low:.3g}-{c.ci_high:.3g}")
    weak = " (too few seeds for a paired test to reach p<0.05)" if c.seeds < 6 else ""
    return f"no clear difference between {c.a} and {c.b} ({why}){weak}"


def median_steps(steps: Sequence[int | None]) -> float | None:
    """Median with never-reached (None) as +inf; None when that median is infinite."""
    if not steps:
        return None
    med = float(np.median([math.inf if s is None else s for s in steps]))
    return med if math.isfinite(med) else None
