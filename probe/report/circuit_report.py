"""The markdown report of ``probe circuit``."""

from __future__ import annotations

from pathlib import Path

from probe.core.io import StagedOutputs

from probe.circuit import CircuitResult
from probe.report.circuit_figure import draw_circuit
from probe.report.circuit_view import completeness_warning, driver_table, layer_table, path_table, target_line
from probe.report.markdown import ReportWriter, environment_lines, rich_table_markdown


def write_circuit_report(result: CircuitResult, path: str | Path, command: str,
                         group: str = "negative", outputs: StagedOutputs | None = None) -> Path:
    """Write the report with both groups' circuit pictures; atomic."""
    neg, pos = result.groups
    comp = result.completeness
    with ReportWriter(path, outputs) as rw:
        rw.add(f"# probe circuit: output {result.output} of {'-'.join(map(str, result.widths))} "
               f"{result.activation}",
               "\n".join([*environment_lines(command),
                          f"- {result.samples} samples: {neg.samples} predicted negative, "
                          f"{pos.samples} positive; attribution {result.method} against the "
                          f"{result.baseline} baseline (f = {result.baseline_prediction:+.4g}); "
                          f"largest completeness error {comp.max_rel_error:.2g} of the mean "
                          f"|f(x) - f(baseline)| (relative)", f"- {target_line(result)}"]),
               rich_table_markdown(layer_table(result)))
        if not comp.within_tolerance:
            rw.add(f"**{completeness_warning(result)}**")
        if result.drivers_negative or result.drivers_positive:
            rw.add(rich_table_markdown(driver_table(result)))
        for name in ("negative", "positive"):
            circ = result.group(name)
            if circ.samples == 0:
                rw.add(f"No sample is predicted {name}.")
                continue
            if circ.paths:
                rw.add(rich_table_markdown(path_table(result, name, 5)))
            draw_circuit(result, rw.image_path(f"circuit_{name}.png", f"{name} circuit"), name)
    return rw.path
