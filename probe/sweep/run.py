"""``run_sweep``: every cell of a grid, from the cache where it is there, else through an executor.

The steps: key every cell (:func:`probe.sweep.cell.cell_key`), take the cached
ones, send the rest to the executor, store each record in the cache the moment
it arrives, and assemble a :class:`SweepResult` in grid order. A cell that
fails (after the executor's retries) is reported ``failed`` with its error; the
others complete. Ctrl-C propagates: the cells that finished are already in the
cache, so a rerun computes only the ones that were in flight or not started.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from probe.compare.results import DEFINITIONS
from probe.sweep.cache import SweepCache
from probe.sweep.cell import cell_key, cell_payload, run_cell
from probe.sweep.executors import CellFunction, Executor, LocalExecutor, Task
from probe.sweep.grid import Cell, SweepGrid

SweepProgress = Callable[[int, int, str], None]  # (cells done, cells total, what just finished)


@dataclass(frozen=True)
class CellResult:
    """One cell of a finished sweep.

    Attributes:
        cell: The grid cell. key: Its content hash.
        status: ``ok`` or ``failed``.
        record: The compare JSON of the cell (None if it failed).
        error: Why it failed (None if ok).
        cached: The record came from the cache.
        attempts: Tries it took (0 when cached).
    """

    cell: Cell
    key: str
    status: str
    record: dict | None
    error: str | None = None
    cached: bool = False
    attempts: int = 0

    def to_dict(self) -> dict:
        head = {"index": self.cell.index, "settings": dict(self.cell.settings), "key": self.key,
                "status": self.status, "cached": self.cached, "attempts": self.attempts}
        if self.error is not None:
            head["error"] = self.error
        return {**head, **(self.record or {})}


@dataclass(frozen=True)
class SweepResult:
    """Everything ``probe sweep`` reports; ``cells`` in grid order.

    ``cells_cached`` + ``cells_run`` + ``cells_failed`` is the number of cells:
    reused from the cache, computed now, and failed now.
    """

    grid: SweepGrid
    cells: tuple[CellResult, ...]
    backend: dict

    @property
    def cells_cached(self) -> int:
        return sum(c.cached for c in self.cells)

    @property
    def cells_failed(self) -> int:
        return sum(c.status == "failed" for c in self.cells)

    @property
    def cells_run(self) -> int:
        return len(self.cells) - self.cells_cached - self.cells_failed

    def to_dict(self) -> dict:
        return {"grid": self.grid.to_dict(), "backend": self.backend, "cells_total": len(self.cells),
                "cells_cached": self.cells_cached, "cells_run": self.cells_run,
                "cells_failed": self.cells_failed, "definitions": dict(DEFINITIONS),
                "cells": [c.to_dict() for c in self.cells]}


def run_sweep(grid: SweepGrid, *, executor: Executor | None = None, cache: SweepCache | None = None,
              device: str = "cpu", circuits: bool = True, max_memory: int | None = None,
              progress: SweepProgress | None = None, cell_fn: CellFunction | None = None) -> SweepResult:
    """Run every cell of ``grid`` that the cache does not already hold.

    Args:
        grid: A validated grid (:func:`probe.sweep.grid.load_grid`).
        executor: Where cells run (default: :class:`LocalExecutor`, one after another in this process).
            It is entered and left here.
        cache: Reuse and store cell records (None: compute every cell, store nothing).
        device: ``cpu`` or ``cuda[:N]`` for every cell.
        circuits: Trace each trained member's sign circuit (as ``probe compare`` does).
        max_memory: Memory budget in bytes per cell.
        progress: Called after each cell (cached ones first) as ``progress(done, total, label)``.
        cell_fn: The function each task runs (default :func:`probe.sweep.cell.run_cell`; tests swap
            it to make a cell fail).

    Raises:
        KeyboardInterrupt: Ctrl-C; the finished cells are in the cache.
    """
    executor = executor if executor is not None else LocalExecutor()
    cell_fn = cell_fn if cell_fn is not None else run_cell
    keyed = [(cell, cell_key(cell, grid.variants, device=device, circuits=circuits)) for cell in grid.cells]
    done: dict[int, CellResult] = {}
    total = len(keyed)
    for cell, key in keyed:
        record = cache.get(key) if cache is not None else None
        if record is not None:
            done[cell.index] = CellResult(cell, key, "ok", record, cached=True)
            if progress is not None:
                progress(len(done), total, "cached")
    todo = [(cell, key) for cell, key in keyed if cell.index not in done]
    by_key: dict[str, list[Cell]] = {}
    for cell, key in todo:
        by_key.setdefault(key, []).append(cell)  # two cells of equal settings (e.g. 1 and 1.0) run once
    tasks = [Task(key, cell_payload(cells[0], grid.variants, device=device, circuits=circuits,
                                    max_memory=max_memory)) for key, cells in by_key.items()]
    if tasks:
        with executor:
            for outcome in executor.map(cell_fn, tasks):
                ok = outcome.record is not None
                if ok and cache is not None:
                    cache.put(outcome.key, by_key[outcome.key][0].settings, outcome.record)
                for cell in by_key[outcome.key]:
                    done[cell.index] = CellResult(cell, outcome.key, "ok" if ok else "failed", outcome.record,
                                                  outcome.error, attempts=outcome.attempts)
                if progress is not None:
                    progress(len(done), total, "done" if ok else "failed")
    lost = "the executor returned no result for this cell"
    return SweepResult(grid, tuple(done.get(c.index) or CellResult(c, k, "failed", None, lost) for c, k in keyed),
                       executor.describe())
