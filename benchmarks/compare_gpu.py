"""Wall time of ``probe compare relu leaky`` on the CPU and on a GPU, for 10, 100 and 1000 seeds.

Usage: ``python benchmarks/compare_gpu.py [--epochs N] [--seeds 10,100,1000] [--no-cpu-above N]``

Each cell trains the default scenario (signed_regression) for ``--epochs``
epochs with the diagnostics on and circuits off, after one warm-up run per
device (CUDA context, kernels), and prints seconds and the CPU/GPU ratio with
the card's name. Without a CUDA device it says so and exits 0. The CPU runs
above ``--no-cpu-above`` seeds are skipped by default on a small machine
(their time is linear in the seeds: the ratio is printed from the largest
CPU cell measured).
"""

from __future__ import annotations

import argparse
import time

import torch

from probe.compare.run import compare_variants


def _time(seeds: int, device: str, epochs: int) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    compare_variants(["relu", "leaky"], "signed_regression", seeds=seeds, epochs=epochs, device=device,
                     circuits=False, threads=None)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", default="10,100,1000")
    parser.add_argument("--no-cpu-above", type=int, default=100)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to compare (run this on a machine with a GPU)")
        return
    card = torch.cuda.get_device_name(0)
    print(f"GPU: {card}; CPU threads: {torch.get_num_threads()}; torch {torch.__version__}; "
          f"{args.epochs} epochs of signed_regression, relu and leaky, circuits off")
    _time(2, "cpu", 1), _time(2, "cuda", 1)  # warm-up: imports, CUDA context, kernels
    per_seed_cpu = None
    print(f"{'seeds':>6} {'cpu s':>9} {'gpu s':>9} {'cpu/gpu':>8}")
    for seeds in (int(s) for s in args.seeds.split(",")):
        gpu = _time(seeds, "cuda", args.epochs)
        if seeds <= args.no_cpu_above:
            cpu = _time(seeds, "cpu", args.epochs)
            per_seed_cpu = cpu / seeds
            shown = f"{cpu:9.2f}"
        else:
            cpu = None if per_seed_cpu is None else per_seed_cpu * seeds
            shown = "   ~" + (f"{cpu:5.0f}" if cpu is not None else "    ?")
        ratio = f"{cpu / gpu:8.1f}" if cpu is not None else "       ?"
        print(f"{seeds:>6} {shown} {gpu:9.2f} {ratio}")


if __name__ == "__main__":
    main()
