"""``compare_variants``: train activation variants side by side on a scenario and compare convergence.

Every (variant, seed) pair is one *run*. All runs train together as one
batched :class:`probe.engines.training.Ensemble`; for a seed, every variant
starts from the same weights (see ``init_digest``) and sees the same data
order. The steps: check the request, train, measure each run
(:func:`_run_records`), summarise each variant and compare each pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from probe.compare.results import PROBE_BATCH, CompareResult, RunResult, file_safe
from probe.compare.stats import PairedComparison, compare_losses, compare_steps, paired_comparison
from probe.compare.summaries import summarize_runs
from probe.core.devices import check_device  # noqa: F401 (also importable from here, as before)
from probe.core.errors import VariantError
from probe.core.io import StagedOutputs
from probe.core.variants import Variant, parse_variant
from probe.engines.training import convergence
from probe.engines.training.diagnose import activity_at, dataset_loss, member_diagnostics
from probe.engines.training.ensemble import Ensemble
from probe.engines.training.init import init_digest
from probe.engines.training.trainer import Progress, TrainConfig, TrainOutcome, train
from probe.experiment.datasets import make_datasets
from probe.experiment.scenarios import Scenario, load_scenario
from probe.models.loading import save_checkpoint


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _parse_variants(specs: Sequence[str | Variant]) -> list[Variant]:
    if isinstance(specs, (str, Variant)):
        specs = [specs]
    variants = [parse_variant(s) if isinstance(s, str) else s for s in specs]
    if len(variants) < 2:
        raise VariantError("compare needs at least two variants", expected="two or more activation specs",
                           found=f"{len(variants)}", fix="e.g. probe compare relu leaky")
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise VariantError("A variant is listed twice", expected="distinct variants",
                           found=", ".join(labels), fix="drop the duplicate")
    return variants


def compare_variants(variants: Sequence[str | Variant], scenario: str | Path | Scenario, *,
                     seeds: int | None = None, epochs: int | None = None, lr: float | None = None,
                     device: str = "cpu", diagnostics: bool = True, circuits: bool = True, save_dir: str | Path | None = None,
                     outputs: StagedOutputs | None = None, max_memory: int | None = None,
                     progress: Progress | None = None, threads: int | None = 1) -> CompareResult:
    """Train every variant on every seed of a scenario, all at once, and compare convergence.

    Args:
        variants: Two or more activation specs of the grammar (:data:`probe.core.variants.GRAMMAR`:
            ``relu``, ``leaky:0.2``, ``prelu``, ``rrelu``, ``elu``, ``gelu``, ``gelu:tanh``, ``silu``, ...).
        scenario: A shipped scenario name, a TOML path or a :class:`Scenario`.
        seeds: Number of seeds (0..seeds-1), overriding ``train.seeds``.
        epochs: Overrides ``train.epochs`` (0 = initialisation study only).
        lr: Overrides ``train.lr``.
        device: ``cpu`` or ``cuda[:N]``.
        diagnostics: False skips the per-epoch probe-batch history and the final
            evaluation-set diagnostics (``born_dead`` and the init dead rate,
            one forward pass, are kept).
        circuits: Trace output 0's sign circuit for every trained member (needs
            ``diagnostics``; DeepLift for ReLU/leaky members, integrated
            gradients for PReLU ones).
        save_dir: If given, each run's final model is written to
            ``save_dir/<variant>-seed<k>.pt`` as a probe checkpoint, all of them
            at the end and only if training completed.
        outputs: Stage the checkpoints into this output set instead of publishing
            them at once (the CLI publishes checkpoints, JSON and report together).
        max_memory: Memory budget in bytes for the scenario's data and the
            ensemble (default 4 GiB, :mod:`probe.core.limits`).
        progress: Called as ``progress(epochs_done, epochs_total)`` after each epoch.
        threads: torch CPU threads for the duration of the call (restored after);
            None keeps the current setting. The default, 1, is fastest for
            small MLPs: per-op work is tiny, and intra-op threads cost more in
            synchronisation than they save (badly so on a busy machine).

    Returns:
        A :class:`CompareResult`. A KeyboardInterrupt during training does not
        propagate: training stops at the last completed epoch, the result has
        ``interrupted=True``, and no checkpoint is written (a second interrupt,
        during the final diagnostics, propagates).

    Raises:
        VariantError: Bad or duplicate variant specs, fewer than two.
        ScenarioError: Unknown or malformed scenario, bad seeds/epochs.
        ProbeError: An unsupported device.
        ScenarioError: More work (runs x optimiser steps) or memory than the
            documented limits (:meth:`Scenario.check_run`).
    """
    parsed = _parse_variants(variants)
    memory = {} if max_memory is None else {"max_memory": max_memory}
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario, **memory)
    sc = sc.with_overrides(seeds=seeds, epochs=epochs, lr=lr, **memory)
    device = check_device(device)
    sc.check_run(len(parsed), max_memory)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = _compare(parsed, sc, device, diagnostics, circuits, save_dir, progress)
    finally:
        torch.set_num_threads(previous)
    if save_dir is not None and not result.interrupted:
        if outputs is None:
            with StagedOutputs() as own:
                write_checkpoints(result, own)
                own.publish()
        else:
            write_checkpoints(result, outputs)
    return result


def write_checkpoints(result: CompareResult, outputs: StagedOutputs) -> None:
    """Stage each run's trained network at its ``checkpoint`` path (see :func:`compare_variants`)."""
    sc = result.scenario
    where = {"scenario_path": sc.path} if sc.path else {}
    for run in result.runs:
        if run.checkpoint is not None and run.model is not None:
            if sc.model.norm == "batch":  # the member's BatchNorms are folded into its Linears
                where = {**where, "folded_batchnorm": True}
            save_checkpoint(run.model, outputs.stage(run.checkpoint), scenario=sc.name, seed=run.seed,
                            variant=next(v.spec for v in result.variants if v.label == run.variant),
                            epochs=result.epochs_completed, init=sc.model.init, **where)


