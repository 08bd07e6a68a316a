"""Rich rendering of ``probe compare`` results. Consumes results; computes nothing."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from probe.compare.results import CompareResult
from probe.report.fmt import fmt, legible_group, pct


def variant_table(title: str | Text, caption: str, columns: tuple[str, ...]) -> Table:
    """A table with one row per variant: a left-aligned ``variant`` column, then right-aligned numbers."""
    table = Table(title=title, title_justify="left", caption_justify="left", caption=caption)
    table.add_column("variant", justify="left", no_wrap=True)
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)
    return table


def convergence_table(result: CompareResult) -> Table:
    """Per variant: median final loss, median steps to target, reached n/N, diverged, born dead."""
    sc = result.scenario
    measure = sc.target_measure
    classify = any(s.eval_accuracy[0] is not None for s in result.summaries)
    table = variant_table(
        Text(f"Convergence on {sc.name} (target {measure} {sc.target:g}, {result.budget} steps = "
             f"{result.epochs_completed} epochs x {result.steps_per_epoch})"),
        f"Medians over seeds. final/eval: training and evaluation-set loss ({sc.train.loss}) after training"
        + ("; final acc/eval acc: the accuracies" if classify else "") + ". steps to target: first step "
        f"whose running mean over one epoch of minibatch {measure} is {'>=' if measure == 'accuracy' else '<='} "
        "the target ('—': half or more never reached it). step loss: mean per-step loss.",
        ("final", "eval", *(("final acc", "eval acc") if classify else ()), "steps to target", "reached",
         "step loss", "diverged", "born dead"))
    for s in result.summaries:
        acc = (fmt(s.final_accuracy[0]), fmt(s.eval_accuracy[0])) if classify else ()
        table.add_row(s.variant, fmt(s.median_final_loss), fmt(s.eval_loss[0]), *acc,
                      fmt(s.median_steps_to_target), f"{s.reached}/{s.runs}", fmt(s.median_loss_auc),
                      f"{s.diverged}/{s.runs}", f"{s.born_dead}/{s.runs}")
    return table


def diagnostics_table(result: CompareResult) -> Table:
    """Per variant: dead rate at init and at the end, grad_ratio against the slope, route share."""
    table = variant_table(
        "Diagnostics on the evaluation set (medians over seeds of layer means; grad_ratio: geometric mean)",
        "dead: share of hidden units with z<=0 on every sample. grad_ratio: mean |dL/dz| where z<=0 over "
        "where z>0 (for a leaky ReLU the local ratio is the slope). act. route: share of the output's "
        "downward mass carried by negative activations.",
        ("dead at init", "dead at end", "grad_ratio", "nominal slope", "act. route (all)"))
    for s in result.summaries:
        table.add_row(s.variant, pct(s.dead_rate_init), pct(s.dead_rate_final), fmt(s.grad_ratio),
                      fmt(s.nominal_slope, "g"), pct(s.activation_route_share))
    return table


def circuit_table(result: CompareResult) -> Table:
    """Per variant: how output 0's negative predictions are built (medians over seeds)."""
    table = variant_table(
        "Sign circuits of negative predictions (output 0; medians over seeds)",
        "circuit: hidden units carrying 90% of the attribution. act. route: share of the downward mass "
        "through negative activations (into the output; pooled over hidden-to-hidden layers). "
        "cancel: total mass / net mass.",
        ("circuit units", "of hidden", "act. route out", "act. route hidden", "cancel"))
    for s in result.summaries:
        c = s.circuit or {}
        table.add_row(s.variant, fmt(c.get("circuit_size_negative"), ".3g"), pct(c.get("circuit_fraction_negative")),
                      pct(c.get("activation_route_share_output")), pct(c.get("activation_route_share_hidden")),
                      fmt(c.get("cancellation_output")))
    return table


def targets_table(result: CompareResult) -> Table:
    """Per pair and target: median steps of each, the paired ratio, the decided pairs and who leads."""
    table = variant_table(
        "Steps to each target (medians over seeds; pairs decided by who got there first)",
        "ratio: median of steps a / steps b (> 1: b faster; never-reached counted at the budget + 1). "
        "wins: decided pairs won by a-b (ties: neither got there, or both at the same step). "
        "p: exact sign test on the decided pairs; a leader is named only when p < 0.05.",
        ("target", "steps a", "steps b", "ratio", "95% CI", "wins a-b", "ties", "p", "leader"))
    table.columns[0].header = "a vs b"
    medians = {s.variant: s.steps_by_target_median for s in result.summaries}
    for c in result.comparisons:
        for k, t in enumerate(c.by_target):
            ma, mb = medians[c.a], medians[c.b]
            table.add_row(f"{c.a} vs {c.b}" if k == 0 else "", f"{t.target:g}",
                          fmt(ma[k] if k < len(ma) else None), fmt(mb[k] if k < len(mb) else None),
                          fmt(t.speedup), "—" if t.ci_low is None else f"{t.ci_low:.3g}-{t.ci_high:.3g}",
                          f"{t.wins_a}-{t.wins_b}", str(t.ties), fmt(t.p_value, ".2g"),
                          t.winner or ("inconclusive" if t.speedup is not None else "neither reached"))
    return table


def compare_renderable(result: CompareResult) -> Group:
    """The convergence table, the diagnostics table (when measured) and one verdict per pair."""
    items: list = []
    if result.interrupted:
        items.append(Text(f"Interrupted: results after {result.epochs_completed} of "
                          f"{result.scenario.train.epochs} epochs.", style="bold yellow"))
    items.append(convergence_table(result))
    if result.epochs_completed and any(c.by_target for c in result.comparisons):
        items.append(targets_table(result))
    if any(r.diagnostics is not None for r in result.runs):
        items.append(diagnostics_table(result))
    if any(s.circuit for s in result.summaries):
        items.append(circuit_table(result))
    items += [Text.assemble((f"{c.a} vs {c.b}: ", "bold"), c.verdict) for c in result.comparisons]
    return legible_group(*items)


def render_compare(result: CompareResult, console: Console) -> None:
    """Print :func:`compare_renderable`."""
    console.print(compare_renderable(result))
