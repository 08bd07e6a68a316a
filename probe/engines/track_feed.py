"""What the hooks of ``probe.track`` do on a recorded step: feed analyze's own accumulators.

Each recorded step gets a fresh :class:`probe.diagnostics.Collector` with one
member, the one ``probe analyze`` uses, so a record holds exactly analyze's
quantities on that step's batch, by construction:

* forward, per hidden layer: the layer input ``x`` and pre-activation ``z`` go
  to :meth:`Collector.forward` at once (an in-place activation overwrites ``z``
  next); ``x`` stays guarded by its version counter (a frozen layer's ``x`` is
  copied, since autograd keeps no copy of it);
* backward: a tensor hook on ``z`` hands ``g = dL/dz`` from the user's own
  backward pass to :meth:`Collector.backward`;
* the weight-gradient split needs the layer's full weight gradient ``x^T g``.
  ``weight.grad`` will not do in a user's loop (it also holds any other term of
  the loss on that weight, and what earlier backward passes left), so it is read
  from the backward node of this very use of the weight, which computes it
  anyway (:func:`weight_grad_node`), or computed from ``x`` and ``g`` when there
  is no such node; the Collector then skips its own product for ``G_pos``
  (``pos_from_total``).

The final layer's weight and bias are copied when the step's first forward pass
reaches the tracker: the optimizer changes them before the record is built.
"""

from __future__ import annotations

import torch
from torch import nn

from probe.diagnostics import Collector, NetworkDiagnostics

# backward nodes of F.linear, and which of their inputs receives the gradient of W^T ([fan_in, units])
_MATMUL_NODES = {"AddmmBackward0": 2, "MmBackward0": 1}
_VIEW_NODES = ("ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0")


def weight_grad_node(z: torch.Tensor, weight: torch.Tensor) -> tuple[object, int] | None:
    """The backward node of ``z = x W^T + b`` that computes ``x^T g``, and which of its inputs that is.

    Only a node whose input leads straight (through the transpose) to ``weight``'s
    own gradient accumulator qualifies: what it computes is then this use's weight
    gradient and nothing else. None otherwise (a frozen weight, autocast's casts,
    another decomposition): the caller computes ``x^T g`` itself.
    """
    node = z.grad_fn
    while node is not None and node.name() in _VIEW_NODES:
        node = node.next_functions[0][0]
    if node is None or node.name() not in _MATMUL_NODES:
        return None
    index = _MATMUL_NODES[node.name()]
    nxt = node.next_functions[index][0] if len(node.next_functions) > index else None
    if nxt is None or nxt.name() != "TBackward0":
        return None
    if getattr(nxt.next_functions[0][0], "variable", None) is not weight:
        return None
    return node, index


def _rows(t: torch.Tensor, width: int) -> torch.Tensor:
    """``t`` detached as ``[1, rows, width]`` (one member), half precision widened to float32."""
    t = t.detach().reshape(1, -1, width)
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


class StepFeed:
    """The hooks' side of one recorded step: a Collector, and ``x^T g`` per hidden layer.

    Args:
        hidden: The user's hidden Linear layers, in forward order.
        final: The user's output Linear layer.
        near_dead_threshold, dormant_tau: As in ``probe analyze``.
    """

    def __init__(self, hidden: list[nn.Linear], final: nn.Linear, near_dead_threshold: float,
                 dormant_tau: float) -> None:
        self.hidden, self.final = hidden, final
        self.options = dict(near_dead_threshold=near_dead_threshold, dormant_tau=dormant_tau)
        self.collector: Collector | None = None
        self.samples = 0
        self.forwards = [0] * len(hidden)
        self.backwards = [0] * len(hidden)
        self.totals: list[torch.Tensor | None] = [None] * len(hidden)

    def _start(self) -> Collector:
        """The step's Collector, with the output layer's weights as they are now (before ``opt.step()``)."""
        weight = self.final.weight.detach().clone()
        bias = None if self.final.bias is None else self.final.bias.detach().clone()[None]
        if not weight.is_floating_point() or weight.dtype in (torch.float16, torch.bfloat16):
            weight, bias = weight.float(), None if bias is None else bias.float()
        self.collector = Collector(len(self.hidden), weight[None], bias, pos_from_total=True, **self.options)
        return self.collector

    def forward(self, layer: int, x: torch.Tensor, z: torch.Tensor, slope: torch.Tensor) -> None:
        """Feed one batch's ``x`` and ``z`` now; hook ``z`` for ``g`` (``z`` requires grad)."""
        collector = self.collector or self._start()
        module = self.hidden[layer]
        x3, z3 = _rows(x, module.in_features), _rows(z, module.out_features)
        if not module.weight.requires_grad:
            x3 = x3.clone()  # autograd keeps no copy then, so a later in-place change would be legal
        pending = collector.forward(layer, x3, z3, slope.to(z3))
        self.forwards[layer] += 1
        if layer == 0:
            self.samples += z3.shape[1]
        node = weight_grad_node(z, module.weight)
        z.register_hook(lambda g: self._backward(layer, pending, g, x3 if node is None else None))
        if node is not None:
            target, index = node
            target.register_hook(lambda grad_inputs, _: self._total(layer, grad_inputs[index]))

    def _backward(self, layer: int, pending, g: torch.Tensor, x: torch.Tensor | None) -> None:
        g3 = _rows(g, self.hidden[layer].out_features)
        self.collector.backward(pending, g3)
        self.backwards[layer] += 1
        if x is not None:  # autograd's x^T g cannot be read: compute it
            self._total(layer, x[0].to(g3.dtype).T @ g3[0])

    def _total(self, layer: int, total: torch.Tensor | None) -> None:
        """Sum this batch's ``x^T g`` (copied: kept, autograd's tensor could not become ``.grad`` as is)."""
        if total is None:
            return
        total = total.detach()
        self.totals[layer] = total.clone() if self.totals[layer] is None else self.totals[layer] + total

    def result(self) -> tuple[NetworkDiagnostics, list[torch.Tensor], bool]:
        """The step's diagnostics, each layer's per-unit count of samples with ``z > 0``, and whether
        every layer had its backward pass (without one, the gradient diagnostics are left out)."""
        collector = self.collector
        complete = all(self.backwards) and all(t is not None for t in self.totals)
        if complete:
            collector.set_weight_grads([t[None].to(s.g_neg.dtype) for t, s in zip(self.totals, collector.gradients)])
        else:
            collector.gradients = None
        return collector.result(0), [a.active[0] for a in collector.activity], complete
