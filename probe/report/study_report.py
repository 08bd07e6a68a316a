"""The study's pages: one compare report per scenario and an index that answers the thread's three claims.

Everything here is rendering: the numbers come from each scenario's
:class:`~probe.compare.results.CompareResult`, its summaries and the study's
learning-rate grid (:mod:`probe.experiment.study`); no sentence carries a typed
number. The whole study is written as one output set
(:class:`probe.core.io.StagedOutputs`): reports, index and figures appear
together, or, if anything fails, not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from probe.compare.results import CompareResult
from probe.compare.stats import PairedComparison
from probe.core.io import StagedOutputs
from probe.experiment.study import QUESTIONS, ScenarioOutcome
from probe.report.compare_report import BORN_DEAD_NOTE, write_compare_report
from probe.report.figures import new_figure
from probe.report.fmt import fmt, pct
from probe.report.markdown import ReportWriter, environment_lines, md_table

SIGNED = ("signed_regression", "anticorrelated", "mixed_correlation", "high_lr", "diabetes", "underfitting")


def write_study(outcomes: Sequence[ScenarioOutcome], out_dir: str | Path, command: str = "probe study") -> Path:
    """Write ``out_dir/<scenario>.md`` (with figures) per scenario and ``out_dir/index.md``, all at once.

    Returns:
        The index path.
    """
    out = Path(out_dir)
    with StagedOutputs() as outputs:
        reports = [write_compare_report(o.result, out / f"{o.name}.md", command=f"{command}  # scenario {o.name}",
                                        outputs=outputs).name for o in outcomes]
        with ReportWriter(out / "index.md", outputs) as rw:
            write_index(outcomes, reports, rw, command)
        outputs.publish()
    return out / "index.md"


# ---------------------------------------------------------------- small pieces
def _span(values: Sequence[float | None], fmt_one: Callable[[float], str]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "not measured"
    lo, hi = min(vals), max(vals)
    return fmt_one(lo) if fmt_one(lo) == fmt_one(hi) else f"{fmt_one(lo)} to {fmt_one(hi)}"


def _vs_relu(comparisons: Sequence[PairedComparison], label: str) -> PairedComparison | None:
    return next((c for c in comparisons if c.a == "relu" and c.b == label), None)


def _summary(result: CompareResult, label: str):
    return next((s for s in result.summaries if s.variant == label), None)


def leaders(c: PairedComparison | None) -> str:
    """Who leads at which targets, e.g. ``leaky:0.3 @ 0.1, 0.2; relu @ 0.05`` (``—``: nobody, anywhere)."""
    if c is None:
        return "—"
    parts = []
    for w in dict.fromkeys(t.winner for t in c.by_target if t.winner):
        parts.append(f"{w} @ " + ", ".join(f"{t.target:g}" for t in c.by_target if t.winner == w))
    return "; ".join(parts) or "—"


def _final(c: PairedComparison | None) -> str:
    lc = None if c is None else next((x for x in c.losses if x.measure == "final_loss"), None)
    return "—" if lc is None else (f"{lc.winner} lower" if lc.winner else "inconclusive")


def _tally(outcomes: Sequence[ScenarioOutcome], label: str, names: Sequence[str], tuned: bool) -> str:
    """At the primary target: scenarios where ``label`` led, where relu led, where it was inconclusive."""
    ahead, behind, open_ = [], [], []
    for o in outcomes:
        if o.name not in names:
            continue
        c = _vs_relu(o.tuned if tuned else o.result.comparisons, label)
        if c is None:
            continue
        (ahead if c.winner == label else behind if c.winner == "relu" else open_).append(f"`{o.name}`")
    return (f"{label} first in {len(ahead)} ({', '.join(ahead) or 'none'}), relu first in {len(behind)} "
            f"({', '.join(behind) or 'none'}), inconclusive in {len(open_)} ({', '.join(open_) or 'none'})")


def lr_heatmap_figure(outcome: ScenarioOutcome) -> Figure:
    """Median mean step loss (area under the loss curve) per variant and learning rate; the best rate boxed."""
    labels = [s.variant for s in outcome.result.summaries]
    lrs = [c.lr for c in outcome.grid]
    values = np.array([[next(s.median_loss_auc for s in c.result.summaries if s.variant == v) or np.nan
                        for c in outcome.grid] for v in labels], dtype=float)
    fig, ax = new_figure(1.3 * len(lrs) + 3.2, 0.45 * len(labels) + 1.6)
    image = ax.imshow(np.log10(values), aspect="auto", cmap="viridis_r")
    ax.grid(False)
    ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_yticks(range(len(labels)), labels)
    for i, v in enumerate(labels):
        for j, lr in enumerate(lrs):
            best = outcome.best_lr and outcome.best_lr.get(v) == lr
            ax.text(j, i, fmt(values[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(values[i, j]) and values[i, j] > np.nanmedian(values) else "black",
                    fontweight="bold" if best else "normal",
                    bbox={"boxstyle": "square,pad=0.2", "fc": "none", "ec": "red"} if best else None)
    ax.set_xlabel("learning rate (the scenario's own is the second column)")
    ax.set_title(f"{outcome.name}: mean step loss (lower is faster); box = each variant's best", loc="left",
                 fontsize=10)
    fig.colorbar(image, ax=ax, label="log10 mean step loss")
    return fig


# ---------------------------------------------------------------- the index
def write_index(outcomes: Sequence[ScenarioOutcome], reports: Sequence[str], rw: ReportWriter,
                command: str) -> None:
    """The index: method, a summary table, the three claims, then each scenario with its evidence."""
    total = sum(o.seconds for o in outcomes)
    seeds = outcomes[0].result.scenario.train.seeds if outcomes else 0
    lrs = sorted({round(c.lr / o.result.scenario.train.lr, 3) for o in outcomes for c in o.grid})
    rw.add("# Does leaky ReLU converge faster than ReLU? A measured answer",
           f"Every scenario trains each variant on the same {seeds} seeds: for a seed, every variant starts "
           "from identical weights and sees the same data order, at every learning rate. Convergence is "
           "measured as a curve, not a point: the steps each run needs to reach the scenario's target loss "
           "and 2, 4 and 8 times it (the epoch-smoothed training loss). A pair of runs (same seed) is "
           "*decided* when one got there first; pairs where neither got there are ties and carry no "
           "evidence. A variant *leads* at a target only when it wins the decided pairs by a two-sided "
           "exact sign test at p < 0.05; otherwise the verdict is *inconclusive*, never 'no difference'. "
           "Final losses are compared with the paired Wilcoxon test. Each scenario also runs a "
           f"learning-rate grid ({', '.join(f'{f:g}x' for f in lrs)} its own rate), and each variant is "
           "compared again at its own best rate (lowest median mean step loss).",
           "\n".join(environment_lines(command)),
           f"Regenerate with `{command}` (it took {total / 60:.1f} minutes on this machine: "
           + ", ".join(f"{o.name} {o.seconds:.0f} s" for o in outcomes) + ").")
    rw.add("## Summary: who reaches which loss first, relu against each alternative", md_table(
        ["scenario", "alternative", "leads at (shared lr)", "final loss", "leads at (each at its best lr)",
         "final loss (best lr)"],
        [[f"[{o.name}]({report})", c.b, leaders(c), _final(c), leaders(_vs_relu(o.tuned, c.b)),
          _final(_vs_relu(o.tuned, c.b))]
         for o, report in zip(outcomes, reports) for c in o.result.comparisons if c.a == "relu"]),
        "*'leaky:0.3 @ 0.1, 0.2' means leaky:0.3 reached losses 0.1 and 0.2 first (sign test p < 0.05); a "
        "dash: no variant led at any target. 'final loss': which is lower after training (Wilcoxon p < "
        "0.05), or inconclusive.*")
    claims(outcomes, rw)
    for o, report in zip(outcomes, reports):
        scenario_section(o, report, rw)


def claims(outcomes: Sequence[ScenarioOutcome], rw: ReportWriter) -> None:
    """The thread's three claims, each with its evidence and its limits, from the numbers."""
    by = {o.name: o for o in outcomes}
    labels = [v.label for v in outcomes[0].result.variants if v.label != "relu"] if outcomes else []
    signed = [n for n in SIGNED if n in by]
    lines = [f"- {label}, shared rate: {_tally(outcomes, label, signed, tuned=False)}; each at its best "
             f"rate: {_tally(outcomes, label, signed, tuned=True)}." for label in labels]
    rescue = []
    for name in ("deep_narrow", "deep_narrow_rai"):
        if name in by:
            r = by[name].result
            relu = _summary(r, "relu")
            born = f"{relu.born_dead}/{relu.runs} relu networks born dead" if relu else ""
            rescue.append(f"- `{name}` ({born}): " + "; ".join(
                f"vs {c.b}: {c.primary_verdict}" for c in r.comparisons if c.a == "relu"))
    rw.add("## Claim 1: leaky ReLU converges faster when the output must take both signs",
           "At the scenario's target loss (the primary target), on the scenarios whose targets take both "
           "signs:\n\n" + "\n".join(lines),
           "Dying at initialisation against building negative outputs: deep_narrow kills many ReLU networks "
           "at initialisation; deep_narrow_rai is the same problem under RAI initialisation, where ReLU is "
           "rarely born dead. A lead that shrinks under RAI was a rescue from dead networks, not faster "
           "learning:\n\n" + "\n".join(rescue),
           "*Limits: small MLPs (at most 32 units wide), MSE regression, Adam with the scenario's "
           "recipe, 20 epochs; 'first' is about steps to a loss level, and the answer changes with the level "
           "(see the per-target tables in each report). The best learning rate is chosen from a grid of four, "
           "so 'tuned' means tuned on that grid only.*")
    acts = []
    for name in ("positive_regression", "signed_regression", "anticorrelated", "mixed_correlation"):
        if name in by:
            r = by[name].result
            verdicts = "; ".join(f"{c.b}: {leaders(c)}" for c in r.comparisons if c.a == "relu")
            means = ", ".join(f"{s.variant} {fmt(s.act_mean)}" for s in r.summaries)
            acts.append(f"- `{name}`: leads against relu — {verdicts}. Mean activation per layer: {means}.")
    rw.add("## Claim 2: it depends on the data (how inputs correlate with the output; leaky 'normalises')",
           "The same variants on targets that are all positive, that fall as every input rises, that rise "
           "with half the inputs and fall with the rest, and of both signs; with the median over seeds of "
           "the mean activation per layer (ReLU outputs are never negative; leaky ones pull the mean "
           "towards 0, the bias-shift argument of Clevert et al. 2016):\n\n" + "\n".join(acts),
           "*Limits: four synthetic teachers and one small real data set (diabetes); the mean activation is "
           "measured after training on the evaluation set.*")
    grad, share, routes = [], [], []
    for o in outcomes:
        s = _summary(o.result, "leaky")
        if s is None:
            continue
        grad.append(s.grad_ratio)
        share.append(s.neg_grad_fraction)
        routes.append(s.negative_route_share)
    under = by.get("underfitting")
    under_line = "" if under is None else (
        "\n\nUnderfitting (one hidden layer of 4 units): "
        + "; ".join(f"vs {c.b}: {c.verdict}" for c in under.result.comparisons if c.a == "relu") + ".")
    rw.add("## Claim 3: the negative side's gradient is ~100x smaller, so it hardly matters",
           "For leaky (slope 0.01), medians over seeds across scenarios: the negative region's gradient is "
           f"{_span([1 / g if g else None for g in grad], lambda v: f'{v:.0f}x')} smaller than the positive "
           "region's (geometric mean of grad_ratio over layers); the negative region contributes "
           f"{_span(share, lambda v: f'{100 * v:.1f}%')} of the gradient's squared norm (weights and biases); "
           f"and negative activations carry {_span(routes, lambda v: f'{100 * v:.1f}%')} of the downward mass "
           "into the output over the negative predictions (activation route share)." + under_line,
           "*Limits: 'hardly matters' is read here as 'no lead at the targets'; a small gradient can still "
           "matter where ReLU has none at all (dead units, see Claim 1).*")


