"""``compare``: train activation variants side by side on a scenario and compare convergence.

Every (variant, seed) pair is one *run*. All runs train together as one
batched :class:`probe.engines.training.Ensemble`; for a seed, every variant starts
from the same weights (see ``init_digest``) and sees the same data order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from probe.circuit import CircuitResult, summarize_for_compare
from probe.circuit import circuit as trace_circuit
from probe.diagnostics import NetworkDiagnostics
from probe.core.errors import ProbeError, VariantError
from probe.core.io import finite_json
from probe.models import save_checkpoint
from probe.experiment.scenarios import Scenario, load_scenario, make_datasets
from probe.compare.stats import PairedComparison, VariantSummary, compare_steps, summarize_variant
from probe.engines.training import convergence
from probe.engines.training.diagnose import activity_at, dataset_loss, member_diagnostics
from probe.engines.training.ensemble import Ensemble
from probe.engines.training.init import init_digest
from probe.engines.training.trainer import Progress, TrainConfig, train
from probe.core.variants import Variant, parse_variant

PROBE_BATCH = 128

DEFINITIONS = {
    "final_loss": "training-set MSE of the final parameters (null if the run diverged)",
    "eval_loss": "evaluation-set MSE of the final parameters",
    "steps_to_target": "first optimiser step t at which the running mean of the last steps_per_epoch "
                       "minibatch losses is <= target_loss (null if never)",
    "loss_auc": "mean of the per-step minibatch losses over all steps",
    "loss_curve": "mean minibatch loss of each epoch",
    "born_dead": "collapsed at initialisation on the evaluation set: some hidden layer has every "
                 "unit with z <= 0 on every sample",
    "dead_rate_history": "per epoch (row 0 = init) and hidden layer, fraction of units dead on a fixed "
                         f"probe batch of {PROBE_BATCH} training samples",
    "grad_ratio_history": "same rows, mean |dL/dz| on z <= 0 over mean |dL/dz| on z > 0 (null if undefined)",
    "speedup": "median over seeds of steps_a / steps_b; > 1 means b is faster",
}


def file_safe(label: str) -> str:
    """A variant label usable in file names: ``leaky:0.2`` -> ``leaky-0.2``."""
    return label.replace(":", "-")


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


@dataclass(frozen=True)
class RunResult:
    """One (variant, seed) run. Definitions of the fields: :data:`DEFINITIONS`."""

    variant: str
    seed: int
    init_digest: str
    born_dead: bool
    final_loss: float | None
    eval_loss: float | None
    steps_to_target: int | None
    loss_auc: float | None
    diverged: bool
    diverged_epoch: int | None
    loss_curve: tuple[float | None, ...]
    dead_rate_init: tuple[float, ...]
    dead_rate_history: tuple[tuple[float, ...], ...] | None
    grad_ratio_history: tuple[tuple[float | None, ...], ...] | None
    diagnostics: NetworkDiagnostics | None
    checkpoint: str | None = None
    circuit: CircuitResult | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("diagnostics", "circuit")}
        for k in ("loss_curve", "dead_rate_init"):
            d[k] = list(d[k])
        for k in ("dead_rate_history", "grad_ratio_history"):
            d[k] = None if d[k] is None else [list(r) for r in d[k]]
        d["diagnostics"] = None if self.diagnostics is None else _finite(self.diagnostics.to_dict())
        d["circuit"] = None if self.circuit is None else _finite(summarize_for_compare(self.circuit))
        return d


def _finite(obj: object) -> object:
    """Strict JSON (NaN/inf -> None): only a frozen diverged run has such values."""
    return finite_json(obj)


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
    summaries: tuple[VariantSummary, ...]
    comparisons: tuple[PairedComparison, ...]
    steps_per_epoch: int
    budget: int
    epochs_completed: int
    interrupted: bool
    device: str
    definitions: dict = field(default_factory=lambda: dict(DEFINITIONS))

    def to_dict(self) -> dict:
        return {
            "scenario": self.scenario.to_dict(),
            "variants": [{"label": v.label, "spec": v.spec, "slope": v.slope, "learnable": v.learnable}
                         for v in self.variants],
            "device": self.device,
            "steps_per_epoch": self.steps_per_epoch,
            "budget": self.budget,
            "epochs_completed": self.epochs_completed,
            "interrupted": self.interrupted,
            "runs": [r.to_dict() for r in self.runs],
            "summaries": [s.to_dict() for s in self.summaries],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "definitions": self.definitions,
        }


def _parse_variants(specs: Sequence[str | Variant]) -> list[Variant]:
    variants = [parse_variant(s) if isinstance(s, str) else s for s in specs]
    if len(variants) < 2:
        raise VariantError("compare needs at least two variants", expected="two or more activation specs",
                           found=f"{len(variants)}", fix="e.g. probe compare relu leaky")
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise VariantError("A variant is listed twice", expected="distinct variants",
                           found=", ".join(labels), fix="drop the duplicate")
    return variants


def _check_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ProbeError("CUDA was asked for but is not available", expected="a CUDA GPU",
                         found="torch.cuda.is_available() is False", fix="use --device cpu")
    try:
        torch.device(device)
    except RuntimeError:
        raise ProbeError(f"Unknown device '{device}'", expected="cpu or cuda[:N]", found=device,
                         fix="use --device cpu or --device cuda") from None
    return device


def compare(variants: list[str], scenario: str | Path | Scenario, *, seeds: int | None = None,
            epochs: int | None = None, device: str = "cpu", diagnostics: bool = True, circuits: bool = True,
            save_dir: str | Path | None = None, progress: Progress | None = None,
            threads: int | None = 1) -> CompareResult:
    """Train every variant on every seed of a scenario, all at once, and compare convergence.

    Args:
        variants: Two or more activation specs (``relu``, ``leaky``, ``leaky:0.2``, ``prelu``).
        scenario: A shipped scenario name, a TOML path or a :class:`Scenario`.
        seeds: Number of seeds (0..seeds-1), overriding ``train.seeds``.
        epochs: Overrides ``train.epochs`` (0 = initialisation study only).
        device: ``cpu`` or ``cuda``.
        diagnostics: False skips the per-epoch probe-batch history and the final
            evaluation-set diagnostics (``born_dead`` and the init dead rate,
            one forward pass, are kept).
        circuits: Trace output 0's sign circuit for every trained member (needs
            ``diagnostics``; DeepLift for ReLU/leaky members, integrated
            gradients for PReLU ones).
        save_dir: If given, each run's final model is written to
            ``save_dir/<variant>-seed<k>.pt`` as a probe checkpoint.
        progress: Called as ``progress(epochs_done, epochs_total)`` after each epoch.
        threads: torch CPU threads for the duration of the call (restored after);
            None keeps the current setting. The default, 1, is fastest for
            small MLPs: per-op work is tiny, and intra-op threads cost more in
            synchronisation than they save (badly so on a busy machine).

    Returns:
        A :class:`CompareResult`. A KeyboardInterrupt during training does not
        propagate: training stops at the last completed epoch and the result
        has ``interrupted=True`` (a second interrupt, during the final
        diagnostics or checkpoint writing, propagates).

    Raises:
        VariantError: Bad or duplicate variant specs, fewer than two.
        ScenarioError: Unknown or malformed scenario, bad seeds/epochs.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _compare(variants, scenario, seeds, epochs, device, diagnostics, circuits, save_dir, progress)
    finally:
        torch.set_num_threads(previous)


