"""What the hooks of ``probe.track`` compute on a recorded step (the device side).

:mod:`probe.engines.track` hooks the Linear layers the user trains; per batch of
a recorded step, these classes gather the sums that the definitions of
:mod:`probe.diagnostics` need, and :mod:`probe.engines.track_record` turns them
into analyze's result objects:

* forward, per hidden layer with pre-activation ``z`` and negative slope ``a``:
  per unit, the number of samples with ``z <= 0``, the sum of ``relu(z)`` and
  the sum of ``|a| * max(-z, 0)`` (the negative side's ``|h|``). From these come
  ``dead_units``, ``near_dead_units``, ``dormant_units``, the active fractions
  and ``act_*``, as in :class:`probe.diagnostics.ActivityStats`;
* backward, from ``g = dL/dz``: the sums of ``|g|`` over all entries and over
  those with ``z <= 0`` (``grad_ratio``), the weight-gradient split
  ``G_neg = x^T (g * [z <= 0])``, ``G_pos = G_total - G_neg`` and the bias
  gradient ``b = sum g`` with its part ``b_neg`` where ``z <= 0``
  (``neg_grad_share``, ``neg_grad_fraction``, as in
  :class:`probe.diagnostics.GradientStats`). ``G_total = x^T g`` is what
  autograd computes for this use of the layer's weight, read from its backward
  node (not ``weight.grad``, which also holds any other term of the user's loss
  on that weight), so only ``G_neg`` costs a matrix product; where ``g`` is
  exactly 0 wherever ``z <= 0`` (ReLU, whose derivative is 0 there), ``G_neg``
  and ``b_neg`` are exactly 0 and cost nothing;
* the final Linear's sign routes, from its input ``h``, weight ``W`` and bias
  ``b`` as in :class:`probe.diagnostics.SignRoutes`.

This is the accumulators' arithmetic specialised to the few batches of one
step, in as few tensor operations as it takes: fed through a
:class:`probe.diagnostics.Collector` and converted by its ``result()``, a
recorded step of the benchmark's 4 x 256 MLP cost about three times this way's
(``benchmarks/track_overhead.py``). The definitions stay analyze's:
``tests/test_track.py`` compares every record with ``probe.diagnose`` on the
same batch, key for key, and with plain autograd, so a change to
:mod:`probe.diagnostics` that is not mirrored here fails the tests.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from probe.diagnostics.sign import negative_prediction

# backward nodes of F.linear, and which of their inputs receives the gradient of W^T ([fan_in, units])
_MATMUL_NODES = {"AddmmBackward0": 2, "MmBackward0": 1}
_VIEW_NODES = ("ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0")


def _work_view(t: torch.Tensor, width: int) -> torch.Tensor:
    """``t`` detached as ``[rows, width]``, in float32 or float64 (half precision is widened)."""
    t = t.detach()
    if t.dim() != 2:
        t = t.reshape(-1, width)
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def weight_grad_node(z: torch.Tensor, weight: torch.Tensor) -> tuple[object, int] | None:
    """The backward node of ``z = x W^T + b`` that computes ``x^T g``, and which of its inputs that is.

    Only a node whose input leads straight (through the transpose) to ``weight``'s
    own gradient accumulator qualifies: what it computes is then this use's weight
    gradient and nothing else. None otherwise (a frozen weight, autocast's casts,
    another decomposition): the caller computes ``G_pos`` itself.
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


