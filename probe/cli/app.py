"""The ``probe`` command line: a thin layer over the library API.

Each command checks its outputs, calls the API, and prints. The outputs of
one command (JSON file, report and its figures, checkpoints, graphs) form one
set that is published together at the end, or not at all. Option spellings are
the same on every command: ``--json [PATH]`` (stdout without a path),
``--report FILE.md``, ``--output K``, ``--no-circuit``, ``--max-memory SIZE``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand

from probe.cli.signals import deferred_signals
from probe.cli.common import (Interrupted, check_outputs, command_line, err, handles_errors, json_text, out,
                              progress_bar)
from probe.core.errors import ProbeError
from probe.core.version import __version__

JSON_HELP = "Write the results as JSON: to stdout with no PATH (instead of the tables), else to PATH."


class Command(TyperCommand):
    """A typer command whose ``--json`` takes an optional path: a bare ``--json`` means stdout.

    ``--json`` consumes the next argument only when it is ``-`` or ends in ``.json``
    (``--json=PATH`` always works), so ``probe analyze --json model.pt`` still
    reads ``model.pt`` as the model.
    """

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        fixed, loose = [], None
        for i, arg in enumerate(args):
            if arg == "--json":
                nxt = args[i + 1] if i + 1 < len(args) else None
                if nxt is None or not (nxt == "-" or nxt.lower().endswith(".json")):
                    arg = "--json=-"
                    loose = nxt if nxt is not None and not nxt.startswith("-") else None
            fixed.append(arg)
        try:
            return super().parse_args(ctx, fixed)
        except Exception as exc:  # the parser's usage error (typer ships its own click)
            if loose is not None and loose in str(exc) and hasattr(exc, "format_message"):
                raise type(exc)(f"--json takes a file only as --json=PATH or --json PATH.json, so '{loose}' "
                                f"was not read as one ({exc.format_message()}). Fix: write --json={loose}",
                                ctx) from None
            raise


app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Mechanistic diagnostics for PyTorch MLPs: dead units, negative-region "
                       "gradients and sign routes, measured.")


def _version(value: bool) -> None:
    if value:
        out.print(f"probe {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print probe's version and exit.")) -> None:
    """Mechanistic diagnostics for PyTorch MLPs."""


def _memory(max_memory: Optional[str]) -> Optional[int]:
    if max_memory is None:
        return None
    from probe.core.limits import parse_memory

    return parse_memory(max_memory)


def _publish(outputs, doc: dict | None, json_path: Optional[str]) -> None:
    """Stage the JSON file (if any) beside the other outputs, then publish them all."""
    if doc is not None and json_path not in (None, "-"):
        outputs.stage(Path(json_path)).write_text(json_text(doc), encoding="utf-8")
    outputs.publish()


def _bar_callback(bar, task):
    return lambda done, total: bar.update(task, completed=done, total=total)


MODEL_HELP = ("Model file: probe checkpoint, state_dict (bare, in a training or Lightning checkpoint, or .safetensors), "
              "TorchScript (with --trust), pickled nn.Module, scikit-learn MLP (.skops; joblib/pickle with --trust).")
DATA_HELP = "Evaluation data: .npz (X, y), .npy, .csv or .pt."
TRUST_HELP = "Allow code from the file to run: pickled custom classes and TorchScript. Only for files you trust."
LAYER_ORDER_HELP = "A state_dict's Linear layer names in forward order, e.g. fc1,fc2,fc3,out (when its names and shapes leave the order open)."
CIRCUIT_SAMPLES_HELP = ("Trace the circuit on a seeded sample of at most N evaluation rows, stratified by the "
                        "sign of the prediction (0 = all rows).")
MEMORY_HELP = "Memory budget: the largest size a file, the data or the ensemble may declare (e.g. 8GiB; default 4GiB)."


@app.command(cls=Command)
@handles_errors
def analyze(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Use this scenario's evaluation data."),
    target: Optional[str] = typer.Option(None, "--target", help="CSV column holding the target."),
    activation: Optional[str] = typer.Option(None, "--activation", help="Activation spec, needed for a bare state_dict: relu, leaky[:SLOPE], prelu, rrelu, elu[:ALPHA], celu, selu, gelu, gelu:tanh, silu, mish, softplus[:BETA], tanh."),
    layer_order: Optional[str] = typer.Option(None, "--layer-order", help=LAYER_ORDER_HELP),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MEMORY_HELP),
    json_path: Optional[str] = typer.Option(None, "--json", metavar="[PATH]", help=JSON_HELP),
    batch_size: int = typer.Option(4096, "--batch-size", min=1, help="Samples per batch (memory does not grow with the data)."),
    near_dead: float = typer.Option(0.01, "--near-dead", help="Active fraction below which a unit is near-dead."),
    dormant_tau: float = typer.Option(0.025, "--dormant-tau", help="ReDo dormancy threshold."),
    loss: Optional[str] = typer.Option(None, "--loss", help="mse | cross_entropy | bce | sum (default: inferred "
                                       "from the targets, and shown: integer labels with K>1 outputs mean cross_entropy)."),
    output: int = typer.Option(0, "--output", help="Output whose sign circuit is traced (JSON 'circuit')."),
    no_circuit: bool = typer.Option(False, "--no-circuit", help="Skip the sign circuit (faster on large data)."),
    circuit_samples: int = typer.Option(2000, "--circuit-samples", min=0, help=CIRCUIT_SAMPLES_HELP),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N]."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a markdown report (with figures) to FILE.md."),
) -> None:
    """Diagnose a trained MLP: dead units, negative-region gradients, sign routes."""
    from probe.core.checks import check_fraction

    check_fraction("--near-dead", near_dead)
    check_fraction("--dormant-tau", dormant_tau)
    check_outputs(Path(json_path) if json_path not in (None, "-") else None, report=report)
    with deferred_signals():
        from probe.core.io import StagedOutputs
        from probe.experiment.workflows import analyze_file
        if report is not None:  # matplotlib: only when a report is asked for
            from probe.report.analysis_report import write_analysis_report

    with StagedOutputs() as outputs:
        with progress_bar() as bar:
            task = bar.add_task("analyzing", total=None)
            result = analyze_file(model, data=data, scenario=scenario, target=target, activation=activation,
                                  layer_order=layer_order,
                                  trust=trust, max_memory=_memory(max_memory), batch_size=batch_size,
                                  near_dead_threshold=near_dead, dormant_tau=dormant_tau, loss=loss,
                                  circuit_output=None if no_circuit else output,
                                  circuit_samples=circuit_samples or None, device=device,
                                  progress=_bar_callback(bar, task))
        if report is not None:
            write_analysis_report(result, report, command=command_line(), outputs=outputs)
        _publish(outputs, result.to_dict(), json_path)
    if json_path == "-":  # the tables show them otherwise; here stdout is JSON, so: stderr
        import warnings

        for message in result.warnings:
            warnings.warn(message, UserWarning, stacklevel=1)
    _show(result.to_dict() if json_path == "-" else None, result, {"json": json_path, "report": report})


def _show(doc: dict | None, result, written: dict) -> None:
    """JSON on stdout, or the result's tables and where its outputs went."""
    if doc is not None:
        sys.stdout.write(json_text(doc))
        return
    out.print(result)
    for what, path in written.items():
        if path is not None and str(path) != "-":
            out.print(f"{what}: {path}", highlight=False, markup=False)


