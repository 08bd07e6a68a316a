"""Rich rendering of ``probe analyze`` results. Consumes results; computes nothing."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from probe.engines.analysis import AnalysisResult
from probe.diagnostics import NetworkDiagnostics
from probe.report.fmt import fmt, legible_group, pct


def layers_table(diag: NetworkDiagnostics, title: str = "Hidden layers") -> Table:
    """One row per hidden layer: activity, gradients through each side, output magnitude."""
    table = Table(title=title, title_justify="left", caption_justify="left",
                  caption="active: median over the layer's units of the share of samples with z>0. "
                          "grad_ratio: mean |dL/dz| where z<=0 over where z>0. neg grad: the z<=0 "
                          "region's fraction of the gradient's squared norm (weights and bias). |h| n/p: mean |activation| ratio. "
                          "slope: nominal; ~x: measured mean f'(z) over z<=0 (smooth kinds); |a|x: mean |slope| of a "
                          "per-channel PReLU (its distribution below the table). A negative 'neg grad' means the "
                          "negative region's gradient points against the layer's full gradient.")
    for col in ("layer", "units", "slope", "dead", "near-dead", "dormant", "active",
                "grad_ratio", "neg grad", "|h| n/p"):
        table.add_column(col, justify="right", no_wrap=True)
    for lay in diag.layers:
        a, g = lay.activity, lay.gradient
        table.add_row(
            str(lay.index + 1), str(a.units),
            _slope_cell(lay),
            f"{a.dead_units}/{a.units}", str(a.near_dead_units), str(a.dormant_units),
            pct(a.active_fraction_quantiles["median"]),
            fmt(g.grad_ratio if g else None), pct(g.neg_grad_fraction if g else None), fmt(a.act_ratio),
        )
    return table


def sign_table(diag: NetworkDiagnostics) -> Table:
    """One row per output: the four contribution masses and the activation route's share."""
    margin = any(s.target == "margin" for s in diag.sign)
    title = ("Sign construction of each class's logit margin f_k - max_j≠k f_j (|(W_k - W_j*)·h| masses)"
             if margin else "Sign construction at the output layer (|W·h| masses)")
    table = Table(title=title, title_justify="left", caption_justify="left",
                  caption="W+h-: W>0, h<0 (pos_neg: negative activations, none under ReLU); W-h+: W<0, h>0 "
                          "(neg_pos: negative weights). act.route: pos_neg / (pos_neg + neg_pos); "
                          "'neg' columns: samples predicted negative" + (" (the class is not predicted)"
                                                                         if margin else "")
                          + "; neg bias: share of their downward mass that the output's bias supplies.")
    for col in ("class" if margin else "output", "W+h+", "W-h+", "W+h-", "W-h-", "act.route",
                "cancel", "neg n", "neg act.route", "neg bias"):
        table.add_column(col, justify="right", no_wrap=True)
    for s in diag.sign:
        m, n = s.all_samples, s.negative_predictions
        table.add_row(str(s.output), fmt(m.pos_pos), fmt(m.neg_pos), fmt(m.pos_neg), fmt(m.neg_neg),
                      pct(m.activation_route_share), fmt(m.cancellation), str(n.samples),
                      pct(n.activation_route_share),
                      pct(None if n.downward_shares is None else n.downward_shares["bias"]))
    return table


def _slope_cell(lay) -> str:
    if lay.negative_slope is not None:
        return fmt(lay.negative_slope)
    if lay.prelu_slopes is not None:
        return "|a|" + fmt(lay.prelu_slopes["mean_abs"])
    return "~" + fmt(lay.activity.local_slope_neg)


def prelu_lines(diag: NetworkDiagnostics) -> list[Text]:
    """One line per per-channel PReLU layer: its slope distribution (never a signed mean)."""
    return [Text(f"layer {lay.index + 1}: PReLU slopes over {p['count']} channels: mean |a| "
                 f"{fmt(p['mean_abs'])}, min {fmt(p['min'])}, max {fmt(p['max'])}, {p['negative']} negative")
            for lay in diag.layers if (p := lay.prelu_slopes) is not None]


def circuit_line(output: int, negatives: int, units: int, target: str = "logit") -> str:
    """One sentence on the negative-prediction circuit, worded for the empty cases too.

    For a classifier's margin target, a negative prediction is a sample where the class is not predicted.
    """
    margin = target == "margin"
    head = f"Sign circuit of class {output}'s margin: " if margin else f"Sign circuit of output {output}: "
    what = "samples where it is not the predicted class" if margin else "negative predictions"
    if negatives == 0:
        return head + ("it is the predicted class on every sample, so there is no negative circuit." if margin
                       else "no sample is predicted negative, so there is no negative circuit.")
    if units == 0:
        return (head + f"{negatives} {what}, but no hidden unit carries any attribution: the "
                "output does not vary with the hidden units on this data (a dead or collapsed network?).")
    unit_word = "unit" if units == 1 else "units"
    return head + (f"{negatives} {what}, built by {units} hidden {unit_word} "
                   "(90% of attribution); details: probe circuit.")


def sanity_line(result: AnalysisResult) -> str:
    """The loss of the model as analysed, in one line (with accuracy for classifiers)."""
    fit = result.fit
    if fit is None:
        return f"loss: {result.loss}"
    name = f"{fit.name}, inferred" if fit.inferred else fit.name
    head = f"loss ({name}) of the model as analysed: "
    if fit.value is None and result.data.get("targets"):
        return head + (f"none: --loss sum ignores the targets ({fit.samples:,} samples; the gradients are "
                       "those of the sum of the outputs)")
    if fit.value is None:
        return head + (f"none, there were no targets ({fit.samples:,} samples; the gradients are those of "
                       "the sum of the outputs)")
    line = head + f"{fit.value:.4g} on {fit.samples:,} samples"
    return line if fit.accuracy is None else line + f", accuracy {fit.accuracy:.3f}"


def warning_lines(result: AnalysisResult) -> list[Text]:
    """One ``warning:`` line per warning of the result."""
    return [Text.assemble(("warning: ", "yellow"), message) for message in result.warnings]


def analysis_renderable(result: AnalysisResult) -> Group:
    """The model summary, the layer table, the sign table and the verdict (plain text: no markup)."""
    model, data = result.model, result.data
    items = [Text.assemble((str(model.get("path") or "model"), "bold"),
                           f"  {model['architecture']}  ({model['format']})"),
             *[Text(f"conversion: {note}") for note in model.get("conversions", ())],
             Text(f"data: {data['source']} — {data['samples']} samples × {data['features']} features"),
             Text(sanity_line(result)), *warning_lines(result),
             layers_table(result.diagnostics), *prelu_lines(result.diagnostics), sign_table(result.diagnostics)]
    if result.circuit is not None:
        neg = result.circuit.group("negative")
        items.append(Text(circuit_line(result.circuit.output, neg.samples, neg.circuit_size,
                                       getattr(result.circuit, "target", "logit"))))
        if getattr(result.circuit, "sample", None) is not None:
            items.append(Text(result.circuit.sample.describe()))
    items.append(Text.assemble(("Verdict:", "bold"), f" {result.verdict}"))
    return legible_group(*items)


def render_analysis(result: AnalysisResult, console: Console) -> None:
    """Print :func:`analysis_renderable`."""
    console.print(analysis_renderable(result))