def _compare(variants, scenario, seeds, epochs, device, diagnostics, circuits, save_dir,
             progress) -> CompareResult:
    parsed = _parse_variants(variants)
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    sc = sc.with_overrides(seeds=seeds, epochs=epochs)
    device = _check_device(device)
    train_set, eval_set = make_datasets(sc)
    ens = Ensemble(sc.widths, parsed, list(range(sc.train.seeds)), sc.model.init, device)
    digests = [init_digest(p) for p in ens.initial]
    dead_init, born_dead = activity_at(ens, eval_set.X)
    probe = (train_set.X[:PROBE_BATCH].to(device), train_set.y[:PROBE_BATCH].to(device)) if diagnostics else None
    config = TrainConfig(sc.train.optimizer, sc.train.lr, sc.train.batch_size, sc.train.epochs,
                         sc.train.momentum)
    outcome = train(ens, train_set.X, train_set.y, config, probe=probe, progress=progress)

    losses, spe = outcome.step_losses, outcome.steps_per_epoch
    steps = convergence.steps_to_target(losses, spe, sc.train.target_loss)
    aucs = convergence.loss_auc(losses)
    curves = convergence.epoch_curve(losses, spe)
    final = dataset_loss(ens, train_set.X, train_set.y)
    final_eval = dataset_loss(ens, eval_set.X, eval_set.y)
    # on the CPU: the evaluation set is small, and some accumulators' result() assume CPU tensors
    cpu_ens = ens if ens.device.type == "cpu" else ens.to("cpu")
    diags = member_diagnostics(cpu_ens, eval_set.X, eval_set.y) if diagnostics else [None] * ens.members
    # the sign circuit of output 0 per trained member (diverged ones have no meaningful circuit)
    traced = [trace_circuit(cpu_ens.to_mlp(m), eval_set, output=0)
                if diagnostics and circuits and outcome.diverged_epoch[m] is None else None
                for m in range(ens.members)]
    save = Path(save_dir) if save_dir is not None else None

    runs = []
    for m in range(ens.members):
        variant, seed = ens.member(m)
        div = outcome.diverged_epoch[m]
        ckpt = None
        if save is not None:
            ckpt = str(save / f"{file_safe(variant.label)}-seed{seed}.pt")
            where = {"scenario_path": sc.path} if sc.path else {}
            save_checkpoint(ens.to_mlp(m), ckpt, scenario=sc.name, seed=seed, variant=variant.spec,
                            epochs=outcome.epochs_completed, init=sc.model.init, **where)
        runs.append(RunResult(
            variant=variant.label, seed=seed, init_digest=digests[m % len(ens.seeds)],
            born_dead=bool(born_dead[m]),
            final_loss=None if div is not None else _num(float(final[m])),
            eval_loss=None if div is not None else _num(float(final_eval[m])),
            steps_to_target=steps[m], loss_auc=aucs[m], diverged=div is not None, diverged_epoch=div,
            loss_curve=tuple(curves[m]), dead_rate_init=tuple(dead_init[m].tolist()),
            dead_rate_history=None if outcome.dead_rate is None
            else tuple(tuple(r) for r in outcome.dead_rate[:, m].tolist()),
            grad_ratio_history=None if outcome.grad_ratio is None
            else tuple(tuple(_num(v) for v in r) for r in outcome.grad_ratio[:, m].tolist()),
            diagnostics=diags[m], checkpoint=ckpt, circuit=traced[m]))

    budget = spe * outcome.epochs_completed
    summaries = tuple(_summary(v, [r for r in runs if r.variant == v.label]) for v in parsed)
    comparisons = []
    for i in range(len(parsed)):
        for j in range(i + 1, len(parsed)):
            a, b = parsed[i].label, parsed[j].label
            ra = [r.steps_to_target for r in runs if r.variant == a]
            rb = [r.steps_to_target for r in runs if r.variant == b]
            comparisons.append(compare_steps(a, b, ra, rb, budget))
    return CompareResult(sc, tuple(parsed), tuple(runs), summaries, tuple(comparisons), spe, budget,
                         outcome.epochs_completed, outcome.interrupted, device)


def _layer_mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _summary(variant: Variant, runs: list[RunResult]) -> VariantSummary:
    def diag(r: RunResult, fn):
        return None if r.diagnostics is None else fn(r.diagnostics)

    return summarize_variant(
        variant.label, variant.slope,
        final_loss=[r.final_loss for r in runs], steps=[r.steps_to_target for r in runs],
        loss_auc=[r.loss_auc for r in runs], diverged=[r.diverged for r in runs],
        born_dead=[r.born_dead for r in runs],
        dead_rate_init=[_layer_mean(r.dead_rate_init) for r in runs],
        dead_rate_final=[diag(r, lambda d: _layer_mean([lay.activity.dead_rate for lay in d.layers]))
                         for r in runs],
        grad_ratio=[diag(r, lambda d: _layer_mean([lay.gradient.grad_ratio for lay in d.layers
                                                   if lay.gradient is not None])) for r in runs],
        route_share=[diag(r, lambda d: d.sign[0].all_samples.activation_route_share if d.sign else None)
                     for r in runs],
        circuit=[None if r.circuit is None else summarize_for_compare(r.circuit) for r in runs])
