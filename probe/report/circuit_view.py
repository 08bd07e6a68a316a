"""Terminal view of a :class:`probe.circuit.CircuitResult` (rich tables; computes nothing)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from probe.circuit.result import COMPLETENESS_TOLERANCE, CircuitResult
from probe.report.fmt import fmt, legible_group, pct


def layer_table(result: CircuitResult) -> Table:
    neg, pos = result.groups
    table = Table(title=f"Sign circuit of output {result.output} per layer "
                  f"({100 * result.coverage:.0f}% of |attribution|)")
    table.add_column("into layer")
    table.add_column("units", justify="right")
    table.add_column("circuit (neg)", justify="right")
    table.add_column("circuit (pos)", justify="right")
    table.add_column("down via neg. input (neg)", justify="right")
    table.add_column("down via neg. activation (neg)", justify="right")
    table.add_column("cancellation (neg)", justify="right")
    last = len(neg.layers) - 1
    for lay_n, lay_p in zip(neg.layers, pos.layers):
        routes = neg.routes[lay_n.layer - 1] if lay_n.layer >= 1 else None
        name = ("inputs" if lay_n.layer == 0 else f"output {result.output}" if lay_n.layer == last
                else f"hidden {lay_n.layer}")
        circuit_n = "-" if lay_n.layer == last else str(len(lay_n.circuit_units))
        circuit_p = "-" if lay_p.layer == last else str(len(lay_p.circuit_units))
        from_inputs = routes is not None and routes.sender == "inputs"
        table.add_row(name, str(lay_n.units), circuit_n, circuit_p,
                      pct(routes.negative_input_share) if from_inputs else "-",
                      pct(routes.activation_route_share) if routes and not from_inputs else "-",
                      fmt(routes.cancellation) if routes else "-")
    table.add_row("all hidden", str(sum(lay.units for lay in neg.hidden)), str(neg.circuit_size),
                  str(pos.circuit_size), "", "", "", style="bold")
    return table


def driver_table(result: CircuitResult) -> Table:
    table = Table(title="Units that drive the sign (mean attribution in their group)")
    for col in ("drives", "unit", "mean attribution", "selectivity"):
        table.add_column(col, justify="left" if col == "drives" else "right")
    for label, drivers in (("negative", result.drivers_negative), ("positive", result.drivers_positive)):
        for d in drivers:
            table.add_row(label, f"hidden {d.layer} #{d.unit}", f"{d.mean_attribution:+.4g}", fmt(d.selectivity, ".2g"))
    return table


def path_table(result: CircuitResult, group: str, n: int) -> Table:
    circ = result.group(group)
    table = Table(title=f"Strongest paths, {group} predictions (share of the output's incoming mass)")
    table.add_column("path (unit per layer)")
    table.add_column("strength", justify="right")
    table.add_column("sign", justify="right")
    for p in circ.paths[:n]:
        table.add_row(" -> ".join(map(str, p.units)), f"{p.strength:.3g}", "+" if p.sign > 0 else "-")
    return table


def completeness_warning(result: CircuitResult) -> str:
    """The sentence shown when attributions miss completeness by more than the tolerance."""
    comp = result.completeness
    if result.method == "ig":
        fix = f"rerun with more integration steps (--n-steps {max(4 * (result.n_steps or 32), 256)})"
        if not result.activation.startswith("prelu"):
            fix += " or --method deeplift (exact for ReLU and leaky models)"
    else:
        fix = "check the model: DeepLift should be exact for ReLU and leaky models"
    return (f"Warning: the attributions miss completeness by {100 * comp.max_rel_error:.0f}%, above the "
            f"{100 * COMPLETENESS_TOLERANCE:.0f}% tolerance, so circuit sizes and driver units are approximate; "
            f"{fix}.")


def target_line(result: CircuitResult) -> str:
    """What was traced and on which rows: one line for the terminal and the reports."""
    what = (f"the logit margin of class {result.output} (its logit minus the largest other)"
            if result.target == "margin" else f"output {result.output}")
    sample = "" if result.sample is None else " " + result.sample.describe()
    return f"Traced: {what}.{sample}"


def circuit_renderable(result: CircuitResult, *, paths: int = 5) -> Group:
    """Per-layer circuit sizes and routes, driver units, top paths and completeness."""
    neg, pos = result.groups
    noun = "margins" if result.target == "margin" else "predictions"
    items: list = [Text.assemble((result.activation, "bold"), f" {'-'.join(map(str, result.widths))}: "
                   f"{neg.samples} negative and {pos.samples} positive {noun} of output {result.output} "
                   f"(baseline {result.baseline}, f(baseline) = {result.baseline_prediction:+.4g})"),
                   Text(target_line(result)), layer_table(result)]
    if result.drivers_negative or result.drivers_positive:
        items.append(driver_table(result))
    items += [path_table(result, circ.name, paths) for circ in result.groups if circ.paths]
    comp = result.completeness
    method = "integrated gradients" if result.method == "ig" else "DeepLift"
    steps = f", {result.n_steps} steps" if result.n_steps else ""
    items.append(Text(f"Completeness ({method}{steps}): largest error {max(comp.max_abs_error):.3g} "
                      f"= {comp.max_rel_error:.2g} of the mean |f(x) - f(baseline)| ({comp.scale:.3g})."))
    if not comp.within_tolerance:
        items.append(Text(completeness_warning(result), style="yellow"))
    return legible_group(*items)


def render_circuit(result: CircuitResult, console: Console, *, paths: int = 5) -> None:
    """Print :func:`circuit_renderable`."""
    console.print(circuit_renderable(result, paths=paths))