def _compare(parsed: list[Variant], sc: Scenario, device: str, diagnostics: bool, circuits: bool,
             save_dir: str | Path | None, progress: Progress | None) -> CompareResult:
    train_set, eval_set = make_datasets(sc)
    ens = Ensemble(sc.widths, parsed, list(range(sc.train.seeds)), sc.model.init, device,
                   norm=sc.model.norm, dropout=sc.model.dropout)
    digests = [init_digest(p) for p in ens.initial]
    dead_init, collapsed = activity_at(ens, eval_set.X)
    probe = (train_set.X[:PROBE_BATCH].to(device), train_set.y[:PROBE_BATCH].to(device)) if diagnostics else None
    config = TrainConfig(sc.train.optimizer, sc.train.lr, sc.train.batch_size, sc.train.epochs,
                         sc.train.momentum, loss=sc.train.loss)
    outcome = train(ens, train_set.X, train_set.y, config, probe=probe, progress=progress)
    runs = _run_records(ens, outcome, sc, train_set, eval_set, digests, dead_init, collapsed,
                        diagnostics, circuits, save_dir)
    budget = outcome.steps_per_epoch * outcome.epochs_completed
    summaries = tuple(summarize_runs(v, [r for r in runs if r.variant == v.label], budget) for v in parsed)
    comparisons = tuple(_compare_pair(a.label, b.label, runs, sc, budget)
                        for i, a in enumerate(parsed) for b in parsed[i + 1:])
    return CompareResult(sc, tuple(parsed), tuple(runs), summaries, comparisons, outcome.steps_per_epoch,
                         budget, outcome.epochs_completed, outcome.interrupted, device, targets=sc.targets)


def _compare_pair(a: str, b: str, runs: list[RunResult], sc: Scenario, budget: int) -> PairedComparison:
    return compare_runs(a, b, [r for r in runs if r.variant == a], [r for r in runs if r.variant == b],
                        sc.targets, sc.target, budget, measure=sc.target_measure)


def compare_runs(a: str, b: str, ra: list[RunResult], rb: list[RunResult], targets: tuple[float, ...],
                 target_loss: float, budget: int, measure: str = "loss") -> PairedComparison:
    """Steps at every target (censoring-aware) and the losses of two lists of runs, paired by position.

    The runs may come from different compare calls (the study pairs each
    variant at its own best learning rate), as long as position k is seed k in
    both and every run had the same ``budget`` of steps. ``target_loss`` is the
    primary target (an accuracy when ``measure`` is ``accuracy``). Classifier
    runs also compare their accuracies (higher is better).
    """
    by_target = [compare_steps(a, b, [r.steps_by_target[k] for r in ra], [r.steps_by_target[k] for r in rb],
                               budget, target=t, measure=measure) for k, t in enumerate(targets)]
    primary = by_target[targets.index(target_loss)]
    losses = [compare_losses(m, a, b, [getattr(r, m) for r in ra], [getattr(r, m) for r in rb])
              for m in ("final_loss", "eval_loss", "loss_auc")]
    if any(r.eval_accuracy is not None for r in ra):
        losses += [compare_losses(m, a, b, [getattr(r, m) for r in ra], [getattr(r, m) for r in rb], higher=True)
                   for m in ("final_accuracy", "eval_accuracy")]
    return paired_comparison(primary, by_target, losses)


