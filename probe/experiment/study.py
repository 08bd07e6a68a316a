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
from probe.compare.run import compare_variants
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


@dataclass(frozen=True)
class ScenarioOutcome:
    """One scenario of the study: the compare result and how long it took."""

    result: CompareResult
    seconds: float

    @property
    def name(self) -> str:
        return self.result.scenario.name


def run_study(*, variants: Sequence[str] = STUDY_VARIANTS, seeds: int | None = 10, epochs: int | None = None,
              scenarios: Sequence[str] | None = None, max_memory: int | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> list[ScenarioOutcome]:
    """Run the study: every variant on every scenario (write it with :func:`probe.report.study_report.write_study`).

    Args:
        variants: Activation specs compared on every scenario.
        seeds: Seeds per variant (None: each scenario's own).
        epochs: Epochs (None: each scenario's own; small values are for quick checks).
        scenarios: Scenario names; default every shipped scenario.
        max_memory: Memory budget per scenario in bytes (default 4 GiB).
        progress: Called as ``progress(scenario, epochs_done, epochs_total)``.

    Raises:
        KeyboardInterrupt: Training was interrupted. A study with one scenario
            cut short is not the study, so nothing partial is returned.
    """
    names = list(scenarios) if scenarios else [n for n, _ in list_scenarios()]
    outcomes = []
    for name in names:
        start = time.perf_counter()
        cb = None if progress is None else (lambda d, t, n=name: progress(n, d, t))
        result = compare_variants(list(variants), name, seeds=seeds, epochs=epochs, max_memory=max_memory,
                                  progress=cb)
        if result.interrupted:  # compare_variants stops at an epoch boundary; the study stops too
            raise KeyboardInterrupt
        outcomes.append(ScenarioOutcome(result, time.perf_counter() - start))
    return outcomes
