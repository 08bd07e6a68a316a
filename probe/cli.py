"""The ``probe`` command line: a thin layer over the library API.

Each command parses its options, calls the API, and prints. A
:class:`~probe.errors.ProbeError` becomes one paragraph on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from probe.errors import ProbeError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Mechanistic diagnostics for PyTorch MLPs: dead units, negative-region "
                       "gradients and sign routes, measured.")
out = Console()
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Mechanistic diagnostics for PyTorch MLPs."""


def handles_errors(fn: Callable) -> Callable:
    """Turn ProbeError (and Ctrl-C) into a clean message and a non-zero exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ProbeError as exc:
            err.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted: nothing was written")
            raise typer.Exit(130) from None
    return wrapper


def progress_bar() -> Progress:
    """A rich progress bar on stderr, so that ``--json`` stdout stays clean."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True)


def emit_json(doc: dict) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n")


@app.command()
@handles_errors
def analyze(
    model: Path = typer.Argument(..., help="Model file: probe checkpoint, state_dict, TorchScript or pickled nn.Module."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evaluation data: .npz (X, y), .npy, .csv or .pt."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Use this scenario's evaluation data."),
    target: Optional[str] = typer.Option(None, "--target", help="CSV column holding the target."),
    activation: Optional[str] = typer.Option(None, "--activation", help="relu | leaky | leaky:SLOPE | prelu (needed for a bare state_dict)."),
    trust: bool = typer.Option(False, "--trust", help="Allow unpickling arbitrary code. Only for files you trust."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    batch_size: int = typer.Option(4096, "--batch-size", min=1, help="Samples per batch (memory does not grow with the data)."),
    near_dead: float = typer.Option(0.01, "--near-dead", help="Active fraction below which a unit is near-dead."),
    dormant_tau: float = typer.Option(0.025, "--dormant-tau", help="ReDo dormancy threshold."),
    circuit_output: Optional[int] = typer.Option(None, "--circuit-output", help="Also trace the sign circuit of this output."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a markdown report (with figures) to this path."),
) -> None:
    """Diagnose a trained MLP: dead units, negative-region gradients, sign routes."""
    from probe.api import analyze_file

    with progress_bar() as bar:
        task = bar.add_task("analyzing", total=None)
        result = analyze_file(model, data=data, scenario=scenario, target=target, activation=activation,
                              trust=trust, batch_size=batch_size, near_dead_threshold=near_dead,
                              dormant_tau=dormant_tau, circuit_output=circuit_output,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    if report is not None:
        from probe.report.analysis_report import write_analysis_report
        write_analysis_report(result, report, command=" ".join(["probe", *sys.argv[1:]]))
    if as_json:
        emit_json(result.to_dict())
        return
    from probe.report.analyze_view import render_analysis
    render_analysis(result, out)
    if report is not None:
        out.print(f"report: {report}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
