"""Benchmark: ``analyze`` with the default sign circuit against ``--no-circuit``, in-process.

A 32-256-256-256-1 leaky MLP (32 inputs, three hidden layers of 256, one
output) over 50k seeded Gaussian samples with targets. Prints the best of
``--repeat`` wall times of ``probe.analyze(model, X, y, circuit=True)`` (the
circuit on its default stratified sample of 2,000 rows) and of
``circuit=False``, their ratio, and the circuit alone. Target: ratio <= 1.5.

Run: ``python benchmarks/analyze_circuit.py [--samples 50000] [--repeat 3] [--circuit-samples 2000]``
(``--circuit-samples 0`` traces every row, as before the cap).
"""

from __future__ import annotations

import argparse
import time

import torch

from probe.circuit import trace_circuit
from probe.experiment.workflows import analyze
from probe.models import MLP

WIDTHS = [32, 256, 256, 256, 1]


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--circuit-samples", type=int, default=2000, help="0: every row")
    parser.add_argument("--variant", default="leaky")
    args = parser.parse_args()
    torch.manual_seed(0)
    mlp = MLP.build(WIDTHS, args.variant)
    X = torch.randn(args.samples, WIDTHS[0])
    y = X[:, :1] * X[:, 1:2]
    cap = args.circuit_samples or None
    print(f"analyze on {'-'.join(map(str, WIDTHS))} {args.variant}, {args.samples} samples, circuit on "
          f"{cap or 'all'} rows, torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeat}")
    bare = best_of(args.repeat, lambda: analyze(mlp, X, y))
    full = best_of(args.repeat, lambda: analyze(mlp, X, y, circuit=True, circuit_samples=cap))
    alone = best_of(args.repeat, lambda: trace_circuit(mlp, X, max_samples=cap))
    print(f"analyze --no-circuit {bare:.2f} s; with the circuit {full:.2f} s; ratio {full / bare:.2f} "
          f"(target <= 1.5); trace_circuit alone {alone:.2f} s")


if __name__ == "__main__":
    main()
