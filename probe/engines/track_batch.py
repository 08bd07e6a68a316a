"""What the hooks of ``probe.track`` compute on a recorded step (the device side).

:mod:`probe.engines.track` hooks the Linear layers the user trains; per batch of
a recorded step, these classes gather the sums that the definitions of
:mod:`probe.diagnostics` need, and :mod:`probe.engines.track_record` turns them
into analyze's keys. The sums of one layer land in one flat tensor, its *ledger*:

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
  on that weight, and which a weight hook or clipping may have scaled), so only
  ``G_neg`` costs a matrix product; where ``g`` is exactly 0 wherever ``z <= 0``
  (ReLU, whose derivative is 0 there), ``G_neg`` and ``b_neg`` are exactly 0 and
  cost nothing. With one batch in the step, the norms are taken the moment
  autograd's ``x^T g`` exists, without a copy; in a loop that accumulates
  gradients over several batches, the batches' tensors are summed in scratch
  (see :meth:`LayerStep._add_total`). A backward pass that gives ``z`` a
  gradient but computes no ``x^T g`` leaves the step's split out;
* the final Linear's sign routes: :class:`probe.engines.track_sign.SignStep`.

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

import functools
from collections.abc import Callable

import torch
from torch import nn


# backward nodes of F.linear, and which of their inputs receives the gradient of W^T ([fan_in, units])
_MATMUL_NODES = {"AddmmBackward0": 2, "MmBackward0": 1}
_VIEW_NODES = ("ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0")


def work_view(t: torch.Tensor, width: int) -> torch.Tensor:
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


# One hidden layer's sums in one flat tensor (``LayerStep.ledger``), part by part: (name, entries
# per unit, fixed entries). forward: [3, units] (n(z<=0), sum relu(z), sum z; the last row only
# for a nonzero slope); grad: sum |g|, sum |g| at z<=0; split: ||G_neg||, ||G_pos||,
# <G_neg, G_pos> (only ||G_pos|| is written while G_neg is exactly 0); b_all: sum g per unit
# (the bias gradient); b_neg: sum g * [z<=0] per unit (written once not exactly 0).
LEDGER = (("forward", 3, 0), ("grad", 0, 2), ("split", 0, 3), ("b_all", 1, 0), ("b_neg", 1, 0))


@functools.lru_cache(maxsize=64)
def ledger_layout(units: int) -> tuple[dict[str, slice], int]:
    """Each part's slice of the ledger of a layer this wide, and the ledger's size."""
    parts, at = {}, 0
    for name, per_unit, fixed in LEDGER:
        size = per_unit * units + fixed
        parts[name] = slice(at, at + size)
        at += size
    return parts, at


class Scratch:
    """Work tensors kept from one recorded step to the next, one set per layer.

    Recording must not allocate a fresh batch-sized tensor per step: on the CPU,
    the allocator hands such sizes back to the system, and touching new pages
    costs more than the arithmetic. Memory per hidden layer: a slab of 2 or 3
    ``[samples, units]`` planes per batch of a step, the ledger (``5 * units + 5``
    numbers) and, for a nonzero slope or several batches, up to three
    ``[fan_in, units]`` gradient sums; constant over a run.
    """

    def __init__(self) -> None:
        self._pool: dict[object, torch.Tensor] = {}
        self.several_batches = False  # a recorded step of this run summed x^T g over several batches

    def get(self, key: object, shape: tuple[int, ...], like: torch.Tensor,
            init: Callable[[torch.Tensor], object] | None = None) -> torch.Tensor:
        """The tensor kept under ``key``, new (and passed to ``init``) when shape, dtype or device change."""
        buf = self._pool.get(key)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._pool[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
            if init is not None:
                init(buf)
        return buf


class LayerStep:
    """One hidden layer's sums over the batches of one recorded step, written into one ledger.

    Each batch gets a slab of planes ``[[z <= 0], relu(z), (z)]`` (``z`` only for a
    nonzero slope): one reduction over the samples gives every per-unit sum. In
    the backward, ``|g|`` overwrites ``relu(z)`` (summed already), and its sum and
    its dot product with ``[z <= 0]`` give both gradient sums. The sums land in one
    flat ``ledger`` tensor per layer (:data:`LEDGER`), so that the record moves a
    handful of tensors to the host, not dozens.

    Args:
        units, fan_in: The layer's widths.
        scratch: The layer's reusable work tensors.
        split: Also split the weight gradient (``neg_grad_share``).
    """

    def __init__(self, units: int, fan_in: int, scratch: Scratch, split: bool = True) -> None:
        self.units, self.fan_in, self.scratch = units, fan_in, scratch
        self.samples = 0
        self.batches = 0
        self.ledger: torch.Tensor | None = None  # laid out as LEDGER says
        self.parts, self._size = ledger_layout(units)
        self.rows = 2  # forward rows in the ledger: n(z<=0), sum relu(z)[, sum z]
        self.slope: float | torch.Tensor | None = None
        self.grad_slabs: list[torch.Tensor] = []  # per backward pass, its batch's slab (plane 0: [z <= 0])
        self.grad_entries = 0
        self.g_neg: torch.Tensor | None = None  # x^T (g * [z<=0]) summed over batches; None while exactly 0
        self.g_total: torch.Tensor | None = None  # x^T g summed over batches, in scratch
        self._total_ref: tuple | None = None  # the first batch's x^T g (autograd's), its version and norm
        self.has_b_neg = False  # sum g * [z<=0] is in the ledger (else exactly 0)
        self.split = split  # turned off when the split cannot be trusted for this step
        self._split_batches = 0  # backward passes that fed b_all and G_neg
        self._totals = 0  # x^T g tensors received; the split needs one per such backward pass
        self._closed = False  # the record is built: hooks of this step that fire later do nothing

    def _view(self, part: str) -> torch.Tensor:
        return self.ledger[self.parts[part]]

    def forward(self, module: nn.Linear, x: torch.Tensor, z: torch.Tensor,
                slope: float | torch.Tensor | None) -> None:
        """Read one batch's ``x`` and ``z`` now; hook ``z`` for ``g`` when it has a gradient.

        ``slope`` is the activation's negative slope: a number, a PReLU's learned
        slopes as they are now, or None for a ReLU (slope 0: the negative side's
        ``|h|`` is 0 and is not computed).
        """
        z2 = work_view(z, self.units)
        rows = 2 if slope is None else 3
        slab = self.scratch.get(("slab", self.batches), (rows, *z2.shape), z2)
        torch.le(z2, 0, out=slab[0])
        torch.clamp(z2, min=0, out=slab[1])
        if slope is not None:
            slab[2].copy_(z2)
        if self.ledger is None:
            self.ledger = self.scratch.get("ledger", (self._size,), z2, torch.Tensor.zero_)
            self.rows = rows  # the activation decides, the same for every batch
            torch.sum(slab, 1, out=self._view("forward")[:rows * self.units].view(rows, self.units))
        else:
            self._view("forward")[:rows * self.units].view(rows, self.units).add_(
                slab.sum(1).to(self.ledger.dtype))
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
        z.register_hook(lambda g: self._backward(g, slab, x2, version, node is None))
        if node is not None:
            target, index = node
            target.register_hook(lambda grad_inputs, _: self._total(grad_inputs[index]))

    def _backward(self, g: torch.Tensor, slab: torch.Tensor, x: torch.Tensor | None, version: int,
                  total_here: bool) -> None:
        if self._closed:  # a graph of this step, kept and backpropagated after its record: not this step's
            return
        g2 = g.detach().reshape(-1, self.units).to(slab.dtype)
        work = torch.abs(g2, out=slab[1])  # relu(z) is summed already
        first = not self.grad_slabs
        sums = self._view("grad")[:2]
        both = sums if first else work.new_empty(2)
        torch.sum(work.reshape(-1), 0, out=both[0])  # sum |g|
        torch.dot(slab[0].reshape(-1), work.reshape(-1), out=both[1])  # sum |g| where z <= 0
        if not first:
            sums.add_(both.to(sums.dtype))
        self.grad_slabs.append(slab)
        self.grad_entries += g2.numel()
        if not self.split or x is None:
            return
        if x._version != version:  # changed in place since the forward: no split rather than a wrong one
            self.split = False
            return
        xt = x.to(g2.dtype).T
        self._split_batches += 1
        if self._split_batches == 1:
            torch.sum(g2, 0, out=self._view("b_all"))
        else:
            self._view("b_all").add_(g2.sum(0).to(self.ledger.dtype))
        if both[1].item() != 0:  # otherwise g is exactly 0 wherever z <= 0, and so are G_neg and b_neg
            masked = torch.mul(g2, slab[0], out=work)
            if not self.has_b_neg:
                torch.sum(masked, 0, out=self._view("b_neg"))
                self.has_b_neg = True
            else:
                self._view("b_neg").add_(masked.sum(0).to(self.ledger.dtype))
            if self.g_neg is None:
                self.g_neg = torch.mm(xt, masked, out=self.scratch.get("g_neg", (self.fan_in, self.units), g2))
            else:
                self.g_neg.addmm_(xt, masked)
        if total_here:  # autograd's x^T g could not be read: compute it
            self._add_total(torch.mm(xt, g2))

    def _total(self, total: torch.Tensor | None) -> None:
        """This batch's ``x^T g``, read from autograd's backward node."""
        if self._closed or not self.split:
            return
        if total is None or tuple(total.shape) != (self.fan_in, self.units):
            self.split = False
            return
        self._add_total(total.detach())  # detached: under create_graph it requires grad

    def _add_total(self, total: torch.Tensor) -> None:
        """Sum ``x^T g`` over the step's batches, or take the norms of a lone batch's at once.

        A loop that accumulates gradients does so on every step: once a recorded
        step of the run has summed several batches, every batch is summed in
        scratch as it comes, and :meth:`finish` takes the norms of the sum (exact, whatever
        happens to ``.grad`` in between). Otherwise the first batch's norms are
        taken now, while ``total`` is in cache (this batch's ``G_neg`` is
        complete: ``z``'s hook ran before the node that computed ``total``), which
        settles the usual one-batch step without a copy. The tensor is kept in
        case a second batch comes after all; it is autograd's, and often becomes
        the weight's ``.grad`` itself, which hooks, clipping or zeroing may change
        in place meanwhile. So that second batch first checks it against its
        version and its norm, taken now: changed, the step gets no split rather
        than a wrong one (a ``.data`` write that keeps the norm, such as a sign
        flip, would pass: on the first accumulating step of a run only).
        """
        self._totals += 1
        if self.g_total is None and self._total_ref is None:
            if self.scratch.several_batches:  # the run accumulates: sum in scratch from the first batch
                self.g_total = self.scratch.get("g_total", (self.fan_in, self.units), self.ledger).copy_(total)
                return
            self._write_split(total)
            check = (None if self.g_neg is None  # ||x^T g|| is in the ledger (||G_pos||) until finish()
                     else torch.linalg.vector_norm(total, dtype=self.ledger.dtype))
            self._total_ref = (total, total._version, check)
            return
        if self.g_total is None:
            first = self._take_total()
            if first is None:
                return
            self.g_total = self.scratch.get("g_total", (self.fan_in, self.units), self.ledger).copy_(first)
        self.g_total.add_(total)

    def _write_split(self, total: torch.Tensor) -> None:
        """``[||G_neg||, ||G_pos||, <G_neg, G_pos>]`` into the ledger, ``G_pos = total - G_neg``."""
        norms = self._view("split")
        norm = torch.linalg.vector_norm
        if self.g_neg is None:  # G_neg is exactly 0: ||G_neg|| and <G_neg, G_pos> are 0 (the host knows)
            norm(total, dtype=norms.dtype, out=norms[1])
        else:
            g_pos = torch.sub(total.to(self.g_neg.dtype), self.g_neg,
                              out=self.scratch.get("g_pos", self.g_neg.shape, self.g_neg))
            norm(self.g_neg, out=norms[0])
            norm(g_pos, out=norms[1])
            torch.dot(self.g_neg.reshape(-1), g_pos.reshape(-1), out=norms[2])

    def _take_total(self) -> torch.Tensor | None:
        """The first batch's kept ``x^T g`` if it is unchanged since its norms were taken, else None (no split)."""
        ref, self._total_ref = self._total_ref, None
        if ref is None:
            return None
        tensor, version, check = ref
        if check is None:
            check = self._view("split")[1]
        if tensor._version != version or not bool(torch.linalg.vector_norm(tensor, dtype=check.dtype) == check):
            self.split = False  # changed in place (a hook, clipping, zeroing, ...) before this batch came
            return None
        return tensor

    def negative_entries(self, forward_counts: float) -> float:
        """Entries with ``z <= 0`` over the batches that had a backward pass.

        ``forward_counts``: the forward count, used for the usual step of one batch
        with one backward pass; otherwise each backward's batch is counted again.
        """
        if len(self.grad_slabs) == self.batches == 1:
            return forward_counts
        return float(sum(float(slab[0].sum()) for slab in self.grad_slabs))

    def finish(self) -> torch.Tensor | None:
        """Complete the ledger and return it (None without a forward pass).

        With one batch the weight-gradient norms are in the ledger already; with
        several, they are taken of the sums here.
        """
        self._closed = True
        if self.ledger is None:
            return None
        if self._totals != self._split_batches:  # a backward pass whose x^T g never came, or the reverse
            self.split = False
        elif self.g_total is not None:
            self._write_split(self.g_total)
        elif self._total_ref is None:  # no x^T g this step: no split
            self.split = False
        self._total_ref = None
        self.scratch.several_batches |= self._totals > 1  # for the run: a loop that accumulates, always does
        return self.ledger

    def close(self) -> None:
        """Stop this step's hooks that fire later from writing (the tracker closed before the record)."""
        self._closed = True
