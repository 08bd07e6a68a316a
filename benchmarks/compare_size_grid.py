"""Where does the batched ensemble win, and where does it lose? Training time over a size grid.

For each (hidden width, members) cell, the same training (two hidden layers,
8 inputs, one output, leaky ReLU, Adam, batch 128, ``--steps`` steps on one
fixed batch) is timed three ways, interleaved, best of ``--repeat``:

* **probe**: :class:`probe.engines.training.Ensemble` + :func:`probe.engines.training.train`
  (the batched ensemble compare uses, diagnostics off);
* **plain**: one ``nn.Sequential`` + ``torch.optim.Adam`` per member, one after another;
* **vmap**: the PyTorch-recommended ensemble: stacked parameters,
  ``torch.func.vmap(torch.func.grad(loss))`` and one ``torch.optim.Adam``.

It prints seconds per cell and the ratios plain/probe and vmap/probe (> 1:
probe faster). Issue 13's goal is probe never slower than either, at widths
up to 1024 and up to 400 members; this script records where that holds.

Usage: ``python benchmarks/compare_size_grid.py [--widths 32,128,512,1024] [--members 20,100,400]
[--steps 20] [--repeat 2] [--threads 1] [--methods probe,plain,vmap]``

At width 1024 and 400 members the vmap ensemble needs more than 24 GiB (its
per-member gradients, Adam state and temporaries of 1.6 GiB each); leave it out
there with ``--methods probe,plain`` on a smaller machine.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from probe.core.variants import parse_variant
from probe.engines.training import Ensemble
from probe.engines.training.trainer import TrainConfig, train

FEATURES, BATCH = 8, 128


def _data(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH * steps, FEATURES, generator=gen)
    return x, x[:, :1] - x[:, 1:2]


def time_probe(width: int, members: int, steps: int) -> float:
    x, y = _data(steps)
    ens = Ensemble([FEATURES, width, width, 1], [parse_variant("leaky")], list(range(members)), "default")
    start = time.perf_counter()
    train(ens, x, y, TrainConfig("adam", 1e-3, BATCH, 1))
    return time.perf_counter() - start


def _model(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(FEATURES, width), nn.LeakyReLU(0.01), nn.Linear(width, width),
                         nn.LeakyReLU(0.01), nn.Linear(width, 1))


def time_plain(width: int, members: int, steps: int) -> float:
    x, y = _data(steps)
    models = [_model(width) for _ in range(members)]
    start = time.perf_counter()
    for model in models:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for s in range(steps):
            loss = ((model(x[s * BATCH:(s + 1) * BATCH]) - y[s * BATCH:(s + 1) * BATCH]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def time_vmap(width: int, members: int, steps: int) -> float:
    x, y = _data(steps)
    models = [_model(width) for _ in range(members)]
    params, buffers = stack_module_state(models)
    base = _model(width).to("meta")

    def loss(p, b, xb, yb):
        return ((functional_call(base, (p, b), (xb,)) - yb) ** 2).mean()

    step_grad = vmap(grad(loss), in_dims=(0, 0, None, None))
    opt = torch.optim.Adam(list(params.values()), lr=1e-3)
    start = time.perf_counter()
    for s in range(steps):
        grads = step_grad(params, buffers, x[s * BATCH:(s + 1) * BATCH], y[s * BATCH:(s + 1) * BATCH])
        for name, p in params.items():
            p.grad = grads[name]
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="32,128,512,1024")
    parser.add_argument("--members", default="20,100,400")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", default="probe,plain,vmap", help="which of probe, plain, vmap to time")
    args = parser.parse_args()
    methods = {"probe": time_probe, "plain": time_plain, "vmap": time_vmap}
    chosen = [m for m in args.methods.split(",") if m in methods]
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); 8-W-W-1 leaky, Adam, batch {BATCH}, "
          f"{args.steps} steps, best of {args.repeat}")
    for name in chosen:  # warm-up: imports (torch.optim's torch._dynamo), kernels
        methods[name](8, 2, 2)
    print(f"{'width':>6} {'members':>8} " + " ".join(f"{n + ' s':>9}" for n in chosen)
          + ("  plain/probe" if {"probe", "plain"} <= set(chosen) else "")
          + ("  vmap/probe" if {"probe", "vmap"} <= set(chosen) else ""))
    for width in (int(w) for w in args.widths.split(",")):
        for members in (int(m) for m in args.members.split(",")):
            best = {name: float("inf") for name in chosen}
            for _ in range(args.repeat):  # interleaved: a slow moment on the machine favours none
                for name in chosen:
                    best[name] = min(best[name], methods[name](width, members, args.steps))
            line = f"{width:>6} {members:>8} " + " ".join(f"{best[n]:>9.3f}" for n in chosen)
            if "probe" in best and "plain" in best:
                line += f"  {best['plain'] / best['probe']:>11.2f}"
            if "probe" in best and "vmap" in best:
                line += f"  {best['vmap'] / best['probe']:>10.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
