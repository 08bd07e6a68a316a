"""How cheaply can any tracker read each batch of a training loop? Three arrangements of the same least work.

The least a dead-unit record needs, per hidden layer and step: the count of
``z <= 0`` and the sum of ``relu(z)`` per unit, ``sum |g|`` for ``g = dL/dz``,
and the norm of autograd's ``x^T g`` (for the weight-gradient keys). The loop
is ``benchmarks/track_overhead.py``'s (4 x 256 MLP, batch 256, Adam, ReLU),
every step recorded, and that least work is done

* **inline**: in the hooks, as each batch's ``z`` and ``g`` appear (how
  ``probe.track`` works);
* **at step**: the hooks only keep references; after the backward pass, every
  layer's tensors are stacked and reduced at once (a quarter of the operations,
  more bytes moved);
* **worker thread**: the hooks hand the tensors to a thread that reduces them
  while the loop goes on, joined before the optimizer step.

Each is timed against the bare loop in the same round, interleaved, in one
process; the paired ratio is the median over rounds of its time over the bare
loop's. None of these builds a record: they bound from below what a tracker
that reads each batch costs here.

Usage::

    python benchmarks/track_floor.py [--steps 100] [--repeat 15]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import threading
import time

import torch
from torch import nn

from probe.engines.track_graph import weight_grad_node
from track_overhead import batches, mlp


def _run(model: nn.Sequential, data: list, kind: str) -> float:
    hidden = [m for m in model if isinstance(m, nn.Linear)][:-1]
    n, (rows, width) = len(hidden), (data[0][0].shape[0], hidden[0].out_features)
    slabs = [torch.empty(2, rows, width) for _ in hidden]
    grads = [torch.empty(rows, width) for _ in hidden]
    kept: dict[str, list] = {"z": [None] * n, "g": [None] * n, "total": [None] * n}
    stack, gstack = torch.empty(2, n, rows, width), torch.empty(n, rows, width)
    work: queue.SimpleQueue = queue.SimpleQueue()

    def forward_work(i: int, z: torch.Tensor) -> None:
        torch.le(z, 0, out=slabs[i][0])
        torch.clamp(z, min=0, out=slabs[i][1])
        slabs[i].sum(1)

    def backward_work(i: int, g: torch.Tensor, total: torch.Tensor) -> None:
        torch.abs(g, out=grads[i]).sum()
        torch.linalg.vector_norm(total)

    def worker() -> None:
        while (item := work.get()) is not None:
            item[0](*item[1:])

    def hooks(i: int):
        def backward(grad_inputs: tuple, grad_outputs: tuple) -> None:
            if kind == "inline":
                backward_work(i, grad_outputs[0], grad_inputs[2])
            elif kind == "thread":
                work.put((backward_work, i, grad_outputs[0], grad_inputs[2]))
            else:
                kept["g"][i], kept["total"][i] = grad_outputs[0], grad_inputs[2]

        def forward(module: nn.Module, inputs: tuple, z: torch.Tensor) -> None:
            if kind == "inline":
                forward_work(i, z.detach())
            elif kind == "thread":
                work.put((forward_work, i, z.detach()))
            else:
                kept["z"][i] = z.detach()
            weight_grad_node(z, module.weight, module.bias)[0].register_hook(backward)
        return forward

    thread = threading.Thread(target=worker, daemon=True) if kind == "thread" else None
    if thread is not None:
        thread.start()
    handles = [lin.register_forward_hook(hooks(i)) for i, lin in enumerate(hidden)] if kind != "bare" else []
    opt, loss_fn = torch.optim.Adam(model.parameters(), lr=1e-3), nn.MSELoss()
    start = time.perf_counter()
    for x, y in data:
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        if kind == "at step":
            torch.stack(kept["z"], out=stack[1])
            torch.le(stack[1], 0, out=stack[0])
            stack[1].clamp_(min=0)
            stack.sum(2)
            torch.stack(kept["g"], out=gstack).abs_().sum((1, 2))
            torch._foreach_norm(kept["total"])
        elif thread is not None:
            done = threading.Event()
            work.put((done.set,))
            done.wait()
        opt.step()
    elapsed = time.perf_counter() - start
    for handle in handles:
        handle.remove()
    if thread is not None:
        work.put(None)
        thread.join()
    return elapsed / len(data) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    data = batches(args.steps)
    kinds = ["bare", "inline", "at step", "thread"]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.repeat):
        for kind in kinds:
            times[kind].append(_run(mlp(256, "relu"), data, kind))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 4 x 256 MLP, batch 256, Adam, ReLU; "
          f"{args.steps} steps, {args.repeat} rounds")
    print(f"{'least work done':24s} {'ms/step':>8s} {'paired':>8s}")
    for kind in kinds:
        paired = statistics.median(t / b for t, b in zip(times[kind], times["bare"]))
        print(f"{kind:24s} {statistics.median(times[kind]):8.3f} {paired:7.3f}x")


if __name__ == "__main__":
    main()
