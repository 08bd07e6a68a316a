"""The study's pages: one compare report per scenario and an index that answers the questions.

Everything here is rendering: the numbers come from each scenario's
:class:`~probe.compare.results.CompareResult` and its summaries. The whole study
is written as one output set (:class:`probe.core.io.StagedOutputs`): the reports
and the index appear together, or, if anything fails, not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from probe.compare.results import CompareResult
from probe.core.io import StagedOutputs, atomic_write_text
from probe.experiment.study import QUESTIONS, ScenarioOutcome
from probe.report.compare_report import BORN_DEAD_NOTE, write_compare_report
from probe.report.fmt import fmt, pct
from probe.report.markdown import environment_lines, md_table


def write_study(outcomes: Sequence[ScenarioOutcome], out_dir: str | Path, command: str = "probe study") -> Path:
    """Write ``out_dir/<scenario>.md`` (with figures) per scenario and ``out_dir/index.md``, all at once.

    Returns:
        The index path.
    """
    out = Path(out_dir)
    with StagedOutputs() as outputs:
        reports = [write_compare_report(o.result, out / f"{o.name}.md", command=f"{command}  # scenario {o.name}",
                                        outputs=outputs).name for o in outcomes]
        write_index(outcomes, reports, outputs.stage(out / "index.md"), command)
        outputs.publish()
    return out / "index.md"


def variant_gradient_rows(result: CompareResult) -> list[list[str]]:
    """Per variant: medians over seeds of the layer-mean grad_ratio, upstream ratio, neg share, routes."""
    rows = []
    for s in result.summaries:
        slope = f"{s.nominal_slope:g}"
        if s.learnable:  # a learned slope: its median over seeds of the layer mean
            slope = "—" if s.slope is None else f"{s.slope:.3g} (learned)"
        ratio = s.grad_ratio
        rows.append([s.variant, slope, fmt(ratio), "—" if not ratio else f"{1 / ratio:.0f}x",
                     fmt(s.upstream_ratio), pct(s.neg_grad_fraction), pct(s.negative_route_share)])
    return rows


def _comparison(result: CompareResult, b: str):
    return next((c for c in result.comparisons if c.a == "relu" and c.b == b), None)


def _variant_medians(result: CompareResult, label: str) -> dict[str, float | None]:
    s = next((s for s in result.summaries if s.variant == label), None)
    if s is None:
        return {"grad_ratio": None, "upstream": None, "share": None, "route": None}
    return {"grad_ratio": s.grad_ratio, "upstream": s.upstream_ratio, "share": s.neg_grad_fraction,
            "route": s.negative_route_share}


def _span(values: Sequence[float | None], fmt) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "not measured"
    lo, hi = min(vals), max(vals)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)} to {fmt(hi)}"


def bottom_line(result: CompareResult) -> str:
    """One sentence: which alternatives were clearly faster or slower than relu, which not different."""
    faster, slower, same = [], [], []
    for c in result.comparisons:
        if c.a != "relu":
            continue
        (faster if c.winner == c.b else slower if c.winner == "relu" else same).append(c.b)
    parts = [f"clearly faster than relu: {', '.join(faster) or 'none'}",
             f"clearly slower: {', '.join(slower) or 'none'}",
             f"no clear difference: {', '.join(same) or 'none'}"]
    return "In short, " + "; ".join(parts) + "."


def at_a_glance(outcomes: Sequence[ScenarioOutcome]) -> str:
    """Per alternative: in which scenarios it was clearly faster, clearly slower, or not different."""
    labels = []
    for o in outcomes:
        labels += [c.b for c in o.result.comparisons if c.a == "relu" and c.b not in labels]
    lines = []
    for label in labels:
        faster, slower, same = [], [], []
        for o in outcomes:
            c = _comparison(o.result, label)
            if c is None:
                continue
            name = o.result.scenario.name
            if c.winner == label:
                faster.append(f"{name} ({c.speedup:.3g}x)")
            elif c.winner == "relu":
                slower.append(f"{name} ({1 / c.speedup:.3g}x)")
            else:
                same.append(name)
        lines.append(f"- **{label}** against relu: faster in {len(faster)} ({', '.join(faster) or 'none'}); "
                     f"slower in {len(slower)} ({', '.join(slower) or 'none'}); no clear difference in "
                     f"{len(same)} ({', '.join(same) or 'none'}).")
    return "**At a glance** (steps to the target loss, paired by seed; the factor is how many times " \
           "fewer steps the faster variant needed):\n\n" + "\n".join(lines)


def answers(outcomes: Sequence[ScenarioOutcome]) -> list[str]:
    """The index's answers, each sentence built from the measured numbers."""
    by_name = {o.result.scenario.name: o.result for o in outcomes}
    out = [at_a_glance(outcomes)]
    signed = by_name.get("signed_regression")
    if signed is not None:
        lines = [f"  - vs {c.b}: {c.verdict}" for c in signed.comparisons if c.a == "relu"]
        out.append("**1. Does leaky ReLU converge faster when the output must take both signs?** "
                   + bottom_line(signed) + " On `signed_regression`:\n" + "\n".join(lines))
    rows = []
    shifted = [by_name[n] for n in ("positive_regression", "anticorrelated") if n in by_name]
    for name in ("positive_regression", "anticorrelated"):
        if name in by_name and signed is not None:
            for c in by_name[name].comparisons:
                if c.a != "relu":
                    continue
                before = _comparison(signed, c.b)
                rows.append(f"  - `{name}`, relu vs {c.b}: {c.verdict}"
                            + (f" (signed: median ratio {before.speedup:.3g})" if before and before.speedup else ""))
    if rows:
        summary = " ".join(f"`{r.scenario.name}`: {bottom_line(r)}" for r in shifted)
        out.append("**2. Does the answer change when the targets are all positive, or fall as the inputs "
                   f"rise?** {summary} Ratios are relu steps / alternative steps, paired by seed:\n"
                   + "\n".join(rows))
    leaky = [_variant_medians(o.result, "leaky") for o in outcomes]
    ratios = [m["grad_ratio"] for m in leaky]
    ups = [m["upstream"] for m in leaky]
    shares = [m["share"] for m in leaky]
    if any(r is not None for r in ratios):
        up_vals = [u for u in ups if u is not None]
        if up_vals and all(0.5 <= u <= 2 for u in up_vals):
            why = "the upstream gradient is about as large on the negative side as on the positive side, " \
                  "so the slope alone sets the ratio"
        elif up_vals and max(up_vals) < 0.5:
            why = "the upstream gradient is itself smaller on the negative side, so the ratio is below the slope"
        else:
            why = "the upstream gradient differs between the sides, by scenario"
        out.append("**3. Is the negative side's gradient really ~100x smaller with leaky ReLU (slope 0.01), "
                   "once the upstream gradient is counted? How much learning flows through it?** "
                   f"The measured grad_ratio (median over seeds, mean over layers) is "
                   f"{_span(ratios, lambda v: f'{v:.3g}')} across scenarios, i.e. "
                   f"{_span([1 / r if r else None for r in ratios], lambda v: f'{v:.0f}x')} smaller; the "
                   f"upstream ratio (grad_ratio / slope) is {_span(ups, lambda v: f'{v:.2g}')}: {why}. "
                   f"The negative region's fraction of the gradient's squared norm (weights and biases, neg_grad_fraction) is "
                   f"{_span(shares, lambda v: f'{100 * v:.1f}%')}. With ReLU both are exactly 0.")
    route_lines = []
    for label in ("leaky", "leaky:0.1", "leaky:0.3", "prelu"):
        vals = [_variant_medians(o.result, label)["route"] for o in outcomes
                if any(v.label == label for v in o.result.variants)]
        if vals:
            route_lines.append(f"  - {label}: {_span(vals, lambda v: f'{100 * v:.1f}%')} of the downward "
                               "mass into the output arrives through negative activations")
    if route_lines:
        out.append("**4. Through which route do the networks build negative outputs?** A ReLU network "
                   "can only use negative weights (its activation route share is exactly 0). Over the "
                   "samples predicted negative, across scenarios:\n" + "\n".join(route_lines)
                   + "\n\nThe rest arrives through negative weights on positive activations, as in ReLU.")
    return out


