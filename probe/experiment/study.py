"""The study: compare relu and leaky variants on every shipped scenario.

``run_study`` runs :func:`probe.compare.run.compare_variants` per scenario with
the same variants and seeds and returns the results; the report layer
(:mod:`probe.report.study_report`) writes one report per scenario and the index
that answers, scenario by scenario and with intervals, the questions probe was
made for. The numbers on the index come from the results; nothing is typed by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probe.compare.results import CompareResult
from probe.compare.run import compare_runs, compare_variants
from probe.compare.stats import PairedComparison
from probe.experiment.scenarios import list_scenarios

STUDY_VARIANTS = ("relu", "leaky", "leaky:0.1", "leaky:0.3", "prelu")
QUESTIONS = {
    "signed_regression": "Does leaky ReLU converge faster when the output must take both signs?",
    "positive_regression": "Does the answer change when every target is positive (ReLU never needs a negative output)?",
    "anticorrelated": "Does it change when the targets fall as the inputs rise?",
    "deep_narrow": "Deep and narrow: does leaky ReLU rescue networks that ReLU kills at initialisation?",
    "high_lr": "With a learning rate high enough to kill ReLU units during training?",
    "diabetes": "On a small real regression (scikit-learn's diabetes data)?",
}


LR_FACTORS = (0.3, 1.0, 3.0, 10.0)  # the learning-rate grid, as multiples of each scenario's own rate


@dataclass(frozen=True)
class LrCell:
    """One learning rate of a scenario's grid: every variant x seed trained at it (no diagnostics)."""

    lr: float
    result: CompareResult


@dataclass(frozen=True)
class ScenarioOutcome:
    """One scenario of the study.

    Attributes:
        result: Every variant at the scenario's own (shared) learning rate, with
            full diagnostics and circuits.
        seconds: Wall time of the scenario, grid included.
        grid: Every learning rate of the grid (the shared one is ``result`` itself).
        best_lr: Per variant, the rate of the grid with the lowest median mean
            step loss (``loss_auc``, the area under the loss curve: convergence
            speed without a threshold); ties go to the smaller rate.
        tuned: relu against each alternative, each at its own best rate, paired by
            seed (same initial weights and data order at every rate).
    """

    result: CompareResult
    seconds: float
    grid: tuple[LrCell, ...] = ()
    best_lr: dict[str, float] | None = None
    tuned: tuple[PairedComparison, ...] = ()

    @property
    def name(self) -> str:
        return self.result.scenario.name

    def cell(self, lr: float) -> CompareResult:
        return next(c.result for c in self.grid if c.lr == lr)


def best_rates(grid: Sequence[LrCell]) -> dict[str, float]:
    """Per variant, the grid rate with the lowest median ``loss_auc`` (ties: the smaller rate)."""
    best: dict[str, tuple[float, float]] = {}
    for cell in sorted(grid, key=lambda c: c.lr):
        for s in cell.result.summaries:
            auc = s.median_loss_auc if s.median_loss_auc is not None else float("inf")
            if s.variant not in best or auc < best[s.variant][0]:
                best[s.variant] = (auc, cell.lr)
    return {label: lr for label, (_, lr) in best.items()}


def tuned_comparisons(grid: Sequence[LrCell], best: dict[str, float],
                      baseline: str = "relu") -> tuple[PairedComparison, ...]:
    """``baseline`` at its best rate against every other variant at its own, paired by seed."""
    by_lr = {c.lr: c.result for c in grid}
    ref = by_lr[best[baseline]]
    out = []
    for label, lr in best.items():
        if label == baseline:
            continue
        other = by_lr[lr]
        ra = [r for r in ref.runs if r.variant == baseline]
        rb = [r for r in other.runs if r.variant == label]
        sc = ref.scenario
        out.append(compare_runs(baseline, label, ra, rb, ref.targets, sc.target, ref.budget,
                                measure=sc.target_measure))
    return tuple(out)


def run_study(*, variants: Sequence[str] = STUDY_VARIANTS, seeds: int | None = 30, epochs: int | None = None,
              scenarios: Sequence[str] | None = None, lr_factors: Sequence[float] = LR_FACTORS,
              max_memory: int | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> list[ScenarioOutcome]:
    """Run the study: every variant on every scenario (write it with :func:`probe.report.study_report.write_study`).

    Args:
        variants: Activation specs compared on every scenario.
        seeds: Seeds per variant (None: each scenario's own).
        epochs: Epochs (None: each scenario's own; small values are for quick checks).
        scenarios: Scenario names; default every shipped scenario.
        lr_factors: The learning-rate grid as multiples of each scenario's rate
            (must contain 1, the shared rate); ``(1,)`` skips the grid.
        max_memory: Memory budget per scenario in bytes (default 4 GiB).
        progress: Called as ``progress(scenario, epochs_done, epochs_total)``.

    Raises:
        KeyboardInterrupt: Training was interrupted. A study with one scenario
            cut short is not the study, so nothing partial is returned.
    """
    if 1.0 not in lr_factors:
        raise ValueError("lr_factors must contain 1.0, the scenario's own rate")
    names = list(scenarios) if scenarios else [n for n, _ in list_scenarios()]
    outcomes = []
    for name in names:
        start = time.perf_counter()
        cb = None if progress is None else (lambda d, t, n=name: progress(n, d, t))
        shared = compare_variants(list(variants), name, seeds=seeds, epochs=epochs, max_memory=max_memory,
                                  progress=cb)
        if shared.interrupted:  # compare_variants stops at an epoch boundary; the study stops too
            raise KeyboardInterrupt
        base_lr = shared.scenario.train.lr
        grid = [LrCell(base_lr, shared)]
        for factor in sorted(f for f in lr_factors if f != 1.0):
            sc = shared.scenario.with_overrides(lr=float(f"{base_lr * factor:.6g}"))
            cb = None if progress is None else (lambda d, t, n=f"{name} lr {sc.train.lr:g}": progress(n, d, t))
            cell = compare_variants(list(variants), sc, diagnostics=False, circuits=False,
                                    max_memory=max_memory, progress=cb)
            if cell.interrupted:
                raise KeyboardInterrupt
            grid.append(LrCell(sc.train.lr, cell))
        grid.sort(key=lambda c: c.lr)
        best = best_rates(grid)
        tuned = tuned_comparisons(grid, best) if "relu" in best and len(grid) > 1 else ()
        outcomes.append(ScenarioOutcome(shared, time.perf_counter() - start, tuple(grid), best, tuned))
    return outcomes
