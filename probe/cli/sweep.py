"""``probe sweep GRID.toml``: every cell of a grid (one batched compare each), locally or on Ray.

Registered in :mod:`probe.cli.app`; imports nothing heavy until it runs.
Exit codes: 0 when every cell succeeded, 1 when some failed (the outputs are
still written, failed cells marked), 2 for bad input (refused before any cell
runs), 130 on Ctrl-C (finished cells stay in ``--cache``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from probe.cli.common import (check_outputs, command_line, err, fail, handles_errors, json_text, out,
                              progress_bar)
from probe.core.errors import ProbeError

JSON_HELP = "Write the results as JSON: to stdout with no PATH (instead of the table), else to PATH."
BACKENDS = ("local", "ray")


def _executor(backend: str, address: Optional[str], cpus_per_cell: int, max_retries: int):
    if backend not in BACKENDS:
        raise ProbeError(f"Unknown backend '{backend}'", expected="local or ray", found=repr(backend),
                         fix="use --backend local (this process) or --backend ray")
    if backend == "local":
        if address is not None:
            raise ProbeError("--address needs --backend ray", expected="--backend ray --address ADDR",
                             found=f"--backend local --address {address}", fix="add --backend ray")
        from probe.sweep.executors import LocalExecutor

        return LocalExecutor(threads=cpus_per_cell, max_retries=max_retries)
    from probe.integrations.ray_executor import RayExecutor

    return RayExecutor(address, cpus_per_cell=cpus_per_cell, max_retries=max_retries)


@handles_errors
def sweep(
    grid_file: Path = typer.Argument(..., help="Grid TOML: base scenario, variants, seeds, [set] and [grid]."),
    backend: str = typer.Option("local", "--backend", help="local (this process, cell after cell) or ray."),
    address: Optional[str] = typer.Option(None, "--address", help="An existing Ray cluster (e.g. auto, "
                                                                  "ray://head:10001); default: a local Ray."),
    cpus_per_cell: int = typer.Option(1, "--cpus-per-cell", min=1, help="torch threads per cell (CPUs of a Ray task)."),
    max_retries: Optional[int] = typer.Option(None, "--max-retries", min=0,
                                              help="Retries of a failed cell (default: 1 on ray, 0 locally)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Folder of finished cells: a rerun computes only "
                                                               "the missing ones."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N], for every cell."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="Memory budget per cell (e.g. 8GiB)."),
    no_circuit: bool = typer.Option(False, "--no-circuit", help="Skip tracing each run's sign circuit."),
    axes: Optional[str] = typer.Option(None, "--axes", help="KEY1,KEY2: the swept keys the report's heatmaps "
                                                            "span (default: the first two)."),
    json_path: Optional[str] = typer.Option(None, "--json", metavar="[PATH]", help=JSON_HELP),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a markdown report (with heatmaps) to FILE.md."),
) -> None:
    """Run a grid of scenario settings, each cell one batched compare; cache, resume, run on Ray."""
    check_outputs(Path(json_path) if json_path not in (None, "-") else None, report=report, folder=cache)
    from probe.cli.signals import deferred_signals

    with deferred_signals():
        from probe.core.io import StagedOutputs
        from probe.core.limits import parse_memory
        from probe.sweep.cache import SweepCache
        from probe.sweep.grid import load_grid
        from probe.sweep.run import run_sweep
        from probe.sweep.tables import check_axes
        if report is not None:  # matplotlib: only when a report is asked for
            from probe.report.sweep_report import write_sweep_report
    retries = max_retries if max_retries is not None else (1 if backend == "ray" else 0)
    executor = _executor(backend, address, cpus_per_cell, retries)
    budget = None if max_memory is None else parse_memory(max_memory)
    grid = load_grid(grid_file, device=device, max_memory=budget)
    shown_axes = check_axes(grid, axes)
    store = SweepCache(cache) if cache is not None else None
    finished = [0]
    with StagedOutputs() as outputs:
        try:
            with progress_bar() as bar:
                task = bar.add_task("cells", total=len(grid.cells))

                def progress(done: int, total: int, what: str) -> None:
                    finished[0] = done
                    bar.update(task, completed=done, total=total, description=f"cells ({what})")

                result = run_sweep(grid, executor=executor, cache=store, device=device, circuits=not no_circuit,
                                   max_memory=budget, progress=progress)
        except KeyboardInterrupt:
            kept = f"the {finished[0]} finished cells are in {cache}; rerun to compute the rest" if cache \
                else "without --cache the finished cells are lost"
            err.print(f"interrupted: nothing was written ({kept})", highlight=False, markup=False)
            raise typer.Exit(130) from None
        doc = result.to_dict()
        if report is not None:
            write_sweep_report(result, report, axes=shown_axes, command=command_line(), outputs=outputs)
        if json_path not in (None, "-"):
            outputs.stage(Path(json_path)).write_text(json_text(doc), encoding="utf-8")
        outputs.publish()
    if json_path == "-":
        sys.stdout.write(json_text(doc))
    else:
        from probe.report.fmt import Legible
        from probe.report.sweep_report import cells_table

        out.print(Legible(cells_table(result)))
        for what, path in (("json", json_path), ("report", report), ("cache", cache)):
            if path is not None:
                out.print(f"{what}: {path}", highlight=False, markup=False)
    if result.cells_failed:
        raise fail(f"{result.cells_failed} of {len(result.cells)} cells failed (their 'error' is in the "
                   "output); the other cells completed. Fix: see each error; with --cache, a rerun computes "
                   "only the failed and missing cells.", code=1)