def _circuits(models: list, diverged: list[int | None], eval_set, loss: str, device: str = "cpu") -> list:
    """The sign circuit of output 0 of every member that did not diverge (None for those that did).

    All members at once (:func:`probe.circuit.batched.trace_circuits`: one
    batched closed-form DeepLift for ReLU-family members). A classifier's circuit
    follows class 0's logit margin (as analyze's); its labels do not fit the K
    logits as targets, and the circuit needs the inputs only. The whole sample
    (at most 2,000 rows) is one batch: per-batch overhead dominates at these sizes.
    """
    from probe.circuit.batched import trace_circuits  # captum: loaded only if a model needs it

    live = [m for m, div in enumerate(diverged) if div is None]
    if not live:
        return [None] * len(models)
    classifier = loss == "cross_entropy" and models[0].widths[-1] > 1
    results = trace_circuits([models[m] for m in live], eval_set.X if loss == "cross_entropy" else eval_set,
                             output=0, target="margin" if classifier else "logit", batch_size=2048, device=device)
    out: list = [None] * len(models)
    for m, result in zip(live, results):
        out[m] = result
    return out


def _run_records(ens: Ensemble, outcome: TrainOutcome, sc: Scenario, train_set, eval_set, digests,
                 dead_init, collapsed, diagnostics: bool, circuits: bool,
                 save_dir: str | Path | None) -> list[RunResult]:
    """One :class:`RunResult` per member: convergence measures, losses, diagnostics, circuit."""
    losses, spe = outcome.step_losses, outcome.steps_per_epoch
    if sc.target_measure == "accuracy":  # first step whose smoothed accuracy is >= the level
        by_target = [convergence.steps_to_target(-outcome.step_accuracy, spe, -t) for t in sc.targets]
    else:
        by_target = [convergence.steps_to_target(losses, spe, t) for t in sc.targets]
    steps = by_target[sc.targets.index(sc.target)]
    aucs = convergence.loss_auc(losses)
    curves = convergence.epoch_curve(losses, spe)
    loss = sc.train.loss
    final, final_acc = dataset_loss(ens, train_set.X, train_set.y, loss=loss)
    final_eval, eval_acc = dataset_loss(ens, eval_set.X, eval_set.y, loss=loss)
    diags = member_diagnostics(ens, eval_set.X, eval_set.y, loss=loss) if diagnostics else [None] * ens.members
    cpu_ens = ens if ens.device.type == "cpu" else ens.to("cpu")  # one transfer, not one per member and tensor
    models = [cpu_ens.to_mlp(m) for m in range(ens.members)]
    traced = _circuits(models, outcome.diverged_epoch, eval_set, loss, str(ens.device)) if diagnostics and circuits \
        else [None] * ens.members
    runs = []
    for m in range(ens.members):
        variant, seed = ens.member(m)
        div = outcome.diverged_epoch[m]
        model = models[m]
        runs.append(RunResult(
            variant=variant.label, seed=seed, init_digest=digests[m % len(ens.seeds)],
            # born dead: a collapsed layer that passes nothing (slope 0) makes the output constant
            born_dead=bool(collapsed[m]) and variant.slope == 0 and not variant.learnable,
            collapsed_layer_at_init=bool(collapsed[m]),
            final_loss=None if div is not None else _num(float(final[m])),
            eval_loss=None if div is not None else _num(float(final_eval[m])),
            final_accuracy=None if div is not None or final_acc is None else _num(float(final_acc[m])),
            eval_accuracy=None if div is not None or eval_acc is None else _num(float(eval_acc[m])),
            steps_to_target=steps[m], steps_by_target=tuple(s[m] for s in by_target), loss_auc=aucs[m], diverged=div is not None, diverged_epoch=div,
            loss_curve=tuple(curves[m]), dead_rate_init=tuple(dead_init[m].tolist()),
            dead_rate_history=None if outcome.dead_rate is None
            else tuple(tuple(r) for r in outcome.dead_rate[:, m].tolist()),
            grad_ratio_history=None if outcome.grad_ratio is None
            else tuple(tuple(_num(v) for v in r) for r in outcome.grad_ratio[:, m].tolist()),
            diagnostics=diags[m], circuit=traced[m], model=model,
            checkpoint=None if save_dir is None else str(Path(save_dir) / f"{file_safe(variant.label)}-seed{seed}.pt")))
    return runs