@app.command(cls=Command)
@handles_errors
def compare(
    variants: list[str] = typer.Argument(..., help="Two or more of: relu, leaky[:SLOPE], prelu, rrelu, elu, "
                                         "selu, celu, gelu[:tanh], silu, mish, softplus, tanh."),
    scenario: Optional[str] = typer.Option(None, "--scenario",
                                           help="Shipped scenario name or a TOML file [default: signed_regression]."),
    data: Optional[Path] = typer.Option(None, "--data", help="Your own data (.csv/.npz/.pt): an ad-hoc scenario "
                                        "instead of --scenario (printed, and saved in the JSON)."),
    target: Optional[str] = typer.Option(None, "--target", help="With --data: the CSV column holding the target."),
    hidden: Optional[str] = typer.Option(None, "--hidden", help="With --data: hidden widths, e.g. 64,64."),
    drop: Optional[str] = typer.Option(None, "--drop", help="With --data: CSV columns to leave out, e.g. id,city."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Seeds per variant (default: the scenario's)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=0, help="Epochs (0 = initialisation only)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: the scenario's)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N]."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MEMORY_HELP),
    save_dir: Optional[Path] = typer.Option(None, "--save-dir", help="Write each run as DIR/<variant>-seed<k>.pt."),
    no_circuit: bool = typer.Option(False, "--no-circuit", help="Skip tracing each run's sign circuit."),
    json_path: Optional[str] = typer.Option(None, "--json", metavar="[PATH]", help=JSON_HELP),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a markdown report (with figures) to FILE.md."),
) -> None:
    """Train variants under one scenario with matched seeds and compare convergence."""
    check_outputs(Path(json_path) if json_path not in (None, "-") else None, report=report, folder=save_dir)
    with deferred_signals():
        from probe.compare.run import compare_variants
        from probe.core.io import StagedOutputs
        if report is not None:  # matplotlib: only when a report is asked for
            from probe.report.compare_report import write_compare_report
    scenario, toml = _compare_scenario(scenario, data, target, hidden, drop, _memory(max_memory),
                                       seeds=seeds, epochs=epochs, lr=lr)
    with StagedOutputs() as outputs:
        with progress_bar() as bar:
            task = bar.add_task("training", total=None)
            result = compare_variants(variants, scenario, seeds=seeds, epochs=epochs, lr=lr, device=device,
                                      save_dir=save_dir, outputs=outputs, circuits=not no_circuit,
                                      max_memory=_memory(max_memory),
                                      progress=_bar_callback(bar, task))
        if result.interrupted:  # show what finished; publish nothing (a partial run must not replace outputs)
            out.print(result)
            raise Interrupted
        if report is not None:
            write_compare_report(result, report, command=command_line(), outputs=outputs, scenario_toml=toml)
        doc = result.to_dict() | ({"scenario_toml": toml} if toml else {})
        _publish(outputs, doc, json_path)
    _show(doc if json_path == "-" else None, result,
          {"json": json_path, "report": report, "checkpoints": save_dir})


