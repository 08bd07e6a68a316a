"""The ``probe`` command line: a thin layer over the library API.

Each command parses its options, calls the API, and prints. A
:class:`~probe.core.errors.ProbeError` becomes one paragraph on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from probe.core.errors import ProbeError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_show_locals=False,
                  help="Mechanistic diagnostics for PyTorch MLPs: dead units, negative-region "
                       "gradients and sign routes, measured.")
# Piped output would get rich's 80-column default and truncated tables: use 120 unless told.
out = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120)
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
            # the message is plain text: '[data]' in it must not be read as rich markup
            err.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a disk full or a path that vanished mid-run
            err.print(Text.assemble(("error: ", "bold red"), f"Could not write or read a file: {exc}. "
                                    "Fix: check the path, the permissions and the free disk space."),
                      highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted: nothing was written")
            raise typer.Exit(130) from None
    return wrapper


def progress_bar() -> Progress:
    """A rich progress bar on stderr, so that ``--json`` stdout stays clean."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)


def check_outputs(*files: Path | None, folder: Path | None = None) -> None:
    """Refuse unwritable output paths before any work starts."""
    from probe.core.io import check_output_path

    for path in files:
        if path is not None and str(path) != "-":
            check_output_path(path)
    if folder is not None:
        check_output_path(folder, directory=True)


