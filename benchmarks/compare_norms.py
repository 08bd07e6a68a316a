"""Does batching keep its edge with smooth activations and BatchNorm?

``compare relu leaky gelu elu`` with ``norm = "batch"`` (the ``signed_regression``
scenario, BatchNorm after every hidden Linear) at 10 seeds, against the plain
loop that trains the same 40 ``nn.Sequential`` models (``Linear, BatchNorm1d,
activation`` blocks) one after another with ``torch.optim``, from the same
initial weights, on the same data in the same order, with no diagnostics.
Each timing is the best of ``--repeat`` runs:

* **plain**: the loop above;
* **probe**: ``compare(...)`` with every diagnostic, sign circuits included;
* **probe, hook diagnostics**: ``compare(..., circuits=False)``;
* **probe, no diagnostics**: ``compare(..., diagnostics=False)``.

Target (issue 10): probe at least 3x faster than plain.

Usage::

    python benchmarks/compare_norms.py [--seeds 10] [--repeat 3] [--threads 1] [--norm batch]
"""

from __future__ import annotations

import argparse

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import torch
from torch import nn

from compare_speed import best_of, train_plain  # this folder: the plain loop and timing, shared

from probe.compare.run import compare_variants as compare
from probe.core.variants import parse_variant
from probe.engines.training import init_params
from probe.experiment.scenarios import Scenario, load_scenario, parse_scenario

VARIANTS = ["relu", "leaky", "gelu", "elu"]


def scenario_with_norm(name: str, norm: str, seeds: int) -> Scenario:
    """A shipped scenario with ``[model] norm`` set."""
    with open(load_scenario(name).path, "rb") as fh:
        raw = tomllib.load(fh)
    raw["model"]["norm"] = norm
    raw["name"] = f"{name}_{norm}norm"
    return parse_scenario(raw, raw["name"]).with_overrides(seeds=seeds)


def sequential(widths: list[int], spec: str, norm: str, seed: int, init: str) -> nn.Sequential:
    variant = parse_variant(spec)
    layers: list[nn.Module] = []
    for i, (w, b) in enumerate(init_params(widths, init, seed)):
        lin = nn.Linear(widths[i], widths[i + 1])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layers.append(lin)
        if i < len(widths) - 2:
            if norm == "batch":
                layers.append(nn.BatchNorm1d(widths[i + 1]))
            elif norm == "layer":
                layers.append(nn.LayerNorm(widths[i + 1]))
            layers.append(variant.make_module())
    return nn.Sequential(*layers)


def plain_loop(sc: Scenario) -> float:
    """Trains model after model (compare_speed's loop); returns the sum of the last losses."""
    return train_plain(sc, VARIANTS, lambda spec, seed: sequential(sc.widths, spec, sc.model.norm, seed,
                                                                   sc.model.init))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="signed_regression")
    parser.add_argument("--norm", default="batch", choices=["none", "batch", "layer"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for every timing")
    parser.add_argument("--device", default="cpu", help="device of probe's ensemble (the plain loop: CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sc = scenario_with_norm(args.scenario, args.norm, args.seeds)
    kw = dict(threads=None, device=args.device)  # the thread count set above applies to every timing
    compare(VARIANTS, sc, epochs=1, **kw)  # warm-up: imports, allocator
    t_plain = best_of(args.repeat, lambda: plain_loop(sc))
    t_probe = best_of(args.repeat, lambda: compare(VARIANTS, sc, **kw))
    t_hooks = best_of(args.repeat, lambda: compare(VARIANTS, sc, circuits=False, **kw))
    t_nodiag = best_of(args.repeat, lambda: compare(VARIANTS, sc, diagnostics=False, **kw))
    runs = len(VARIANTS) * args.seeds
    print(f"scenario {sc.name} (norm = {args.norm!r}), {' '.join(VARIANTS)} x {args.seeds} seeds = {runs} "
          f"networks, {sc.train.epochs} epochs, {torch.get_num_threads()} torch thread(s), best of {args.repeat}")
    print(f"plain loop (no diagnostics)        {t_plain:7.2f} s")
    print(f"probe compare (all, with circuits) {t_probe:7.2f} s   {t_plain / t_probe:5.1f}x faster than plain")
    print(f"probe compare (hook diagnostics)   {t_hooks:7.2f} s   {t_plain / t_hooks:5.1f}x faster than plain "
          "(target >= 3x)")
    print(f"probe compare (no diagnostics)     {t_nodiag:7.2f} s   {t_plain / t_nodiag:5.1f}x faster than plain")


if __name__ == "__main__":
    main()