def _compare_scenario(scenario: str | None, data: Path | None, target: str | None, hidden: str | None,
                      drop: str | None, max_memory: int | None, **train: object):
    """``(scenario, toml)``: the named scenario, or the ad-hoc one built from ``--data`` (printed)."""
    if data is None:
        if target is not None or hidden is not None or drop is not None:
            raise ProbeError("--target, --hidden and --drop describe your own data, so they need --data",
                             expected="--data FILE with them", found="no --data",
                             fix="add --data train.csv, or drop --target/--hidden")
        return scenario or "signed_regression", None
    if scenario is not None:
        raise ProbeError("--data and --scenario both name the data", expected="one of them",
                         found=f"--scenario {scenario} and --data {data}",
                         fix="drop --scenario: --data builds a scenario from your file")
    from probe.experiment.adhoc import adhoc_scenario, parse_hidden

    sc, toml = adhoc_scenario(data, target, hidden=parse_hidden(hidden) if hidden else None,
                              drop=[c for c in drop.split(",") if c] if drop else None, max_memory=max_memory,
                              **train)
    err.print("[dim]ad-hoc scenario (save it as a .toml to rerun with --scenario):[/dim]")
    err.print(toml, markup=False, highlight=False)
    return sc, toml


@app.command(cls=Command)
@handles_errors
def circuit(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Use this scenario's evaluation data."),
    target: Optional[str] = typer.Option(None, "--target", help="CSV column holding the target (dropped from X)."),
    activation: Optional[str] = typer.Option(None, "--activation", help="Variant spec (needed for a bare state_dict)."),
    layer_order: Optional[str] = typer.Option(None, "--layer-order", help=LAYER_ORDER_HELP),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MEMORY_HELP),
    output: int = typer.Option(0, "--output", help="Which output's sign circuit to trace."),
    group: str = typer.Option("negative", "--group", help="Group exported by --graph/--png: negative or positive."),
    method: str = typer.Option("auto", "--method", help="Attribution: auto (DeepLift; IG for PReLU), ig or deeplift."),
    baseline: str = typer.Option("mean", "--baseline", help="Attribution baseline: mean (of the data) or zeros."),
    n_steps: int = typer.Option(128, "--n-steps", min=1, help="Integration steps for --method ig."),
    circuit_samples: int = typer.Option(2000, "--circuit-samples", min=0, help=CIRCUIT_SAMPLES_HELP),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N]."),
    graph: Optional[Path] = typer.Option(None, "--graph", help="Write the group's graph as GraphML."),
    png: Optional[Path] = typer.Option(None, "--png", help="Draw the group's circuit as a PNG."),
    json_path: Optional[str] = typer.Option(None, "--json", metavar="[PATH]", help=JSON_HELP),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a markdown report (with figures) to FILE.md."),
) -> None:
    """Trace how the network builds negative (and positive) values of one output, layer by layer."""
    check_outputs(graph, png, Path(json_path) if json_path not in (None, "-") else None, report=report)
    from probe.core.io import check_suffix

    if png is not None:
        check_suffix(png, "--png", (".png",), "a PNG picture")
    if graph is not None:
        check_suffix(graph, "--graph", (".graphml", ".xml"), "GraphML")
    with deferred_signals():
        from probe.circuit.validate import check_group
        from probe.circuit import write_graphml
        from probe.core.io import StagedOutputs
        from probe.experiment.workflows import circuit_file
        from probe.report.circuit_figure import draw_circuit
        if report is not None:  # matplotlib: only when a report is asked for
            from probe.report.circuit_report import write_circuit_report
    check_group(group)

    with StagedOutputs() as outputs:
        with progress_bar() as bar:
            task = bar.add_task("tracing", total=None)
            result = circuit_file(model, data=data, scenario=scenario, target=target, activation=activation,
                                  layer_order=layer_order,
                                  trust=trust, max_memory=_memory(max_memory), output=output, method=method,
                                  baseline=baseline, n_steps=n_steps, circuit_samples=circuit_samples or None,
                                  device=device, progress=_bar_callback(bar, task))
        if graph is not None:
            write_graphml(result, outputs.stage(graph), group)
        if png is not None:
            draw_circuit(result, outputs.stage(png), group)
        if report is not None:
            write_circuit_report(result, report, command=command_line(), group=group, outputs=outputs)
        _publish(outputs, result.to_dict(), json_path)
    _show(result.to_dict() if json_path == "-" else None, result,
          {"json": json_path, "graphml": graph, "png": png, "report": report})


