"""The results of a compare run: one record per (variant, seed) run, and the whole comparison.

Definitions of every per-run field are in :data:`DEFINITIONS` (also written
to the JSON). Results are frozen; ``to_dict()`` gives strict JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probe.circuit.result import CircuitResult, summarize_for_compare
from probe.compare.stats import PairedComparison
from probe.core.io import finite_json
from probe.core.variants import Variant
from probe.diagnostics import NetworkDiagnostics
from probe.experiment.scenarios import Scenario
from probe.models.mlp import MLP

PROBE_BATCH = 128

DEFINITIONS = {
    "final_loss": "training-set loss (MSE, or cross-entropy for a classifier) of the final parameters "
                  "(null if the run diverged)",
    "eval_loss": "evaluation-set loss of the final parameters",
    "final_accuracy": "classifier only: share of training samples whose largest logit is the label",
    "eval_accuracy": "classifier only: the same on the evaluation set",
    "steps_to_target": "first optimiser step t at which the running mean of the last steps_per_epoch "
                       "minibatch losses is <= target_loss (null if never); with target_accuracy, the "
                       "first step at which the running mean of the minibatch accuracies is >= it",
    "steps_by_target": "steps_to_target at each loss level of 'targets' (target_loss x 1, 2, 4, 8 and any "
                       "listed in [train] targets), in that order",
    "loss_auc": "mean of the per-step minibatch losses over all steps",
    "loss_curve": "mean minibatch loss of each epoch",
    "born_dead": "the network's output is constant at initialisation on the evaluation set: some hidden "
                 "layer has every unit with z <= 0 on every sample and passes nothing there (negative "
                 "slope 0, i.e. ReLU; Lu et al. 2019)",
    "collapsed_layer_at_init": "some hidden layer has every unit with z <= 0 on every evaluation sample at "
                               "initialisation (for a leaky variant the layer is then linear with its slope, "
                               "and the network still passes signal)",
    "dead_rate_history": "per epoch (row 0 = init) and hidden layer, fraction of units dead on a fixed "
                         f"probe batch of {PROBE_BATCH} training samples",
    "grad_ratio_history": "same rows, mean |dL/dz| on z <= 0 over mean |dL/dz| on z > 0 (null if undefined)",
    "speedup": "median over seeds of steps_a / steps_b (never-reached as budget + 1); > 1 means b is faster",
    "decided": "seed pairs with a winner: one run reached the target and the other did not, or both did in "
               "different numbers of steps; pairs where neither reached it are ties",
    "p_value": "two-sided exact sign test on the decided pairs (steps); Wilcoxon signed-rank on paired "
               "differences (losses)",
    "restricted_mean": "mean over seeds of min(steps_to_target, budget)",
}


def file_safe(label: str) -> str:
    """A variant label usable in file names: ``leaky:0.2`` -> ``leaky-0.2``."""
    return label.replace(":", "-")


@dataclass(frozen=True)
class RunResult:
    """One (variant, seed) run. Definitions of the fields: :data:`DEFINITIONS`."""

    variant: str
    seed: int
    init_digest: str
    born_dead: bool
    collapsed_layer_at_init: bool
    final_loss: float | None
    eval_loss: float | None
    steps_to_target: int | None
    steps_by_target: tuple[int | None, ...]
    loss_auc: float | None
    diverged: bool
    diverged_epoch: int | None
    loss_curve: tuple[float | None, ...]
    dead_rate_init: tuple[float, ...]
    dead_rate_history: tuple[tuple[float, ...], ...] | None
    grad_ratio_history: tuple[tuple[float | None, ...], ...] | None
    diagnostics: NetworkDiagnostics | None
    checkpoint: str | None = None
    final_accuracy: float | None = None
    eval_accuracy: float | None = None
    circuit: CircuitResult | None = field(default=None, repr=False, compare=False)
    model: MLP | None = field(default=None, repr=False, compare=False)  # the trained network (not in JSON)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__
             if k not in ("diagnostics", "circuit", "model")}
        for k in ("loss_curve", "dead_rate_init", "steps_by_target"):
            d[k] = list(d[k])
        for k in ("dead_rate_history", "grad_ratio_history"):
            d[k] = None if d[k] is None else [list(r) for r in d[k]]
        d["diagnostics"] = None if self.diagnostics is None else finite_json(self.diagnostics.to_dict())
        d["circuit"] = None if self.circuit is None else finite_json(summarize_for_compare(self.circuit))
        return d


@dataclass(frozen=True)
class CompareResult:
    """Everything ``probe compare`` reports.

    Attributes:
        scenario: The scenario as run (seeds/epochs overrides applied).
        variants: The parsed variants, in the order given.
        runs: Variant-major, seeds ascending.
        summaries: One per variant (medians over seeds).
        comparisons: One per pair of variants ``(i < j)``, ``a`` = the earlier one.
        steps_per_epoch, budget: Optimiser steps per epoch and in all.
        epochs_completed: Equal to ``scenario.train.epochs`` unless interrupted.
        interrupted: True when a KeyboardInterrupt stopped training early.
        device: Where training ran.
    """

    scenario: Scenario
    variants: tuple[Variant, ...]
    runs: tuple[RunResult, ...]
    summaries: tuple  # of probe.compare.summaries.VariantSummary
    comparisons: tuple[PairedComparison, ...]
    steps_per_epoch: int
    budget: int
    epochs_completed: int
    interrupted: bool
    device: str
    targets: tuple[float, ...] = ()
    definitions: dict = field(default_factory=lambda: dict(DEFINITIONS))

    def __rich__(self):
        from probe.core.display import rich_view

        return rich_view(self)

    def to_dict(self) -> dict:
        return {
            "scenario": self.scenario.to_dict(),
            "variants": [{"label": v.label, "spec": v.spec, "slope": v.slope, "learnable": v.learnable}
                         for v in self.variants],
            "device": self.device,
            "steps_per_epoch": self.steps_per_epoch,
            "budget": self.budget,
            "targets": list(self.targets),
            "epochs_completed": self.epochs_completed,
            "interrupted": self.interrupted,
            "runs": [r.to_dict() for r in self.runs],
            "summaries": [s.to_dict() for s in self.summaries],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "definitions": self.definitions,
        }
