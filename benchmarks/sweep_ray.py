"""A 16-cell sweep on a local Ray against ``--backend local``, with Ray's start-up shown separately.

The grid: ``signed_regression`` at 4 learning rates x 4 noise levels, relu
against leaky, small cells (``--seeds`` seeds, ``--epochs`` epochs, hidden
[32, 32], 1024 samples, no circuits). Timings, in one process:

* **local**: ``run_sweep`` with :class:`LocalExecutor` (one thread, cell after cell);
* **ray start-up**: ``ray.init(num_cpus=N)`` plus one warm-up task per CPU (a
  worker process imports torch and probe once);
* **ray**: the same sweep as Ray tasks of one CPU on that warm local Ray.

It checks that both backends give identical cells, prints the ratios, the
per-cell time, and (with ``--study-cell``) the time of one cell of the size
``probe study`` runs (5 variants x 30 seeds, 20 epochs, no diagnostics), from
which the README estimates a cluster's wall time for the study's 36 cells.

Usage::

    python benchmarks/sweep_ray.py [--cpus 2] [--seeds 4] [--epochs 5] [--study-cell]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

GRID = """base = "signed_regression"
variants = ["relu", "leaky"]
seeds = {seeds}
[set]
"train.epochs" = {epochs}
"data.n_samples" = 1024
"model.hidden" = [32, 32]
[grid]
"train.lr" = [1e-3, 3e-3, 1e-2, 3e-2]
"data.noise" = [0.0, 0.05, 0.1, 0.2]
"""


def _warm(_: int) -> int:
    import probe.compare.run  # noqa: F401  (torch, scipy and probe, once per worker)

    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--study-cell", action="store_true", help="also time one cell of probe study's size")
    args = parser.parse_args()

    import ray

    from probe.integrations.ray_executor import RayExecutor
    from probe.sweep.executors import LocalExecutor
    from probe.sweep.grid import load_grid
    from probe.sweep.run import run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grid.toml"
        path.write_text(GRID.format(seeds=args.seeds, epochs=args.epochs))
        grid = load_grid(path)
    cells = len(grid.cells)

    start = time.perf_counter()
    local = run_sweep(grid, executor=LocalExecutor(threads=1), circuits=False)
    t_local = time.perf_counter() - start

    start = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - start
    ray.get([ray.remote(_warm).remote(i) for i in range(args.cpus)])
    t_startup = time.perf_counter() - start
    start = time.perf_counter()
    remote = run_sweep(grid, executor=RayExecutor(), circuits=False)
    t_ray = time.perf_counter() - start
    ray.shutdown()

    same = [c.record for c in local.cells] == [c.record for c in remote.cells]
    print(f"{cells} cells, each relu+leaky x {args.seeds} seeds x {args.epochs} epochs, no circuits")
    print(f"local backend (1 thread):     {t_local:7.2f} s  ({t_local / cells:.2f} s per cell)")
    print(f"ray start-up ({args.cpus} CPUs):       {t_startup:7.2f} s  (ray.init {t_init:.2f} s, "
          f"worker warm-up {t_startup - t_init:.2f} s)")
    print(f"ray backend, warm:            {t_ray:7.2f} s  -> {t_local / t_ray:.2f}x the local backend")
    print(f"ray including start-up:       {t_ray + t_startup:7.2f} s  -> {t_local / (t_ray + t_startup):.2f}x")
    print(f"identical cells under both backends: {same}")
    if args.study_cell:
        from probe.compare.run import compare_variants
        from probe.experiment.study import STUDY_VARIANTS

        start = time.perf_counter()
        compare_variants(list(STUDY_VARIANTS), "signed_regression", seeds=30, diagnostics=False, circuits=False)
        t_cell = time.perf_counter() - start
        print(f"one study-sized cell (5 variants x 30 seeds, 20 epochs, no diagnostics): {t_cell:.2f} s; "
              f"the study's 36 cells one after another: ~{36 * t_cell / 60:.1f} min of training")


if __name__ == "__main__":
    main()