@app.command(cls=Command)
@handles_errors
def study(
    out_dir: Path = typer.Option(Path("reports/leaky-vs-relu"), "--out", help="Folder for the reports and index.md."),
    seeds: int = typer.Option(30, "--seeds", min=1, help="Seeds per variant."),
    lr_grid: bool = typer.Option(True, "--lr-grid/--no-lr-grid",
                                 help="Also train every variant at 0.3, 3 and 10 times each scenario's rate."),
    scenario: Optional[list[str]] = typer.Option(None, "--scenario", help="Only these scenarios (repeatable)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MEMORY_HELP),
    json_path: Optional[str] = typer.Option(None, "--json", metavar="[PATH]", help=JSON_HELP),
) -> None:
    """Run relu, leaky, leaky:0.1, leaky:0.3 and prelu on every scenario; write reports and an index."""
    check_outputs(Path(json_path) if json_path not in (None, "-") else None, folder=out_dir)
    with deferred_signals():
        from probe.experiment.study import LR_FACTORS, STUDY_VARIANTS, run_study
        from probe.report.study_report import write_study

    command = "probe study" + (f" --seeds {seeds}" if seeds != 30 else "") + ("" if lr_grid else " --no-lr-grid") + \
        "".join(f" --scenario {s}" for s in scenario or []) + \
        (f" --out {out_dir}" if out_dir != Path("reports/leaky-vs-relu") else "")
    with progress_bar() as bar:
        task = bar.add_task("study", total=None)
        outcomes = run_study(seeds=seeds, scenarios=scenario, max_memory=_memory(max_memory),
                             lr_factors=LR_FACTORS if lr_grid else (1.0,), progress=lambda name, done, total: bar.update(
            task, description=name, completed=done, total=total))
    index = write_study(outcomes, out_dir, command)
    doc = {"variants": list(STUDY_VARIANTS), "index": str(index),
           "scenarios": [{"name": o.name, "report": str(out_dir / f"{o.name}.md"), "seconds": o.seconds,
                          "comparisons": [c.to_dict() for c in o.result.comparisons],
                          "best_lr": o.best_lr, "tuned_comparisons": [c.to_dict() for c in o.tuned]}
                         for o in outcomes]}
    if json_path not in (None, "-"):
        from probe.core.io import atomic_write_text
        atomic_write_text(json_path, json_text(doc))
    if json_path == "-":
        sys.stdout.write(json_text(doc))
        return
    for o in outcomes:
        out.print(f"{o.name}: {out_dir / (o.name + '.md')} ({o.seconds:.0f} s)", highlight=False, markup=False)
    out.print(f"index: {index}", highlight=False, markup=False)


@app.command(cls=Command)
@handles_errors
def scenarios(json_path: Optional[str] = typer.Option(None, "--json", metavar="[PATH]", help=JSON_HELP)) -> None:
    """List the shipped scenarios."""
    from rich.table import Table
    from rich.text import Text

    from probe.experiment.scenarios import list_scenarios

    check_outputs(Path(json_path) if json_path not in (None, "-") else None)
    rows = list_scenarios()
    doc = {"scenarios": [{"name": n, "description": d} for n, d in rows]}
    if json_path == "-":
        sys.stdout.write(json_text(doc))
        return
    if json_path is not None:
        from probe.core.io import atomic_write_text
        atomic_write_text(json_path, json_text(doc))
    table = Table(title="Scenarios (probe compare VARIANTS --scenario NAME)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("what it tests")
    for name, description in rows:
        table.add_row(Text(name), Text(description))
    out.print(table)


from probe.cli.history import history  # noqa: E402 (registered here with the other commands)

app.command(name="history", cls=Command)(history)

from probe.cli.sweep import sweep  # noqa: E402

app.command(name="sweep", cls=Command)(sweep)


def main() -> None:
    """Console-script entry point (``probe.cli.main`` defers the signals first)."""
    try:
        app()
    except KeyboardInterrupt:  # outside a command's body: no traceback
        err.print("interrupted: nothing was written")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
