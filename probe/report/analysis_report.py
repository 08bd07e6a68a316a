"""The markdown report of ``probe analyze``."""

from __future__ import annotations

from pathlib import Path

from probe.analysis import AnalysisResult
from probe.report.fmt import fmt, pct
from probe.report.diagnostic_plots import active_fraction_figure, grad_ratio_figure, sign_routes_figure
from probe.report.markdown import ReportWriter, environment_lines, md_table, rich_table_markdown
from probe.report.verdict import verdict


def layer_rows(result: AnalysisResult) -> list[list[str]]:
    rows = []
    for lay in result.diagnostics.layers:
        a, g = lay.activity, lay.gradient
        rows.append([str(lay.index + 1), str(a.units), fmt(lay.negative_slope), f"{a.dead_units}",
                     pct(a.dead_rate), str(a.near_dead_units), str(a.dormant_units),
                     fmt(g.grad_ratio if g else None), pct(g.neg_grad_share if g else None),
                     fmt(a.act_ratio)])
    return rows


def write_analysis_report(result: AnalysisResult, path: str | Path, command: str) -> Path:
    """Write ``path`` (markdown) and its figures; atomic."""
    diag = result.diagnostics
    m, d = result.model, result.data
    label = m.get("activation", "model")
    with ReportWriter(path) as rw:
        rw.add(f"# probe analyze: {Path(m['path']).name if m.get('path') else 'model'}",
               "\n".join([*environment_lines(command),
                          f"- model: `{m['architecture']}` ({m['format']})",
                          f"- data: {d['source']}, {d['samples']} samples x {d['features']} features; "
                          f"loss: {result.loss}"]),
               f"**Verdict.** {verdict(diag)}",
               "## Hidden layers",
               md_table(["layer", "units", "slope", "dead", "dead rate", "near-dead", "dormant",
                         "grad_ratio", "neg_grad_share", "|h| neg/pos"], layer_rows(result)))
        rw.figure(grad_ratio_figure({label: [diag]}), "grad_ratio.png",
                  "grad_ratio per layer against the nominal slope")
        rw.figure(active_fraction_figure(diag), "active_fraction.png", "per-unit active fractions")
        rw.add("## Sign construction at the output layer",
               md_table(["output", "pos_pos", "neg_pos", "pos_neg", "neg_neg", "activation_route_share",
                         "cancellation", "negative predictions", "activation route (negative preds)"],
                        [[str(s.output), fmt(s.all_samples.pos_pos), fmt(s.all_samples.neg_pos),
                          fmt(s.all_samples.pos_neg), fmt(s.all_samples.neg_neg),
                          pct(s.all_samples.activation_route_share), fmt(s.all_samples.cancellation),
                          str(s.negative_predictions.samples),
                          pct(s.negative_predictions.activation_route_share)] for s in diag.sign]))
        if diag.sign:
            rw.figure(sign_routes_figure({label: [diag]}), "sign_routes.png", "sign routes")
        if result.circuit is not None:
            from probe.circuit import draw_circuit
            from probe.report.circuit_view import layer_table

            rw.add("## Sign circuit", rich_table_markdown(layer_table(result.circuit)))
            if result.circuit.group("negative").samples:
                draw_circuit(result.circuit, rw.image_path("circuit_negative.png", "negative circuit"),
                             "negative")
    return rw.path
