"""Wall time of ``probe compare relu leaky`` on the CPU and on a GPU, for 10, 100 and 1000 seeds.

Usage: ``python benchmarks/compare_gpu.py [--epochs N] [--seeds 10,100,1000] [--no-cpu-above N]``

Each cell trains the default scenario (signed_regression, its 20 epochs by
default) with the diagnostics on and circuits off, after one warm-up run per
device (CUDA context, kernels), and prints seconds: the CPU with one torch
thread (what ``probe compare`` uses) and with every core, the GPU in all and
in training alone (to the last epoch's end; the rest is the final
evaluation, diagnostics and result records), and the ratio of the faster CPU
time to the GPU's, with the card's name. Without a CUDA device it says so and
exits 0. CPU runs above ``--no-cpu-above`` seeds are skipped (their time is
linear in the seeds: shown as ``~`` from the largest CPU cell measured).

A last row times a wide model, where the matrix products dominate: the same
scenario with ``hidden = [512, 512]``, ``--wide-seeds`` seeds (0 skips it),
2 epochs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from probe.compare.run import compare_variants


def _time(seeds: int, device: str, epochs: int | None, threads: int | None = None,
          scenario: str | Path = "signed_regression") -> tuple[float, float]:
    """Wall seconds of the whole call and of its training (up to the last epoch's progress call)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    marks: list[float] = []
    start = time.perf_counter()
    compare_variants(["relu", "leaky"], scenario, seeds=seeds, epochs=epochs, device=device,
                     circuits=False, threads=threads, progress=lambda done, total: marks.append(time.perf_counter()))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    end = time.perf_counter()
    return end - start, (marks[-1] if marks else end) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the scenario's (20)")
    parser.add_argument("--seeds", default="10,100,1000")
    parser.add_argument("--no-cpu-above", type=int, default=1000)
    parser.add_argument("--wide-seeds", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to compare (run this on a machine with a GPU)")
        return
    cores = os.cpu_count() or 1
    card = torch.cuda.get_device_name(0)
    epochs = args.epochs or "the scenario's"
    print(f"GPU: {card}; {cores} CPU cores; torch {torch.__version__}; signed_regression, relu and leaky, "
          f"{epochs} epochs, circuits off")
    for device in ("cpu", "cuda"):  # warm-up: imports, CUDA context, kernels
        _time(2, device, 1, 1)
    per_seed: list[float] | None = None
    print(f"{'seeds':>6} {'cpu 1 thr':>10} {f'cpu {cores} thr':>11} {'gpu':>8} {'gpu train':>10} {'cpu/gpu':>8}")
    for seeds in (int(s) for s in args.seeds.split(",")):
        gpu, gpu_train = _time(seeds, "cuda", args.epochs, 1)
        if seeds <= args.no_cpu_above:
            cpu = [_time(seeds, "cpu", args.epochs, t)[0] for t in (1, cores)]
            per_seed = [c / seeds for c in cpu]
            shown = [f"{c:10.2f}" for c in cpu]
        else:
            cpu = None if per_seed is None else [p * seeds for p in per_seed]
            shown = ["~" + (f"{c:9.1f}" if cpu is not None else "        ?") for c in (cpu or [0, 0])]
        ratio = f"{min(cpu) / gpu:8.1f}" if cpu is not None else "       ?"
        print(f"{seeds:>6} {shown[0]} {shown[1]:>11} {gpu:8.2f} {gpu_train:10.2f} {ratio}", flush=True)
    if args.wide_seeds:
        with tempfile.TemporaryDirectory() as tmp:
            wide = Path(tmp) / "wide.toml"
            from probe.experiment.scenarios import scenarios_dir  # the shipped file, hidden widened
            text = (scenarios_dir() / "signed_regression.toml").read_text(encoding="utf-8")
            wide.write_text(text.replace("hidden = [32, 32]", "hidden = [512, 512]"), encoding="utf-8")
            gpu, gpu_train = _time(args.wide_seeds, "cuda", 2, 1, wide)
            cpu = [_time(args.wide_seeds, "cpu", 2, t, wide)[0] for t in (1, cores)]
            print(f"{args.wide_seeds:>6} {cpu[0]:10.2f} {cpu[1]:11.2f} {gpu:8.2f} {gpu_train:10.2f} "
                  f"{min(cpu) / gpu:8.1f}   <- hidden [512, 512], 2 epochs", flush=True)


if __name__ == "__main__":
    main()
