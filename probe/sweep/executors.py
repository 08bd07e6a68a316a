"""Executors: where the cells of a sweep run, behind one small interface.

An executor maps a cell function over tasks and yields each outcome as it
finishes, in any order::

    with executor:
        for outcome in executor.map(run_cell, tasks):
            ...

The function and the payloads are plain (importable function, JSON-able
dicts), so an executor may run them anywhere: :class:`LocalExecutor` here, one
after another; :class:`probe.integrations.ray_executor.RayExecutor` as Ray
tasks. A failure of one task becomes an :class:`Outcome` with ``error`` set,
never an exception out of :meth:`Executor.map`, except Ctrl-C, which
propagates (cells already yielded are kept by the caller).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from probe.core.errors import ProbeError

CellFunction = Callable[[dict], dict]


@dataclass(frozen=True)
class Task:
    """One cell to run: its cache key (also its identity in the outcomes) and its payload."""

    key: str
    payload: dict


@dataclass(frozen=True)
class Outcome:
    """What came back for one task: the record, or the error after ``attempts`` tries."""

    key: str
    record: dict | None
    error: str | None = None
    attempts: int = 1


def error_text(exc: BaseException) -> str:
    """One line for a failed cell: probe's own message, else ``Type: message`` (at most 500 characters)."""
    text = str(exc) if isinstance(exc, ProbeError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


class Executor(Protocol):
    """Runs cell functions; a context manager that owns whatever it starts (a cluster connection)."""

    name: str

    def describe(self) -> dict:
        """JSON-able facts for the output's ``backend`` entry (name, workers, address)."""

    def map(self, fn: CellFunction, tasks: Iterable[Task]) -> Iterator[Outcome]:
        """Run ``fn(task.payload)`` for every task; yield an :class:`Outcome` as each finishes."""

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


class LocalExecutor:
    """Cells in this process, one after another, with torch pinned to ``threads`` CPU threads.

    Args:
        threads: torch intra-op threads while cells run (restored after); 1 is
            fastest for probe's small MLPs, and is what Ray tasks of one CPU use.
        max_retries: Further tries of a cell that raised (0: a failure is reported at once;
            cells are deterministic, so retries help only with transient faults).
    """

    name = "local"

    def __init__(self, threads: int = 1, max_retries: int = 0) -> None:
        self.threads, self.max_retries = threads, max_retries

    def describe(self) -> dict:
        return {"name": self.name, "threads": self.threads, "max_retries": self.max_retries}

    def map(self, fn: CellFunction, tasks: Iterable[Task]) -> Iterator[Outcome]:
        import torch

        for task in tasks:
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                yield self._run(fn, task)
            finally:
                torch.set_num_threads(previous)

    def _run(self, fn: CellFunction, task: Task) -> Outcome:
        error = ""
        for attempt in range(1, self.max_retries + 2):
            try:
                return Outcome(task.key, fn(task.payload), attempts=attempt)
            except Exception as exc:  # a failed cell must not sink the sweep; Ctrl-C still propagates
                error = error_text(exc)
        return Outcome(task.key, None, error, attempts=self.max_retries + 1)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
