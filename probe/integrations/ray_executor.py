"""``RayExecutor``: the cells of a sweep as Ray tasks, on a local Ray or an existing cluster.

::

    from probe.integrations.ray_executor import RayExecutor
    from probe.sweep.grid import load_grid
    from probe.sweep.run import run_sweep

    result = run_sweep(load_grid("grid.toml"), executor=RayExecutor(address="auto"))

Each task asks Ray for ``cpus_per_cell`` CPUs and pins torch's threads to the
CPUs Ray assigned it (``get_assigned_resources()``), so tasks sharing a node do
not oversubscribe it. A task that raises, or whose worker or node is lost, is
submitted again up to ``max_retries`` times, then comes back as a failed
:class:`~probe.sweep.executors.Outcome`; the other cells go on. Ctrl-C cancels
the tasks in flight. Records travel as the JSON-able dicts of
:func:`probe.sweep.cell.run_cell`. Needs the ``ray`` extra:
``pip install -e ".[ray]"`` in probe's checkout; on a cluster, every node needs probe installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator

from probe.core.errors import ProbeError
from probe.sweep.executors import CellFunction, Outcome, Task, error_text


def _run_in_worker(fn: CellFunction, payload: dict) -> dict:
    """Inside a Ray worker: pin torch's threads to the task's CPUs, then run the cell."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return fn(payload)


def _cause(exc: BaseException) -> BaseException:
    """The user's exception inside a RayTaskError (the error itself otherwise)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


class RayExecutor:
    """Runs cells as Ray tasks.

    Args:
        address: An existing cluster (``auto``, ``ray://host:10001``, ``host:6379``); None starts a
            local Ray for the run and stops it after.
        cpus_per_cell: CPUs each task asks for; torch uses that many threads.
        max_retries: Further tries of a task that failed or was lost.
        num_cpus: CPUs of the local Ray (None: all of this machine's); ignored with ``address``.

    Raises:
        ProbeError: Ray is not installed, or a bad number.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_cell: int = 1, max_retries: int = 1,
                 num_cpus: int | None = None) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ProbeError("--backend ray needs Ray", expected="the ray package", found="it is not installed",
                             fix='pip install -e ".[ray]" in probe\'s checkout (or use --backend local)')
        if cpus_per_cell < 1 or max_retries < 0:
            raise ProbeError("Bad Ray task settings", expected="cpus_per_cell >= 1 and max_retries >= 0",
                             found=f"cpus_per_cell={cpus_per_cell}, max_retries={max_retries}",
                             fix="pass --cpus-per-cell 1 --max-retries 1")
        self.address, self.cpus_per_cell, self.max_retries = address, cpus_per_cell, max_retries
        self.num_cpus = num_cpus
        self._started = False
        self.cluster_cpus: float | None = None

    def describe(self) -> dict:
        return {"name": self.name, "address": self.address or "local", "cluster_cpus": self.cluster_cpus,
                "cpus_per_cell": self.cpus_per_cell, "max_retries": self.max_retries}

    def __enter__(self) -> RayExecutor:
        import ray

        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            try:
                if self.address is None:
                    ray.init(num_cpus=self.num_cpus, **options)
                else:
                    ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ProbeError(f"Could not start or reach Ray ({self.address or 'local'})",
                                 expected="a running Ray cluster at --address, or a machine that can start one",
                                 found=error_text(exc)[:300],
                                 fix="check --address (ray status on the head node), or leave it out") from None
            self._started = True
        self.cluster_cpus = ray.cluster_resources().get("CPU")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def map(self, fn: CellFunction, tasks: Iterable[Task]) -> Iterator[Outcome]:
        import ray

        remote = ray.remote(_run_in_worker).options(num_cpus=self.cpus_per_cell, max_retries=0)
        fn_ref = ray.put(fn)
        pending = {remote.remote(fn_ref, task.payload): (task, 1) for task in tasks}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                task, attempt = pending.pop(ready[0])
                try:
                    record = ray.get(ready[0])
                except Exception as exc:  # the task raised, or its worker or node was lost
                    if attempt <= self.max_retries:
                        pending[remote.remote(fn_ref, task.payload)] = (task, attempt + 1)
                        continue
                    yield Outcome(task.key, None, error_text(_cause(exc)), attempts=attempt)
                else:
                    yield Outcome(task.key, record, attempts=attempt)
        finally:  # Ctrl-C, or the caller stopped early: nothing keeps running for it
            for ref in pending:
                ray.cancel(ref, force=True)