def scenario_section(o: ScenarioOutcome, report: str, rw: ReportWriter) -> None:
    """One scenario: its question, convergence, learning rates, tuned verdicts, gradient and routes."""
    r = o.result
    sc = r.scenario
    rw.add(f"## {sc.name}", f"**{QUESTIONS.get(sc.name, sc.description)}** {sc.description}")
    rw.add(md_table(["variant", "final loss", "steps to target", "reached", "born dead", "collapsed at init",
                     "diverged", "dead at end"],
                    [[s.variant, fmt(s.median_final_loss), fmt(s.median_steps_to_target), f"{s.reached}/{s.runs}",
                      f"{s.born_dead}/{s.runs}", f"{s.collapsed_at_init}/{s.runs}", f"{s.diverged}/{s.runs}",
                      pct(s.dead_rate_final)] for s in r.summaries]), BORN_DEAD_NOTE)
    rw.add("\n".join(f"- **{c.a} vs {c.b}** (shared rate {sc.train.lr:g}): {c.verdict}"
                     for c in r.comparisons if c.a == "relu"))
    if len(o.grid) > 1 and o.best_lr:
        top = max(c.lr for c in o.grid)
        rows = []
        for s in r.summaries:
            best = o.best_lr.get(s.variant)
            at_best = _summary(o.cell(best), s.variant) if best is not None else None
            rows.append([s.variant, f"{best:g}" + (" (grid edge)" if best in (top, min(c.lr for c in o.grid))
                                                    else ""),
                         fmt(at_best.median_loss_auc if at_best else None), fmt(s.median_loss_auc)])
        rw.add(md_table(["variant", "best learning rate", "mean step loss at best", "at the shared rate"], rows))
        rw.figure(lr_heatmap_figure(o), f"lr_{sc.name}.png", f"mean step loss per variant and learning rate, {sc.name}")
        rw.add("\n".join(f"- **{c.a} vs {c.b}**, each at its best rate: {c.verdict}" for c in o.tuned))
    rw.add("Gradient through the negative side, mean activation and the route to negative outputs (medians "
           "over seeds; grad_ratio: geometric mean over layers; others: layer means):",
           md_table(["variant", "slope", "grad_ratio", "i.e. smaller by", "neg_grad_fraction", "mean activation",
                     "activation route (neg. preds)"],
                    [[s.variant, f"{s.slope:.3g} (learned)" if s.learnable and s.slope is not None
                      else f"{s.nominal_slope:g}", fmt(s.grad_ratio),
                      "—" if not s.grad_ratio else f"{1 / s.grad_ratio:.0f}x", pct(s.neg_grad_fraction),
                      fmt(s.act_mean), pct(s.negative_route_share)] for s in r.summaries]),
           f"Full report with figures: [{report}]({report}).")