def write_index(outcomes: Sequence[ScenarioOutcome], reports: Sequence[str], path: Path, command: str) -> Path:
    """The index page: per scenario, the question, the paired verdicts and the gradient figures."""
    total = sum(o.seconds for o in outcomes)
    parts = ["# Does leaky ReLU converge faster than ReLU? A measured answer",
             "Every scenario trains each variant on the same seeds: for a seed, every variant starts from "
             "identical weights and sees the same data order. *Steps to target* is the first optimizer step "
             "at which the epoch-smoothed training loss reaches the scenario's target. A verdict names a "
             "winner only when the paired Wilcoxon test gives p < 0.05 and the 95% bootstrap interval of "
             "the median ratio excludes 1; otherwise it says there is no clear difference.",
             "\n".join(environment_lines(command)),
             f"Regenerate with `{command}` (it took {total / 60:.1f} minutes on this machine: "
             + ", ".join(f"{o.result.scenario.name} {o.seconds:.0f} s" for o in outcomes) + ").",
             "## Summary: relu against each alternative, steps to target"]
    rows = []
    for o, report in zip(outcomes, reports):
        for c in o.result.comparisons:
            if c.a != "relu":
                continue
            speed = "—" if c.speedup is None else f"{c.speedup:.2f} ({c.ci_low:.2f}–{c.ci_high:.2f})"
            rows.append([f"[{o.result.scenario.name}]({report})", c.b, speed,
                         f"{c.wins_a}–{c.wins_b}", "—" if c.p_value is None else f"{c.p_value:.2g}",
                         c.verdict])
    parts.append(md_table(["scenario", "alternative", "relu steps / its steps (95% CI)",
                           "seeds won (relu–alternative)", "p", "verdict"], rows))
    parts.append("A ratio above 1 means the alternative reached the target in fewer steps than ReLU.")
    parts.append("## Answers")
    parts.extend(answers(outcomes))
    for o, report in zip(outcomes, reports):
        r = o.result
        sc = r.scenario
        parts.append(f"## {sc.name}")
        parts.append(f"**{QUESTIONS.get(sc.name, sc.description)}** {sc.description}")
        conv = [[s.variant, fmt(s.median_final_loss), fmt(s.median_steps_to_target), f"{s.reached}/{s.runs}",
                 f"{s.born_dead}/{s.runs}", f"{s.diverged}/{s.runs}", pct(s.dead_rate_final)]
                for s in r.summaries]
        parts.append(md_table(["variant", "final loss", "steps to target", "reached", "born dead",
                               "diverged", "dead at end"], conv))
        parts.append(BORN_DEAD_NOTE)
        parts.append("\n".join(f"- **{c.a} vs {c.b}:** {c.verdict}" for c in r.comparisons if c.a == "relu"))
        parts.append("Gradient through the negative side, and the route to negative outputs (medians over "
                     "seeds of layer means, evaluation set):")
        parts.append(md_table(["variant", "slope", "grad_ratio", "i.e. smaller by", "upstream ratio",
                               "neg_grad_fraction", "activation route (neg. preds)"], variant_gradient_rows(r)))
        parts.append(f"Full report with figures: [{report}]({report}).")
    return atomic_write_text(path, "\n\n".join(parts) + "\n")
