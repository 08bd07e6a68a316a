"""Benchmark: probe analyze on a 4 x 1024 MLP over 50k and 200k samples.

Prints, per size: the wall time of ``probe.diagnose``, the time of a plain
forward+backward pass over the same data and batches, their ratio, and the peak
resident memory of a fresh process doing only the analysis (``ru_maxrss``, with
glibc's mmap threshold fixed so that allocator fragmentation does not pass for
state; the default allocator's figure is printed beside it) and the input
data's own size. Times are the best of ``--repeat`` passes. Targets: ratio <= 1.5; peak memory at 200k
within 10% of that at 50k.

Run: ``python benchmarks/analyze_scale.py [--sizes 50000 200000] [--features 32]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from probe import diagnose
from probe.core.data import Dataset
from probe.models import MLP

WIDTHS_HIDDEN = [1024] * 4


def make(n: int, features: int) -> tuple[MLP, Dataset]:
    torch.manual_seed(0)
    mlp = MLP.build([features, *WIDTHS_HIDDEN, 1], "leaky")
    X = torch.randn(n, features)
    y = X[:, :1] * X[:, 1:2]
    return mlp, Dataset(X, y, f"random {n}")


def plain_pass(mlp: MLP, data: Dataset, batch_size: int) -> None:
    n = data.X.shape[0]
    for start in range(0, n, batch_size):
        out = mlp(data.X[start:start + batch_size])
        (((out - data.y[start:start + batch_size]) ** 2).mean(dim=1).sum() / n).backward()
    mlp.zero_grad(set_to_none=True)


def child(n: int, features: int, batch_size: int, mode: str, repeat: int) -> None:
    """One measurement in this process: prints a JSON line."""
    mlp, data = make(n, features)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = float("inf")
    for _ in range(repeat):  # best of `repeat`: the first pass also pays for allocations
        t0 = time.perf_counter()
        if mode == "analyze":
            diagnose(mlp, data, batch_size=batch_size)
        else:
            plain_pass(mlp, data, batch_size)
        seconds = min(seconds, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "before_mib": base_rss / 1024,
                      "data_mib": data.X.numel() * 4 / 2**20}))


def measure(n: int, features: int, batch_size: int, mode: str, repeat: int, fixed_mmap: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--sizes", str(n), "--features", str(features),
           "--batch-size", str(batch_size), "--repeat", str(repeat)]
    env = dict(os.environ)
    if fixed_mmap:
        # glibc raises its mmap threshold after large frees, and the heap then grows through
        # fragmentation as a run goes on: allocator noise, not what the program keeps. A fixed
        # threshold makes peak memory measure the program; it slows large temporaries (fresh
        # pages), so timings are taken in separate runs without it.
        env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
    line = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=2, help="best of this many passes per measurement")
    parser.add_argument("--child", choices=["analyze", "plain"])
    args = parser.parse_args()
    if args.child:
        child(args.sizes[0], args.features, args.batch_size, args.child, args.repeat)
        return
    print(f"MLP {args.features}-{'-'.join(map(str, WIDTHS_HIDDEN))}-1 leaky, batch {args.batch_size}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeat}")
    peaks, data = {}, {}
    for n in args.sizes:
        plain = measure(n, args.features, args.batch_size, "plain", args.repeat)
        probe = measure(n, args.features, args.batch_size, "analyze", args.repeat)
        memory = measure(n, args.features, args.batch_size, "analyze", 1, fixed_mmap=True)
        peaks[n], data[n] = memory["peak_mib"], memory["data_mib"]
        print(f"{n:>8} samples: analyze {probe['seconds']:.2f} s, plain fwd+bwd {plain['seconds']:.2f} s, "
              f"ratio {probe['seconds'] / plain['seconds']:.2f}; peak RSS {memory['peak_mib']:.0f} MiB "
              f"(fixed mmap threshold; default allocator {probe['peak_mib']:.0f} MiB; input data itself "
              f"{memory['data_mib']:.0f} MiB)")
    if len(peaks) >= 2:
        small, large = min(peaks), max(peaks)
        print(f"peak memory {large} vs {small} samples: {100 * (peaks[large] / peaks[small] - 1):+.1f}% "
              f"(the input data itself accounts for {data[large] - data[small]:.0f} MiB of the difference)")


if __name__ == "__main__":
    main()
