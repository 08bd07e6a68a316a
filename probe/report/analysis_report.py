"""The markdown report of ``probe analyze``."""

from __future__ import annotations

from pathlib import Path

from probe.core.io import StagedOutputs

from probe.engines.analysis import AnalysisResult
from probe.report.analyze_view import layers_table, prelu_lines, sanity_line, sign_table
from probe.report.diagnostic_plots import active_fraction_figure, grad_ratio_figure, sign_routes_figure
from probe.report.markdown import ReportWriter, environment_lines, rich_table_markdown


def write_analysis_report(result: AnalysisResult, path: str | Path, command: str, outputs: StagedOutputs | None = None) -> Path:
    """Write ``path`` (markdown) and its figures; atomic."""
    diag = result.diagnostics
    m, d = result.model, result.data
    label = m.get("activation", "model")
    with ReportWriter(path, outputs) as rw:
        rw.add(f"# probe analyze: {Path(m['path']).name if m.get('path') else 'model'}",
               "\n".join([*environment_lines(command),
                          f"- model: `{m['architecture']}` ({m['format']})",
                          *(f"- conversion: {note}" for note in m.get("conversions", ())),
                          f"- data: {d['source']}, {d['samples']} samples x {d['features']} features",
                          f"- {sanity_line(result)}",
                          *(f"- **warning:** {message}" for message in result.warnings)]),
               f"**Verdict.** {result.verdict}",
               rich_table_markdown(layers_table(diag), heading=2),
               *(f"- {line.plain}" for line in prelu_lines(diag)))
        rw.figure(grad_ratio_figure({label: [diag]}), "grad_ratio.png",
                  "grad_ratio per layer against the nominal slope")
        rw.figure(active_fraction_figure(diag), "active_fraction.png", "per-unit active fractions")
        rw.add(rich_table_markdown(sign_table(diag), heading=2))
        if diag.sign:
            rw.figure(sign_routes_figure({label: diag.sign[0].negative_predictions.activation_route_share}),
                      "sign_routes.png", "sign routes")
        if result.circuit is not None:
            from probe.report.circuit_figure import draw_circuit
            from probe.report.circuit_view import layer_table, target_line

            rw.add(rich_table_markdown(layer_table(result.circuit), heading=2), target_line(result.circuit))
            if result.circuit.group("negative").samples:
                draw_circuit(result.circuit, rw.image_path("circuit_negative.png", "negative circuit"),
                             "negative")
    return rw.path