class Scratch:
    """Work tensors kept from one recorded step to the next, one set per layer.

    Recording must not allocate a fresh batch-sized tensor per step: on the CPU,
    the allocator hands such sizes back to the system, and touching new pages
    costs more than the arithmetic. Memory per hidden layer: a slab of 3 or 4
    ``[samples, units]`` planes per batch of a step and two ``[fan_in, units]``
    gradient sums; constant over a run.
    """

    def __init__(self) -> None:
        self._pool: dict[object, torch.Tensor] = {}

    def get(self, key: object, shape: tuple[int, ...], like: torch.Tensor,
            init: Callable[[torch.Tensor], object] | None = None) -> torch.Tensor:
        """The tensor kept under ``key``, new (and passed to ``init``) when shape, dtype or device change."""
        buf = self._pool.get(key)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._pool[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
            if init is not None:
                init(buf)
        return buf


def _ones_first(buf: torch.Tensor) -> None:
    buf.select(-1 if buf.dim() == 2 else 0, 0).fill_(1)


class LayerStep:
    """One hidden layer's sums over the batches of one recorded step.

    Each batch gets a slab of planes ``[ones, [z <= 0], relu(z), (z)]`` (``z`` only
    for a nonzero slope): one reduction over the samples gives every per-unit sum,
    and one matrix-vector product gives both gradient sums.

    Args:
        units, fan_in: The layer's widths.
        scratch: The layer's reusable work tensors.
        split: Also split the weight gradient (``neg_grad_share``).
    """

    def __init__(self, units: int, fan_in: int, scratch: Scratch, split: bool = True) -> None:
        self.units, self.fan_in, self.scratch = units, fan_in, scratch
        self.samples = 0
        self.batches = 0
        self.forward_sums: torch.Tensor | None = None  # [2 or 3, units]: n(z<=0), sum relu(z), sum -min(z, 0)
        self.slope: float | torch.Tensor | None = None
        self.grad_parts: list[tuple[torch.Tensor, torch.Tensor]] = []  # per backward: [sum|g|, at z<=0], n(z<=0)
        self.grad_entries = 0
        self.g_neg: torch.Tensor | None = None  # x^T (g * [z<=0]) summed over batches; None while exactly 0
        self.g_total: torch.Tensor | None = None  # x^T g summed over batches
        self.b_all: torch.Tensor | None = None  # sum of g per unit (the bias gradient)
        self.b_neg: torch.Tensor | None = None  # sum of g * [z<=0] per unit; None while exactly 0
        self.split = split  # turned off when the split cannot be trusted for this step

    def forward(self, module: nn.Linear, x: torch.Tensor, z: torch.Tensor,
                slope: float | torch.Tensor | None) -> None:
        """Read one batch's ``x`` and ``z`` now; hook ``z`` for ``g`` when it has a gradient.

        ``slope`` is the activation's negative slope: a number, a PReLU's learned
        slopes as they are now, or None for a ReLU (slope 0: the negative side's
        ``|h|`` is 0 and is not computed).
        """
        z2 = _work_view(z, self.units)
        slab = self.scratch.get(("slab", self.batches), (3 if slope is None else 4, *z2.shape), z2, _ones_first)
        torch.le(z2, 0, out=slab[1])
        torch.clamp(z2, min=0, out=slab[2])
        if slope is not None:
            slab[3].copy_(z2)
        sums = slab[1:].sum(1)  # n(z<=0), sum relu(z)[, sum z]
        if slope is not None:  # sum -min(z, 0) = sum relu(z) - sum z; |h| there is |a| times it
            sums[2].sub_(sums[1]).neg_().clamp_(min=0)
        self.forward_sums = sums if self.forward_sums is None else self.forward_sums + sums
        self.slope = slope
        self.samples += z2.shape[0]
        self.batches += 1
        if not z.requires_grad:
            return
        x2, version, node = None, 0, None
        if self.split:
            x2 = x.detach().reshape(-1, self.fan_in)
            if not module.weight.requires_grad:
                x2 = x2.clone()  # autograd keeps no copy then, so a later in-place change would be legal
            version = x2._version
            node = weight_grad_node(z, module.weight)
        z.register_hook(lambda g: self._backward(g, slab, sums[0], x2, version, node is None))
        if node is not None:
            target, index = node
            target.register_hook(lambda grad_inputs, _: self._total(grad_inputs[index]))

    def _backward(self, g: torch.Tensor, slab: torch.Tensor, n_neg: torch.Tensor, x: torch.Tensor | None,
                  version: int, total_here: bool) -> None:
        g2 = g.detach().reshape(-1, self.units).to(slab.dtype)
        work = torch.abs(g2, out=slab[2])  # relu(z) is summed already
        both = torch.mv(slab[:2].reshape(2, -1), work.reshape(-1))  # sum |g|, sum |g| where z <= 0
        self.grad_parts.append((both, n_neg))
        self.grad_entries += g2.numel()
        if not self.split or x is None:
            return
        if x._version != version:  # changed in place since the forward: no split rather than a wrong one
            self.split = False
            return
        xt = x.to(g2.dtype).T
        b_all = g2.sum(0)
        self.b_all = b_all if self.b_all is None else self.b_all + b_all
        if both[1].item() != 0:  # otherwise g is exactly 0 wherever z <= 0, and so are G_neg and b_neg
            masked = torch.mul(g2, slab[1], out=work)
            b_neg = masked.sum(0)
            self.b_neg = b_neg if self.b_neg is None else self.b_neg + b_neg
            if self.g_neg is None:
                self.g_neg = torch.mm(xt, masked, out=self.scratch.get("g_neg", (self.fan_in, self.units), g2))
            else:
                self.g_neg.addmm_(xt, masked)
        if total_here:  # autograd's x^T g could not be read: compute it
            if self.g_total is None:
                self.g_total = torch.mm(xt, g2, out=self.scratch.get("g_total", (self.fan_in, self.units), g2))
            else:
                self.g_total.addmm_(xt, g2)

    def _total(self, total: torch.Tensor | None) -> None:
        """This batch's ``x^T g`` (autograd's, read from the backward node, or computed), summed in scratch.

        Autograd's tensor is copied, not kept: kept, it could not become the weight's
        ``.grad`` without a copy, and the allocator would churn.
        """
        if not self.split:
            return
        if total is None or tuple(total.shape) != (self.fan_in, self.units):
            self.split = False
            return
        if self.g_total is None:
            self.g_total = self.scratch.get("g_total", (self.fan_in, self.units), total).copy_(total)
        else:
            self.g_total.add_(total)

    def tensors(self) -> list[torch.Tensor]:
        """What the record needs from the device.

        Forward sums ``[2 or 3, units]``; with a backward pass, ``[sum |g|, sum |g|
        at z<=0]`` and the per-unit counts of ``z <= 0`` over the batches that had
        one; with the weight-gradient split, ``[||G_pos||]`` when ``G_neg`` is
        exactly 0, else ``[||G_neg||, ||G_pos||, <G_neg, G_pos>]``, then the bias
        gradient ``sum g`` per unit (and ``sum g * [z<=0]`` when not exactly 0).
        """
        out = [self.forward_sums]
        if self.grad_parts:
            if len(self.grad_parts) == 1:
                out.extend(self.grad_parts[0])
            else:
                out.extend(torch.stack(part).sum(0) for part in zip(*self.grad_parts))
            if self.split and self.g_total is not None and self.b_all is not None:
                norm = torch.linalg.vector_norm
                if self.g_neg is None:
                    out.extend([norm(self.g_total).reshape(1), self.b_all])
                else:
                    g_pos = torch.sub(self.g_total, self.g_neg, out=self.scratch.get("g_pos", self.g_neg.shape,
                                                                                        self.g_neg))
                    out.extend([torch.stack([norm(self.g_neg), norm(g_pos), (self.g_neg * g_pos).sum()]),
                                self.b_all, self.b_neg])
        return out


class SignStep:
    """The final Linear's sign routes over the batches of one recorded step.

    Per batch, from the layer's input ``h`` (``[samples, units]``) and its weight
    ``W`` and bias ``b`` as they were at that forward pass: with ``A = [1, P]``
    (a column of ones, then ``P[i, k] = 1`` where sample ``i``'s prediction of
    output ``k`` is negative), ``A^T max(h, 0)``, ``A^T h`` and ``A^T |h W^T|``:
    the per-unit sums over all samples and over each output's negative
    predictions in three products, and the counts ``sum_i A``.
    """

    def __init__(self, scratch: Scratch) -> None:
        self.scratch = scratch
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.sums: torch.Tensor | None = None
        self.samples = 0

    def forward(self, module: nn.Linear, h: torch.Tensor) -> None:
        if self.weight is None:  # a snapshot: the optimizer changes the weight before the record is built
            self.weight = module.weight.detach().clone()
            self.bias = (torch.zeros(self.weight.shape[0], dtype=self.weight.dtype, device=self.weight.device)
                         if module.bias is None else module.bias.detach().clone())
        k, units = self.weight.shape
        h2 = _work_view(h, units)
        net = h2 @ self.weight.to(h2.dtype).T  # [samples, outputs]: the output minus the bias
        a = self.scratch.get("sign_a", (h2.shape[0], k + 1), h2, _ones_first)  # ones, then P
        a[:, 1:].copy_(negative_prediction(net.double() + self.bias.double()))
        hp = torch.clamp(h2, min=0, out=self.scratch.get("sign_hp", h2.shape, h2))
        at = a.T
        sums = torch.cat([(at @ hp).reshape(-1), (at @ h2).reshape(-1), (at @ net.abs()).reshape(-1), a.sum(0)])
        self.sums = sums if self.sums is None else self.sums + sums
        self.samples += h2.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        return [] if self.sums is None else [self.sums, self.weight, self.bias]
