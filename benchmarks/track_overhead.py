"""What does ``probe.track`` cost inside a user's own training loop?

The loop: a 4 x 256 MLP (32 inputs, one output), batch 256, Adam, mean squared
error against a fixed random teacher, ``--steps`` steps on fresh batches. Timed
in one process, the configurations interleaved run by run so that a slow
moment on the machine does not favour one of them. Each configuration is
reported as its best of ``--repeat`` runs, that best over the bare loop's best,
and the *paired* ratio: the median over the rounds of its time over the bare
loop's time in the same round, which a machine whose speed drifts during the
run moves less:

* **bare**: the loop as a user writes it, no tracker;
* **floor**: the bare loop with the hooks ``probe.track`` attaches on a recorded
  step, doing nothing, then doing only the dead-unit sums and ``sum |g|``: what
  any tracker that reads each batch through hooks costs at the least;
* **probe, every=N**: the same loop inside ``probe.track(model, every=N)``
  with ``tracker.step(loss)`` after ``opt.step()`` (records kept in memory),
  for ReLU and for leaky ReLU (whose weight-gradient split costs one matrix
  product per layer on recorded steps; ReLU's is exactly zero and free), and
  leaky ReLU with ``gradient_split=False``, and ReLU writing its records to a
  history file (one JSON line per step, as the README's loop does) rather than
  keeping them in memory.

Targets: at most 1.3x the bare loop at every=1, at most 1.03x at every=10.

When Cockpit (``pip install cockpit-for-pytorch``) is importable, it is timed
beside probe in the same loop: its "economy" configuration on every step at
widths 32 and 256, the same every 32 steps, and BackPACK's hooks alone (the
model and loss extended, ``with backpack():`` around the backward, no
quantity). Otherwise the script prints the figures quoted for Cockpit in
probe's issue on tracking.

Usage::

    python benchmarks/track_overhead.py [--steps 100] [--repeat 15] [--threads N] [--width 256] [--no-cockpit]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from probe.engines.track import track

FEATURES, BATCH, DEPTH = 32, 256, 4
SETUP: list[float] = []  # seconds to build each tracker (the model's conversion check), once per run

# Cockpit's cost as quoted in probe's issue on tracking (economy configuration against a bare loop)
COCKPIT_EARLIER = ("the figures quoted for it: economy on every step 23x the bare loop at width 32, 78x at "
                   "width 256; every 32 steps 4.6x; BackPACK's hooks alone 3.1x")


def mlp(width: int, activation: str, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    widths = [FEATURES] + [width] * DEPTH + [1]
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.01))
    return nn.Sequential(*layers)


def batches(steps: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(FEATURES, 1, generator=gen)
    out = []
    for _ in range(steps):
        x = torch.randn(BATCH, FEATURES, generator=gen)
        out.append((x, torch.sin(x @ teacher)))
    return out


def bare(model: nn.Module, data) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    start = time.perf_counter()
    for x, y in data:
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def tracked(every: int, **options) -> Callable[[nn.Module, list], float]:
    """The loop inside ``probe.track``; building the tracker (checking the model once) is timed apart."""
    def run(model: nn.Module, data) -> float:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.MSELoss()
        start = time.perf_counter()
        tracker = track(model, every=every, **options)
        SETUP.append(time.perf_counter() - start)
        start = time.perf_counter()
        with tracker:
            for x, y in data:
                loss = loss_fn(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tracker.step(loss)
        return time.perf_counter() - start
    return run


def floor(work: bool) -> Callable[[nn.Module, list], float]:
    """The bare loop with probe.track's hook mechanism and none (or the least) of its arithmetic.

    A forward hook on each hidden Linear registers a hook on the backward node
    that computes ``x^T g`` (which receives ``g`` too), as ``probe.track`` does
    on a recorded step; the hooks do nothing. With ``work``, the forward hook
    also computes the per-unit count of ``z <= 0`` and the sum of ``relu(z)``
    (the dead-unit and activity sums, into kept buffers) and the backward hook
    ``|g|`` and its sum: a lower bound for any tracker that reads the step's
    batch through hooks.
    """
    def run(model: nn.Module, data) -> float:
        from probe.engines.track_graph import weight_grad_node
        hidden = [m for m in model if isinstance(m, nn.Linear)][:-1]
        buffers: dict[object, torch.Tensor] = {}  # kept between steps, as probe.track's scratch is

        def backward(grad_inputs: tuple, grad_outputs: tuple) -> None:
            if work:
                g = grad_outputs[0]
                torch.abs(g, out=buffers[("g", g.shape)]).sum()

        def forward(module: nn.Module, inputs: tuple, z: torch.Tensor) -> None:
            if work:
                slab = buffers.setdefault(id(module), torch.empty(2, *z.shape))
                buffers.setdefault(("g", z.shape), torch.empty(z.shape))
                torch.le(z.detach(), 0, out=slab[0])
                torch.clamp(z.detach(), min=0, out=slab[1])
                slab.sum(1)
            node = weight_grad_node(z, module.weight, module.bias)
            if node is not None:
                node[0].register_hook(backward)

        handles = [lin.register_forward_hook(forward) for lin in hidden]
        try:
            return bare(model, data)
        finally:
            for handle in handles:
                handle.remove()
    return run


def cockpit_run(interval: int | None) -> Callable[[nn.Module, list], float]:
    """Cockpit's economy configuration every ``interval`` steps; None: BackPACK's hooks alone."""
    def run(model: nn.Module, data) -> float:
        from backpack import backpack, extend
        from cockpit import Cockpit
        from cockpit.utils import schedules
        from cockpit.utils.configuration import configuration

        model = extend(model)
        loss_fn = extend(nn.MSELoss())
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        cockpit = None
        if interval is not None:
            schedule = None if interval == 1 else schedules.linear(interval)
            cockpit = Cockpit(model.parameters(), quantities=configuration("economy", track_schedule=schedule))
        start = time.perf_counter()
        for step, (x, y) in enumerate(data):
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad()
            if cockpit is None:
                with backpack():
                    loss.backward()
            else:
                losses = ((out - y) ** 2).mean(dim=1).detach()
                info = {"batch_size": x.shape[0], "individual_losses": losses, "loss": loss, "optimizer": opt}
                with cockpit(step, info=info):
                    loss.backward(create_graph=cockpit.create_graph(step))
            opt.step()
        return time.perf_counter() - start
    return run


def best_of(configs: dict[str, tuple[Callable, int, str, int]], repeat: int) -> dict[str, list[float]]:
    """Seconds per step of each configuration in each of ``repeat`` rounds (every configuration once a round)."""
    rounds: dict[str, list[float]] = {name: [] for name in configs}
    data = {}
    for name, (_, _, _, steps) in configs.items():
        data.setdefault(steps, batches(steps))
    for _ in range(repeat):
        for name, (fn, width, activation, steps) in configs.items():
            rounds[name].append(fn(mlp(width, activation), data[steps]) / steps)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--width", type=int, default=256, help="hidden width of the probe runs (Cockpit: 32 and 256)")
    parser.add_argument("--no-cockpit", action="store_true")
    args = parser.parse_args()
    logging.getLogger("probe.track").setLevel(logging.ERROR)  # dead-unit alerts are not what is measured
    warnings.simplefilter("ignore")  # BackPACK's hooks warn on every step
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {DEPTH} x {args.width} MLP, "
          f"batch {BATCH}, Adam; {args.steps} steps, best of {args.repeat}")
    width = args.width
    configs = {"bare relu": (bare, width, "relu", args.steps), "bare leaky": (bare, width, "leaky", args.steps)}
    for activation in ("relu", "leaky"):
        for every in (1, 10):
            configs[f"probe {activation} every={every}"] = (tracked(every), width, activation, args.steps)
    configs["probe leaky every=1, no split"] = (tracked(1, gradient_split=False), width, "leaky", args.steps)
    history = Path(tempfile.mkdtemp(prefix="probe-bench-")) / "history.jsonl"
    configs["probe relu every=1, to a file"] = (tracked(1, path=history), width, "relu", args.steps)
    configs["floor relu: empty hooks"] = (floor(False), width, "relu", args.steps)
    configs["floor relu: + dead-unit sums"] = (floor(True), width, "relu", args.steps)
    report(best_of(configs, args.repeat), {"leaky": "bare leaky"}, "bare relu")
    print(f"building a tracker (the model checked once, as analyze does): {1e3 * min(SETUP):.1f} ms, "
          "not included above")
    if args.no_cockpit or not cockpit_installed():
        print(f"Cockpit is not installed here; {COCKPIT_EARLIER}.")
        return
    few = max(args.steps // 4, 16)
    cockpit = {  # Cockpit is slow: fewer steps and repetitions, each with its own bare baseline
        "bare relu width 32": (bare, 32, "relu", few),
        "cockpit economy width 32": (cockpit_run(1), 32, "relu", few),
        "bare relu width 256": (bare, 256, "relu", few),
        "cockpit economy width 256": (cockpit_run(1), 256, "relu", few),
        "cockpit economy every 32": (cockpit_run(32), 256, "relu", args.steps),
        "backpack hooks alone": (cockpit_run(None), 256, "relu", args.steps),
        "probe relu every=1 (again)": (tracked(1), 256, "relu", args.steps),
        "bare relu (again)": (bare, 256, "relu", args.steps),
    }
    report(best_of(cockpit, min(args.repeat, 3)), {"width 32": "bare relu width 32", "width 256": "bare relu width 256"}, "bare relu (again)")


def cockpit_installed() -> bool:
    try:
        import backpack  # noqa: F401
        import cockpit  # noqa: F401
    except ImportError:
        return False
    return True


def report(rounds: dict[str, list[float]], baselines: dict[str, str], default: str) -> None:
    """One line per configuration: best ms per step, its ratio to the best bare loop, and the paired ratio.

    The paired ratio is the median, over rounds, of the configuration's time over
    its bare loop's time in the same round: a machine whose speed drifts during
    the run moves it less than the ratio of the two bests.
    """
    print(f"{'configuration':32} {'ms/step':>9} {'x bare':>8} {'paired':>8}")
    for name, times in rounds.items():
        base = rounds[next((b for key, b in baselines.items() if key in name), default)]
        paired = statistics.median(t / b for t, b in zip(times, base))
        print(f"{name:32} {1e3 * min(times):9.3f} {min(times) / min(base):8.3f} {paired:8.3f}")


if __name__ == "__main__":
    main()
