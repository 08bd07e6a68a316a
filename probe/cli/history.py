"""``probe history``: summarise and draw what ``probe.track`` recorded during training.

Registered in :mod:`probe.cli.app`; imports nothing heavy until it runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from probe.cli.common import check_outputs, command_line, handles_errors, json_text, out

JSON_HELP = "Write the summary as JSON: to stdout with no PATH (instead of the table), else to PATH."


@handles_errors
def history(
    paths: list[Path] = typer.Argument(..., help="History files written by probe.track (.jsonl); "
                                                 "several are overlaid (e.g. a relu run and a leaky run)."),
    json_path: Optional[str] = typer.Option(None, "--json", metavar="[PATH]", help=JSON_HELP),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a markdown report (with figures) to FILE.md."),
) -> None:
    """Summarise training histories from probe.track: dead units, grad_ratio and sign routes over steps."""
    check_outputs(Path(json_path) if json_path not in (None, "-") else None, report=report)
    from probe.cli.signals import deferred_signals

    with deferred_signals():
        from probe.core.io import StagedOutputs
        from probe.experiment.history import read_histories
        from probe.report.history_report import history_renderable, write_history_report

    histories = read_histories(paths)
    summaries = [h.summary() for h in histories]
    doc = {"histories": [s.to_dict() for s in summaries]}
    with StagedOutputs() as outputs:
        if report is not None:
            write_history_report(histories, report, command=command_line(), outputs=outputs)
        if json_path not in (None, "-"):
            outputs.stage(Path(json_path)).write_text(json_text(doc), encoding="utf-8")
        outputs.publish()
    if json_path == "-":
        sys.stdout.write(json_text(doc))
        return
    out.print(history_renderable(summaries))
    for what, path in (("json", json_path), ("report", report)):
        if path is not None:
            out.print(f"{what}: {path}", highlight=False, markup=False)
