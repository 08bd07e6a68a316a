"""Start-up cost of the command line: ``probe --help`` against ``python -c "import torch"``.

Target (issue: a fast, consistent CLI): ``probe --help`` within 0.5 s of importing
torch. Prints the best of several runs of each, in seconds, and which heavy
modules ``probe --help`` and ``import probe`` load (none should).

    python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

HEAVY = ("torch", "captum", "matplotlib", "scipy", "sklearn", "networkx")


def best_of(cmd: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    torch_s = best_of([py, "-c", "import torch"], args.repeats)
    help_s = best_of([py, "-m", "probe", "--help"], args.repeats)
    version_s = best_of([py, "-m", "probe", "--version"], args.repeats)
    scen_s = best_of([py, "-m", "probe", "scenarios"], args.repeats)
    loaded = subprocess.run([py, "-c", "import sys, probe, probe.cli.app; print(' '.join(m for m in "
                             f"{HEAVY!r} if m in sys.modules) or 'none')"],
                            check=True, capture_output=True, text=True).stdout.strip()
    print(f"python -c 'import torch':  {torch_s:.3f} s")
    print(f"probe --help:               {help_s:.3f} s  (difference {help_s - torch_s:+.3f} s; target <= +0.5 s)")
    print(f"probe --version:            {version_s:.3f} s")
    print(f"probe scenarios:            {scen_s:.3f} s")
    print(f"heavy modules loaded by 'import probe' and the CLI module: {loaded}")


if __name__ == "__main__":
    main()
