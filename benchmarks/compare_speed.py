"""How fast is ``probe.compare.run`` against training the same models one after another?

Three timings in one process, each the best of ``--repeat`` runs:

* **plain**: a loop that trains the same ``len(variants) x seeds`` models one
  after another as ``nn.Sequential`` + ``torch.optim`` with no diagnostics,
  from the same initial weights, on the same data, batches and epochs;
* **probe**: ``compare(variants, scenario)`` with every diagnostic on,
  sign circuits included;
* **probe, hook diagnostics**: ``compare(..., circuits=False)``: the per-epoch
  probe-batch diagnostics and the final evaluation-set diagnostics;
* **probe, no diagnostics**: ``compare(..., diagnostics=False)``.

Targets (2-core CPU, 10 seeds): probe at least 3x faster than plain; the
hook diagnostics cost at most 15% over probe without them.

``--processes N`` times whole processes instead, as a user meets them, start-up
included: ``python -m probe compare relu leaky --json`` against a process that
imports torch and runs the plain loop (``--plain-only``), alternated, N of
each (issue 13's target: >= 4x).

Usage::

    python benchmarks/compare_speed.py [--seeds 10] [--repeat 3] [--threads 1] [--scenario signed_regression]
    python benchmarks/compare_speed.py --processes 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from probe.compare.run import compare_variants as compare
from probe.models.mlp import MLP
from probe.experiment.datasets import make_datasets
from probe.experiment.scenarios import Scenario, load_scenario
from probe.engines.training import epoch_order, init_params
from probe.core.variants import parse_variant


def train_plain(sc: Scenario, variants: list[str], build: Callable[[str, int], nn.Module]) -> float:
    """Trains ``build(spec, seed)`` for every variant and seed, model after model, as a user would.

    Same data, batches and epochs as the scenario; ``torch.optim`` and ``nn.MSELoss``. Returns the
    sum of the last losses (to keep the work observable). Shared with ``compare_norms.py``.
    """
    train, _ = make_datasets(sc)
    X, y = train.X, train.y
    n, bs, t = X.shape[0], sc.train.batch_size, sc.train
    total = 0.0
    for spec in variants:
        for seed in range(t.seeds):
            model = build(spec, seed).train()
            opt = (torch.optim.Adam(model.parameters(), lr=t.lr) if t.optimizer == "adam"
                   else torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum))
            loss_fn = nn.MSELoss()
            for epoch in range(t.epochs):
                order = epoch_order(seed, epoch, n)
                xe, ye = X[order], y[order]
                for lo in range(0, n, bs):
                    loss = loss_fn(model(xe[lo:lo + bs]), ye[lo:lo + bs])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            total += float(loss.detach())
    return total


def plain_loop(variants: list[str], scenario_name: str, seeds: int) -> float:
    """:func:`train_plain` on probe's canonical MLPs, from the scenario's initial weights."""
    sc = load_scenario(scenario_name).with_overrides(seeds=seeds)

    def build(spec: str, seed: int) -> nn.Module:
        model = MLP.build(sc.widths, parse_variant(spec))
        with torch.no_grad():
            for lin, (w, b) in zip(model.linears, init_params(sc.widths, sc.model.init, seed)):
                lin.weight.copy_(w)
                lin.bias.copy_(b)
        return model

    return train_plain(sc, variants, build)


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def whole_processes(args: argparse.Namespace) -> None:
    """``probe compare`` and the plain loop as separate processes, alternated, start-up included."""
    probe_cmd = [sys.executable, "-m", "probe", "compare", "relu", "leaky", "--scenario", args.scenario,
                 "--seeds", str(args.seeds), "--json"]
    plain_cmd = [sys.executable, __file__, "--plain-only", "--scenario", args.scenario, "--seeds", str(args.seeds),
                 "--threads", str(args.threads)]
    times: dict[str, list[float]] = {"probe": [], "plain": []}
    for _ in range(args.processes):
        for name, cmd in (("probe", probe_cmd), ("plain", plain_cmd)):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    p, q = times["probe"], times["plain"]
    print(f"whole processes, {args.processes} each, alternated; scenario {args.scenario}, {args.seeds} seeds")
    print(f"probe compare relu leaky --json  {min(p):.2f}-{max(p):.2f} s")
    print(f"plain loop (torch import + loop) {min(q):.2f}-{max(q):.2f} s")
    print(f"plain / probe                    {min(q) / max(p):.1f}-{max(q) / min(p):.1f}x   "
          f"(median against median {statistics.median(q) / statistics.median(p):.1f}x, best against best "
          f"{min(q) / min(p):.1f}x; target >= 4x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="signed_regression")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for every timing")
    parser.add_argument("--processes", type=int, default=0, help="time N whole processes of each instead")
    parser.add_argument("--plain-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.processes:
        whole_processes(args)
        return
    torch.set_num_threads(args.threads)
    if args.plain_only:
        plain_loop(["relu", "leaky"], args.scenario, args.seeds)
        return
    variants = ["relu", "leaky"]
    kw = dict(seeds=args.seeds, threads=None)  # the thread count set above applies to all three
    compare(variants, args.scenario, epochs=1, **kw)  # warm-up: imports, allocator
    t_plain = best_of(args.repeat, lambda: plain_loop(variants, args.scenario, args.seeds))
    t_probe = best_of(args.repeat, lambda: compare(variants, args.scenario, **kw))
    t_hooks = best_of(args.repeat, lambda: compare(variants, args.scenario, circuits=False, **kw))
    t_nodiag = best_of(args.repeat, lambda: compare(variants, args.scenario, diagnostics=False, **kw))
    print(f"scenario {args.scenario}, {len(variants)} variants x {args.seeds} seeds, "
          f"{torch.get_num_threads()} torch thread(s), best of {args.repeat}")
    print(f"plain loop (no diagnostics)        {t_plain:7.2f} s")
    print(f"probe compare (all, with circuits) {t_probe:7.2f} s   {t_plain / t_probe:5.1f}x faster than plain "
          f"(target >= 3x)")
    print(f"probe compare (hook diagnostics)   {t_hooks:7.2f} s   {t_plain / t_hooks:5.1f}x faster than plain")
    print(f"probe compare (no diagnostics)     {t_nodiag:7.2f} s   {t_plain / t_nodiag:5.1f}x faster than plain")
    print(f"hook diagnostics overhead          {100 * (t_hooks / t_nodiag - 1):6.1f} %   (target <= 15%)")
    print(f"circuits on top                    {100 * (t_probe / t_hooks - 1):6.1f} %")

if __name__ == "__main__":
    main()
