"""Paired, censoring-aware comparisons of two variants over seeds.

Runs are paired by seed: for a seed, every variant starts from the same
weights and sees the same data order, so per-seed differences isolate the
activation.

**Steps to a target are censored**: a run that never reached the target loss
only tells us it needed more than the ``budget`` of optimiser steps. So, per
seed pair:

* both runs reached the target: the one with fewer steps wins (equal steps tie);
* one run reached it: that run wins (whatever the other would have needed);
* neither reached it: a tie that carries no evidence either way.

The pairs with a winner are the *decided* pairs. The test is the two-sided
exact sign test (binomial, p = 1/2) on the decided pairs: it uses nothing but
who won each pair, so censoring cannot bias it, and ties (both censored) are
left out instead of pulling the result towards "no difference". A winner is
called when p < 0.05. With ``n`` decided pairs the smallest p the test can give
is ``2 / 2**n``, so with 5 or fewer it can never reach 0.05: the verdict then
says "inconclusive (N ... cannot reach p < 0.05)" rather than suggesting the
variants are alike.

Effect sizes, for reading (they do not decide the winner): the median over
seeds of ``steps_a / steps_b`` with never-reached counted at ``budget + 1`` (a
lower bound on the true ratio when the slower variant missed), its 95%
bootstrap interval, and the *restricted mean* steps of each variant (the mean
of ``min(steps, budget)``: the area under its "not yet reached" curve up to the
budget, defined whatever the censoring).

Losses (final, evaluation, area under the curve) are not censored: they are
compared with the paired Wilcoxon signed-rank test on the differences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# the exact tests without scipy.stats' import (0.8 s of compare's start-up)
from probe.compare.exact_tests import sign_test_p, signed_rank_p as wilcoxon_p

ALPHA = 0.05
SIGN_TEST = "two-sided exact sign test on the decided seed pairs (pairs where neither run reached the target are ties)"
WILCOXON = "two-sided Wilcoxon signed-rank test on the paired differences"


def finite_median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not None/NaN; None if none are left."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return float(np.median(vals)) if vals else None


def bootstrap_median_ci(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (resampling with replacement)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    meds = np.median(values[idx], axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(meds, [tail, 100 - tail])
    return float(lo), float(hi)


def can_reach_alpha(n: int) -> bool:
    """Whether an exact two-sided sign or signed-rank test on ``n`` pairs can give p < 0.05."""
    return n > 0 and 2 * 0.5 ** n < ALPHA


def _fmt_p(p: float | None) -> str:
    return "no p-value: every seed tied" if p is None else (f"p={p:.2g}" if p >= 0.001 else "p<0.001")


@dataclass(frozen=True)
class TargetComparison:
    """Variant ``a`` against variant ``b`` in steps to one target loss, paired by seed.

    Attributes:
        target: The loss level.
        a, b: Variant labels. ``speedup`` > 1 means ``b`` reached the target faster.
        seeds: Number of paired seeds.
        reached_a, reached_b: Seeds on which each reached the target.
        decided: Pairs with a winner; ``ties`` = seeds - decided.
        wins_a, wins_b, ties: See the module docstring.
        speedup: Median over seeds of ``steps_a / steps_b`` (never-reached as
            ``budget + 1``); None when neither reached the target on any seed.
        ci_low, ci_high: 95% percentile bootstrap interval of that median.
        restricted_mean_a, restricted_mean_b: Mean of ``min(steps, budget)``.
        p_value: The sign test on the decided pairs (None without one).
        test: The name of the test.
        winner: The variant that won the decided pairs significantly (p < 0.05), else None.
        verdict: One plain sentence, "inconclusive" when the data cannot decide.
    """

    target: float | None
    a: str
    b: str
    seeds: int
    reached_a: int
    reached_b: int
    decided: int
    wins_a: int
    wins_b: int
    ties: int
    speedup: float | None
    ci_low: float | None
    ci_high: float | None
    restricted_mean_a: float | None
    restricted_mean_b: float | None
    p_value: float | None
    test: str
    winner: str | None
    verdict: str
    measure: str = "loss"

    def to_dict(self) -> dict:
        return asdict(self)


def compare_steps(a: str, b: str, steps_a: Sequence[int | None], steps_b: Sequence[int | None],
                  budget: int, *, target: float | None = None, n_boot: int = 2000,
                  seed: int = 0, measure: str = "loss") -> TargetComparison:
    """Compare steps to one target of two variants, paired by position (seed).

    Args:
        a, b: Variant labels.
        steps_a, steps_b: Steps to target per seed, None where never reached.
        budget: Optimiser steps each run had.
        target: The loss level (for the verdict's wording); an accuracy level when
            ``measure`` is ``accuracy``.
        n_boot: Bootstrap resamples. seed: Bootstrap seed.
    """
    if len(steps_a) != len(steps_b):
        raise ValueError("steps_a and steps_b must be paired seed by seed")
    never = budget + 1
    sa = np.array([never if s is None else s for s in steps_a], dtype=float)
    sb = np.array([never if s is None else s for s in steps_b], dtype=float)
    n = len(sa)
    reached_a, reached_b = sum(s is not None for s in steps_a), sum(s is not None for s in steps_b)
    wins_a, wins_b = int(np.sum(sa < sb)), int(np.sum(sb < sa))
    speedup = lo = hi = rm_a = rm_b = None
    if n:
        rm_a, rm_b = float(np.minimum(sa, budget).mean()), float(np.minimum(sb, budget).mean())
    if n and (reached_a or reached_b):
        ratios = sa / sb
        speedup = float(np.median(ratios))
        lo, hi = bootstrap_median_ci(ratios, n_boot=n_boot, seed=seed)
    p = sign_test_p(wins_a, wins_b)
    winner = (b if wins_b > wins_a else a) if p is not None and p < ALPHA else None
    c = TargetComparison(target, a, b, n, reached_a, reached_b, wins_a + wins_b, wins_a, wins_b,
                         n - wins_a - wins_b, speedup, lo, hi, rm_a, rm_b, p, SIGN_TEST, winner, "", measure)
    return TargetComparison(**{**asdict(c), "verdict": steps_verdict(c)})


def _at(c: TargetComparison) -> str:
    return "the target" if c.target is None else f"{c.measure} {c.target:g}"


def steps_verdict(c: TargetComparison) -> str:
    """A sentence that names a winner only when the sign test gives p < 0.05; else "inconclusive"."""
    at = _at(c)
    if c.seeds == 0:
        return "no paired seeds to compare"
    if c.speedup is None:
        return f"inconclusive at {at}: neither {c.a} nor {c.b} reached it on any of {c.seeds} seeds"
    record = (f"{c.a} won {c.wins_a}, {c.b} won {c.wins_b} of {c.decided} decided pairs "
              f"({c.ties} {'tie' if c.ties == 1 else 'ties'})")
    ratio = f"median ratio {c.speedup:.3g}, 95% CI {c.ci_low:.3g}-{c.ci_high:.3g}"
    if c.winner is not None:
        faster, slower = (c.b, c.a) if c.winner == c.b else (c.a, c.b)
        factor, lo, hi = ((c.speedup, c.ci_low, c.ci_high) if faster == c.b
                          else (1 / c.speedup, 1 / c.ci_high, 1 / c.ci_low))
        wins = c.wins_b if faster == c.b else c.wins_a
        missed = c.seeds - (c.reached_a if slower == c.a else c.reached_b)
        bound = (f"; {slower} never reached it on {missed}/{c.seeds} seeds, so the factor is a lower bound"
                 if missed else "")
        return (f"{faster} reached {at} first: {factor:.3g}x fewer steps than {slower} (median ratio, 95% CI "
                f"{lo:.3g}-{hi:.3g}), winning {wins} of {c.decided} decided pairs, sign test "
                f"{_fmt_p(c.p_value)}{bound}")
    if not can_reach_alpha(c.seeds):
        return f"inconclusive at {at} ({c.seeds} seeds cannot reach p < 0.05): {record}; {ratio}"
    if not can_reach_alpha(c.decided):
        return (f"inconclusive at {at} (only {c.decided} of {c.seeds} seed pairs decided, too few to reach "
                f"p < 0.05): {record}; {ratio}")
    return f"inconclusive at {at}: {record}, sign test {_fmt_p(c.p_value)}; {ratio}"


@dataclass(frozen=True)
class LossComparison:
    """Variant ``a`` against ``b`` on one per-run loss (lower is better), paired by seed.

    Attributes:
        measure: ``final_loss``, ``eval_loss`` or ``loss_auc``.
        pairs: Seeds where both runs have the value (diverged runs have none).
        median_a, median_b: Medians over those pairs.
        ratio: Median over pairs of ``value_a / value_b`` (None if some ``value_b`` is 0).
        wins_a, wins_b: Pairs where each is lower.
        p_value: Wilcoxon signed-rank test on ``value_a - value_b``.
        winner: The variant with the lower loss, when p < 0.05.
        verdict: One plain sentence.
    """

    measure: str
    a: str
    b: str
    pairs: int
    median_a: float | None
    median_b: float | None
    ratio: float | None
    wins_a: int
    wins_b: int
    p_value: float | None
    test: str
    winner: str | None
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


MEASURE_NAMES = {"final_loss": "final loss", "eval_loss": "evaluation loss", "loss_auc": "mean step loss",
                 "final_accuracy": "final accuracy", "eval_accuracy": "evaluation accuracy"}


def compare_losses(measure: str, a: str, b: str, values_a: Sequence[float | None],
                   values_b: Sequence[float | None], *, higher: bool = False) -> LossComparison:
    """Compare a lower-is-better per-run value of two variants, paired by seed.

    With ``higher``, higher is better (an accuracy): wins, the winner and the
    verdict's wording follow; the Wilcoxon test is the same (it is symmetric).
    """
    pairs = [(x, y) for x, y in zip(values_a, values_b)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    va, vb = np.array([x for x, _ in pairs], dtype=float), np.array([y for _, y in pairs], dtype=float)
    sign, word = (-1.0, "higher") if higher else (1.0, "lower")
    n = len(pairs)
    wins_a, wins_b = int(np.sum(sign * va < sign * vb)), int(np.sum(sign * vb < sign * va))
    p = wilcoxon_p(va - vb) if n else None
    ratio = float(np.median(va / vb)) if n and np.all(vb != 0) else None
    winner = (a if np.median(sign * (va - vb)) < 0 else b) if p is not None and p < ALPHA else None
    name = MEASURE_NAMES.get(measure, measure)
    if not n:
        verdict = f"{name}: not compared (no seed where both runs have one)"
    elif winner is not None:
        verdict = (f"{name}: {winner} {word} (median {np.median(va if winner == a else vb):.3g} vs "
                   f"{np.median(vb if winner == a else va):.3g}, {word} on {max(wins_a, wins_b)}/{n} seeds, "
                   f"Wilcoxon {_fmt_p(p)})")
    elif not can_reach_alpha(n):
        verdict = f"{name}: inconclusive ({n} seeds cannot reach p < 0.05)"
    else:
        verdict = (f"{name}: inconclusive ({a} {word} on {wins_a}, {b} on {wins_b} of {n} seeds, "
                   f"Wilcoxon {_fmt_p(p)})")
    return LossComparison(measure, a, b, n, float(np.median(va)) if n else None,
                          float(np.median(vb)) if n else None, ratio, wins_a, wins_b, p, WILCOXON, winner,
                          verdict)


@dataclass(frozen=True)
class PairedComparison:
    """Everything compared between variants ``a`` and ``b``, paired by seed.

    ``primary`` is the comparison at the scenario's own ``target_loss``; its
    fields (``speedup``, ``wins_a``, ``p_value``, ``winner``, ...) are readable
    on the comparison itself and flattened into its JSON, with its sentence as
    ``primary_verdict``. ``by_target`` holds the same at every target of the
    grid, ``losses`` the final, evaluation and mean step losses, and ``verdict``
    is the headline: which variant is ahead at which targets, and on the losses.
    """

    primary: TargetComparison
    by_target: tuple[TargetComparison, ...]
    losses: tuple[LossComparison, ...]
    verdict: str

    def __getattr__(self, name: str):
        # a, b, seeds, speedup, ci_low, wins_a, p_value, winner, ...: the primary target's
        if name.startswith("__") or name == "primary":
            raise AttributeError(name)
        return getattr(self.primary, name)

    @property
    def primary_verdict(self) -> str:
        return self.primary.verdict

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.primary.to_dict().items() if k != "verdict"}
        d["primary_verdict"] = self.primary.verdict
        d["by_target"] = [t.to_dict() for t in self.by_target]
        d["losses"] = {c.measure: c.to_dict() for c in self.losses}
        d["verdict"] = self.verdict
        return d


def paired_comparison(primary: TargetComparison, by_target: Sequence[TargetComparison],
                      losses: Sequence[LossComparison]) -> PairedComparison:
    """Assemble the comparison of one pair and its headline verdict."""
    return PairedComparison(primary, tuple(by_target), tuple(losses), headline(by_target, losses))


def headline(by_target: Sequence[TargetComparison], losses: Sequence[LossComparison]) -> str:
    """Who is ahead at which targets, and on the losses, e.g.
    "leaky:0.3 reaches 0.1, 0.2 first; relu reaches 0.05 first; final loss: inconclusive (...)"."""
    parts = []
    winners = list(dict.fromkeys(t.winner for t in by_target if t.winner is not None))
    for w in winners:
        levels = ", ".join(f"{t.target:g}" for t in by_target if t.winner == w)
        parts.append(f"{w} reaches {levels} first")
    undecided = [t for t in by_target if t.winner is None and t.speedup is not None]
    unreached = [t for t in by_target if t.speedup is None]
    if undecided:
        levels = ", ".join(f"{t.target:g}" for t in undecided)
        few = [t for t in undecided if not can_reach_alpha(t.seeds)]
        why = f" ({undecided[0].seeds} seeds cannot reach p < 0.05)" if few else ""
        parts.append(f"inconclusive at every target ({levels}){why}" if not winners and not unreached
                     else f"inconclusive at {levels}{why}")
    if unreached:
        parts.append(f"neither reached {', '.join(f'{t.target:g}' for t in unreached)}")
    for measure in ("final_loss", "eval_accuracy"):  # a classifier's generalisation joins the headline
        found = next((c for c in losses if c.measure == measure), None)
        if found is not None:
            parts.append(found.verdict)
    return "; ".join(parts)


def median_steps(steps: Sequence[int | None]) -> float | None:
    """Median with never-reached (None) as +inf; None when that median is infinite."""
    if not steps:
        return None
    med = float(np.median([math.inf if s is None else s for s in steps]))
    return med if math.isfinite(med) else None