def emit_json(doc: dict) -> None:
    """Exactly one JSON document on stdout."""
    from probe.core.io import finite_json

    sys.stdout.write(json.dumps(finite_json(doc), indent=2, allow_nan=False, default=str) + "\n")


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
    circuit_output: int = typer.Option(0, "--circuit-output", help="Output whose sign circuit is traced (JSON 'circuit')."),
    no_circuit: bool = typer.Option(False, "--no-circuit", help="Skip the sign circuit (faster on large data)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a markdown report (with figures) to this path."),
) -> None:
    """Diagnose a trained MLP: dead units, negative-region gradients, sign routes."""
    from probe.experiment.workflows import analyze_file

    check_outputs(report)
    with progress_bar() as bar:
        task = bar.add_task("analyzing", total=None)
        result = analyze_file(model, data=data, scenario=scenario, target=target, activation=activation,
                              trust=trust, batch_size=batch_size, near_dead_threshold=near_dead,
                              dormant_tau=dormant_tau,
                              circuit_output=None if no_circuit else circuit_output,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    if report is not None:
        from probe.report.analysis_report import write_analysis_report
        report = write_analysis_report(result, report, command=" ".join(["probe", *sys.argv[1:]]))
    if as_json:
        emit_json(result.to_dict())
        return
    from probe.report.analyze_view import render_analysis
    render_analysis(result, out)
    if report is not None:
        out.print(f"report: {report}")


@app.command()
@handles_errors
def compare(
    variants: list[str] = typer.Argument(..., help="Two or more of: relu, leaky, leaky:SLOPE, prelu."),
    scenario: str = typer.Option("signed_regression", "--scenario", help="Shipped scenario name or a TOML file."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Seeds per variant (default: the scenario's)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=0, help="Epochs (0 = initialisation only)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    save_dir: Optional[Path] = typer.Option(None, "--save-dir", help="Write each run as DIR/<variant>-seed<k>.pt."),
    no_circuits: bool = typer.Option(False, "--no-circuits", help="Skip tracing each run's sign circuit."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the full results as JSON to this file ('-' for stdout)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a markdown report (with figures) to this path."),
) -> None:
    """Train variants under one scenario with matched seeds and compare convergence."""
    from probe.compare.run import compare as run_compare

    check_outputs(json_path, report, folder=save_dir)
    with progress_bar() as bar:
        task = bar.add_task("training", total=None)
        result = run_compare(variants, scenario, seeds=seeds, epochs=epochs, device=device,
                             save_dir=save_dir, circuits=not no_circuits,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    if report is not None:
        from probe.report.compare_report import write_compare_report
        report = write_compare_report(result, report, command=" ".join(["probe", *sys.argv[1:]]))
    doc = result.to_dict()
    if json_path is not None and str(json_path) == "-":
        emit_json(doc)
        return
    if json_path is not None:
        from probe.core.io import atomic_write_text, finite_json
        atomic_write_text(json_path, json.dumps(finite_json(doc), indent=2, allow_nan=False, default=str) + "\n")
    from probe.report.compare_view import render_compare
    render_compare(result, out)
    if getattr(result, "interrupted", False):
        err.print("[yellow]training was interrupted: results cover the completed epochs only[/yellow]")
    for path, what in ((json_path, "json"), (report, "report"), (save_dir, "checkpoints")):
        if path is not None:
            out.print(f"{what}: {path}")


@app.command()
@handles_errors
def circuit(
    model: Path = typer.Argument(..., help="Model file (any format probe analyze takes)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evaluation data: .npz, .npy, .csv or .pt."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Use this scenario's evaluation data."),
    target: Optional[str] = typer.Option(None, "--target", help="CSV column holding the target (dropped from X)."),
    activation: Optional[str] = typer.Option(None, "--activation", help="Variant spec (needed for a bare state_dict)."),
    trust: bool = typer.Option(False, "--trust", help="Allow unpickling arbitrary code. Only for files you trust."),
    output: int = typer.Option(0, "--output", help="Which output's sign circuit to trace."),
    group: str = typer.Option("negative", "--group", help="Group exported by --graph/--png: negative or positive."),
    method: str = typer.Option("auto", "--method", help="Attribution: auto (DeepLift; IG for PReLU), ig or deeplift."),
    baseline: str = typer.Option("mean", "--baseline", help="Attribution baseline: mean (of the data) or zeros."),
    n_steps: int = typer.Option(128, "--n-steps", min=1, help="Integration steps for --method ig."),
    graph: Optional[Path] = typer.Option(None, "--graph", help="Write the group's graph as GraphML."),
    png: Optional[Path] = typer.Option(None, "--png", help="Draw the group's circuit as a PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a markdown report (with figures) to this path."),
) -> None:
    """Trace how the network builds negative (and positive) values of one output, layer by layer."""
    from probe.experiment.workflows import circuit_file
    from probe.circuit import draw_circuit, write_graphml
    from probe.circuit.validate import check_group

    check_outputs(graph, png, report)
    check_group(group)
    with progress_bar() as bar:
        task = bar.add_task("tracing", total=None)
        result = circuit_file(model, data=data, scenario=scenario, target=target, activation=activation,
                              trust=trust, output=output, method=method, baseline=baseline,
                              n_steps=n_steps, progress=lambda done, total: bar.update(task, completed=done, total=total))
    if graph is not None:
        write_graphml(result, graph, group)
    if png is not None:
        draw_circuit(result, png, group)
    if report is not None:
        from probe.report.circuit_report import write_circuit_report
        report = write_circuit_report(result, report, command=" ".join(["probe", *sys.argv[1:]]), group=group)
    if as_json:
        emit_json(result.to_dict())
        return
    from probe.report.circuit_view import render_circuit
    render_circuit(result, out)
    for path, what in ((graph, "graphml"), (png, "png"), (report, "report")):
        if path is not None:
            out.print(f"{what}: {path}")


@app.command()
@handles_errors
def study(
    out_dir: Path = typer.Option(Path("reports/leaky-vs-relu"), "--out", help="Folder for the reports and index.md."),
    seeds: int = typer.Option(10, "--seeds", min=1, help="Seeds per variant."),
    scenario: Optional[list[str]] = typer.Option(None, "--scenario", help="Only these scenarios (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Run relu, leaky, leaky:0.1, leaky:0.3 and prelu on every scenario; write reports and an index."""
    from probe.experiment.study import STUDY_VARIANTS, run_study

    check_outputs(folder=out_dir)
    command = "probe study" + (f" --seeds {seeds}" if seeds != 10 else "") + \
        "".join(f" --scenario {s}" for s in scenario or []) + \
        (f" --out {out_dir}" if out_dir != Path("reports/leaky-vs-relu") else "")
    with progress_bar() as bar:
        task = bar.add_task("study", total=None)
        outcomes = run_study(out_dir, seeds=seeds, scenarios=scenario, command=command,
                             progress=lambda name, done, total: bar.update(
                                 task, description=name, completed=done, total=total))
    if as_json:
        emit_json({"variants": list(STUDY_VARIANTS), "index": str(out_dir / "index.md"),
                   "scenarios": [{"name": o.result.scenario.name, "report": str(o.report),
                                  "seconds": o.seconds,
                                  "comparisons": [c.to_dict() for c in o.result.comparisons]}
                                 for o in outcomes]})
        return
    for o in outcomes:
        out.print(f"{o.result.scenario.name}: {o.report} ({o.seconds:.0f} s)")
    out.print(f"index: {out_dir / 'index.md'}")


@app.command()
@handles_errors
def scenarios(as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")) -> None:
    """List the shipped scenarios."""
    from rich.table import Table

    from probe.experiment.scenarios import list_scenarios

    rows = list_scenarios()
    if as_json:
        emit_json({"scenarios": [{"name": n, "description": d} for n, d in rows]})
        return
    table = Table(title="Scenarios (probe compare VARIANTS --scenario NAME)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("what it tests")
    for name, description in rows:
        table.add_row(name, description)
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
