"""Wall time of ``probe.circuit.circuit`` on an 8-64-64-64-1 MLP (3 x 64 hidden) with 10k samples.

Usage: ``python benchmarks/circuit_speed.py [--samples N] [--method auto|ig|deeplift] [--n-steps S]
[--threads T] [--repeat R] [--circuit-samples C]`` (``C``: the sample cap, default 0 = every row). Prints one line per variant: the best of R wall times, with the
largest relative completeness error measured. The networks are seeded and untrained (the cost
does not depend on the weights); the data is seeded Gaussian inputs.
"""

from __future__ import annotations

import argparse
import time

import torch

from probe.circuit import trace_circuit, write_graphml
from probe.report.circuit_figure import draw_circuit
from probe.core.data import Dataset
from probe.models.mlp import MLP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--method", default="auto", choices=["auto", "ig", "deeplift"])
    parser.add_argument("--n-steps", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--circuit-samples", type=int, default=0, help="sample cap (0: every row)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = Dataset(torch.randn(args.samples, 8), None, "gaussian")
    print(f"circuit on 8-64-64-64-1, {args.samples} samples (cap {args.circuit_samples or 'none'}), method={args.method}, n_steps={args.n_steps}, "
          f"{torch.get_num_threads()} torch threads")
    for variant in ("relu", "leaky"):
        torch.manual_seed(1)
        mlp = MLP.build([8, 64, 64, 64, 1], variant)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = trace_circuit(mlp, data, method=args.method, n_steps=args.n_steps,
                                   max_samples=args.circuit_samples or None)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        write_graphml(result, "/tmp/circuit_speed.graphml")
        draw_circuit(result, "/tmp/circuit_speed.png")
        export = time.perf_counter() - start
        print(f"{variant:6s} circuit {min(times):6.2f} s (best of {args.repeat})  export graphml+png {export:5.2f} s  "
              f"completeness max rel error {result.completeness.max_rel_error:.2e}")


if __name__ == "__main__":
    main()
