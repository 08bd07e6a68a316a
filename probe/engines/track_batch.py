"""What the hooks of ``probe.track`` compute on a recorded step (the device side).

:mod:`probe.engines.track` hooks the Linear layers the user trains; per batch of
a recorded step, these classes gather the sums that the definitions of
:mod:`probe.diagnostics` need, and :mod:`probe.engines.track_record` turns them
into analyze's keys. The sums of one layer land in its part of the step's
flat tensor (:class:`probe.engines.track_ledger.StepLedger`):

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
  :class:`probe.diagnostics.GradientStats`). One hook on the backward node of
  ``z = x W^T + b`` receives ``g`` together with what that node computes from
  it for this use of the layer: ``G_total = x^T g`` (not ``weight.grad``, which
  also holds any other term of the user's loss on that weight, and which a
  weight hook or clipping may have scaled) and ``b``. So only ``G_neg`` costs a
  matrix product, and where ``g`` is exactly 0 wherever ``z <= 0`` (a ReLU's
  own gradient, :meth:`LayerStep.watch_relu`), ``G_neg`` and ``b_neg`` are
  exactly 0 and the negative side costs nothing. With one batch in the step,
  the norms are taken the moment autograd's ``x^T g`` exists, without a copy;
  in a loop that accumulates gradients over several batches, the batches'
  tensors are summed in scratch (see :meth:`LayerStep._add_total`). A backward
  pass that computes no weight gradient for the layer (``torch.autograd.grad``
  of a gradient penalty) is not one that trains it, and is not recorded. Where
  the weight is reached through a cast (autocast) or a parametrization, or is
  frozen, ``g`` comes from a hook on ``z`` and ``x^T g`` is computed here; the
  engine then says whether the pass computes the weight's gradient
  (:func:`probe.engines.track_graph.trains`; for a frozen weight, the bias's
  gradient), and a layer with nothing trainable has every pass recorded;
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

import torch
from torch import nn

from probe.engines.track_graph import (batched, in_backward, plain, trains, weight_branch, weight_grad_node,
                                      work_view)
from probe.engines.track_ledger import Scratch, StepLedger, ledger_layout


class LayerStep:
    """One hidden layer's sums over the batches of one recorded step, written into its ledger part.

    Each batch gets a slab of planes ``[[z <= 0], relu(z), (z)]`` (``z`` only for a
    nonzero slope): one reduction over the samples gives every per-unit sum. In
    the backward, ``|g|`` overwrites ``relu(z)`` (summed already), and its sum and
    its dot product with ``[z <= 0]`` give both gradient sums; for a ReLU whose
    backward alone made ``g`` (:meth:`watch_relu`), ``g`` is exactly 0 wherever
    ``z <= 0``, and the product and everything negative are skipped. The sums
    land in the layer's part of the step's :class:`StepLedger`.

    Args:
        units, fan_in: The layer's widths.
        scratch: The layer's reusable work tensors.
        ledger, index: The step's flat tensor, and which part of it is this layer's.
        split: Also split the weight gradient (``neg_grad_share``).
    """

    def __init__(self, units: int, fan_in: int, scratch: Scratch, ledger: StepLedger, index: int,
                 split: bool = True) -> None:
        self.units, self.fan_in, self.scratch = units, fan_in, scratch
        self._ledger, self._index = ledger, index
        self.batch_rows: list[int] = []  # per batch of the step, its samples
        self.trained: set[int] = set()  # the batches that a training backward pass reached
        self.recomputed: set[int] = set()  # batches run inside a backward pass (a checkpoint's recomputation)
        self.wants_grad = False  # some batch's z required grad (not so for a frozen first layer)
        self.ledger: torch.Tensor | None = None  # this layer's part, laid out as LEDGER says
        self.parts, _ = ledger_layout(units)
        self.rows = 2  # forward rows in the ledger: n(z<=0), sum relu(z)[, sum z]
        self.slope: float | torch.Tensor | None = None
        self.grad_slabs: list[tuple] = []  # per backward pass, its batch's slab planes (plane 0: [z <= 0])
        self.grad_entries = 0
        self.g_neg: torch.Tensor | None = None  # x^T (g * [z<=0]) summed over batches; None while exactly 0
        self.g_total: torch.Tensor | None = None  # x^T g summed over batches, in scratch
        self._total_ref: tuple | None = None  # the first batch's x^T g (autograd's), its version and norm
        self.has_b_neg = False  # sum g * [z<=0] is in the ledger (else exactly 0)
        self.neg_abs_written = False  # sum |g| at z <= 0 is in the ledger (else every batch was clean: 0)
        self.split = split  # turned off when the split cannot be trusted for this step
        self._split_batches = 0  # backward passes that fed b_all and G_neg
        self._totals = 0  # x^T g tensors received; the split needs one per such backward pass
        self._relu_grad: tuple | None = None  # (batch, tensor, version): what the batch's ReLU backward made
        self._closed = False  # the record is built: hooks of this step that fire later do nothing

    @property
    def batches(self) -> int:
        """Forward passes recorded so far this step."""
        return len(self.batch_rows)

    @property
    def samples(self) -> int:
        """Rows of those forward passes."""
        return sum(self.batch_rows)

    def _view(self, part: str) -> torch.Tensor:
        """A piece of this layer's ledger part (as :data:`LEDGER` names them, or ``forward2``/``forward3``:
        its first 2 or 3 rows as ``[rows, units]``); the views are made once per run."""
        return self.scratch.views("pieces", self.ledger, self._pieces)[part]

    def _pieces(self, ledger: torch.Tensor) -> dict[str, torch.Tensor]:
        got = {name: ledger[piece] for name, piece in self.parts.items()}
        forward = got["forward"]
        got["forward2"], got["forward3"] = forward[:2 * self.units].view(2, self.units), forward.view(3, self.units)
        got["grad0"], got["grad1"] = got["grad"]  # sum |g|, and at z <= 0
        got["split0"], got["split1"], got["split2"] = got["split"]  # ||G_neg||, ||G_pos||, <G_neg, G_pos>
        return got

    def forward(self, module: nn.Linear, x: torch.Tensor, z: torch.Tensor,
                slope: float | torch.Tensor | None) -> None:
        """Read one batch's ``x`` and ``z`` now; hook the backward for ``g`` when ``z`` has a gradient.

        ``slope`` is the activation's negative slope: a number, a PReLU's learned
        slopes as they are now, or None for a ReLU (slope 0: the negative side's
        ``|h|`` is 0 and is not computed). ``g`` and autograd's ``x^T g`` come
        together to one hook on the backward node that computes ``x^T g``
        (:func:`weight_grad_node`); without such a node, a hook on ``z`` brings
        ``g`` and ``x^T g`` is computed here.
        """
        z2 = work_view(z, self.units)
        rows, batch = 2 if slope is None else 3, self.batches
        slab = self.scratch.get(("slab", batch), (rows, *z2.shape), z2)
        planes = self.scratch.views(("planes", batch), slab, tuple)
        torch.le(z2, 0, out=planes[0])
        torch.clamp(z2, min=0, out=planes[1])
        if slope is not None:
            planes[2].copy_(z2)
        if self.ledger is None:
            self.ledger = self._ledger.part(self._index, z2)
            self.rows = rows  # the activation decides, the same for every batch
            torch.sum(slab, 1, out=self._view("forward2" if rows == 2 else "forward3"))
        else:
            self._view("forward2" if rows == 2 else "forward3").add_(slab.sum(1).to(self.ledger.dtype))
        self.slope = slope
        self.batch_rows.append(z2.shape[0])
        if in_backward():
            self.recomputed.add(batch)
        if not z.requires_grad:
            return
        self.wants_grad = True
        node = weight_grad_node(z, module.weight, module.bias)
        x2, version = None, 0
        if self.split:
            x2 = x.detach()
            if x2.dim() != 2:
                x2 = x2.reshape(-1, self.fan_in)
            if node is None and not module.weight.requires_grad:
                x2 = x2.clone()  # autograd keeps no copy then, so a later in-place change would be legal
            version = x2._version
        if node is None:  # the weight is frozen, or reached through a cast or a parametrization
            branch = weight_branch(z)
            z.register_hook(lambda g: self._backward(g, planes, x2, version, None, None, True, batch)
                            if trains(branch) else None)
        else:
            target, index, bias_index = node
            target.register_hook(lambda grad_inputs, grad_outputs: self._backward(
                grad_outputs[0], planes, x2, version, grad_inputs[index],
                None if bias_index is None else grad_inputs[bias_index], False, batch))

    def watch_relu(self, h: torch.Tensor) -> bool:
        """Given the next layer's input ``h``: whether it is this layer's ReLU output (so ``h >= 0``).

        If so, a hook on that ReLU's backward node keeps the gradient it makes for
        ``z``, with its version. When the very same tensor, at the same version,
        then reaches this layer's backward for the same batch as ``g``, no other
        use of ``z`` added to it and nothing changed it, and ReLU's backward gives
        exactly 0 wherever ``z <= 0`` (``relu(z) <= 0`` there), so ``g``'s negative
        side is known without computing it. Anything else (another term of the
        loss on ``z``, a hook that returns a new ``g`` or changes it in place)
        is measured in full. Only what autograd cannot see would pass unseen: a
        write through ``.data`` or numpy, or a hook on the ReLU's backward node,
        registered before probe's, that replaces its output.
        """
        node = h.grad_fn
        if self.slope is not None or node is None or node.name() != "ReluBackward0":
            return False
        if not self._closed:
            batch = self.batches - 1
            node.register_hook(lambda grad_inputs, _: self._relu_backward(batch, grad_inputs[0]))
        return True

    def _relu_backward(self, batch: int, grad: torch.Tensor | None) -> None:
        self._relu_grad = None if grad is None else (batch, grad, grad._version)

    def _backward(self, g: torch.Tensor | None, planes: tuple[torch.Tensor, ...], x: torch.Tensor | None, version: int,
                  total: torch.Tensor | None, bias_grad: torch.Tensor | None, total_here: bool,
                  batch: int) -> None:
        """One backward pass's ``g`` of a batch; with autograd's ``x^T g`` and ``sum_i g`` when its node gave them."""
        made, self._relu_grad = self._relu_grad, None
        # g is what this batch's ReLU backward made, unchanged since (no other term added, no hook
        # changed it, in place or not): exactly 0 wherever z <= 0
        clean = made is not None and g is made[1] and made[0] == batch and g._version == made[2]
        if self._closed or g is None or batched(g):  # a graph of this step backpropagated after its record
            return  # (not this step's), or a batch of gradients (a Jacobian's): not a training pass
        if total is None and not total_here:  # a pass that computes no weight gradient (a gradient penalty's
            return  # torch.autograd.grad): not one that trains this layer, so not in the record
        self.trained.add(batch)
        with plain(g.device):
            self._measure(g, planes, x, version, total, bias_grad, total_here, clean)

    def _measure(self, g: torch.Tensor, planes: tuple[torch.Tensor, ...], x: torch.Tensor | None, version: int,
                 total: torch.Tensor | None, bias_grad: torch.Tensor | None, total_here: bool, clean: bool) -> None:
        g2 = g.detach() if g.requires_grad else g  # under create_graph it requires grad
        if g2.dim() != 2:
            g2 = g2.reshape(-1, self.units)
        if g2.dtype != planes[0].dtype:
            g2 = g2.to(planes[0].dtype)
        work = torch.abs(g2, out=planes[1])  # relu(z) is summed already
        if not self.grad_slabs:
            torch.sum(work, (0, 1), out=self._view("grad0"))  # sum |g|
        else:
            self._view("grad0").add_(work.sum().to(self.ledger.dtype))
        neg_abs = None
        if not clean:  # sum |g| where z <= 0 (0 for a clean batch: nothing to add)
            neg_abs = torch.dot(planes[0].view(-1), work.view(-1))
            if self.neg_abs_written:
                self._view("grad1").add_(neg_abs.to(self.ledger.dtype))
            else:
                self._view("grad1").copy_(neg_abs)
                self.neg_abs_written = True
        self.grad_slabs.append(planes)
        self.grad_entries += g2.numel()
        if not self.split or x is None:
            return
        if x._version != version:  # changed in place since the forward: no split rather than a wrong one
            self.split = False
            return
        self._split_batches += 1
        b_all = self._view("b_all")
        if g.dtype != g2.dtype:  # autograd's sums are in half precision: G_pos = x^T g - G_neg would
            bias_grad, total_here = None, True  # inherit their rounding; both sums taken here in float32
        if self._split_batches == 1:
            if bias_grad is not None:  # autograd's sum_i g, for the bias
                b_all.copy_(bias_grad.detach() if bias_grad.requires_grad else bias_grad)
            else:
                torch.sum(g2, 0, out=b_all)
        else:
            b_all.add_((g2.sum(0) if bias_grad is None else bias_grad.detach().reshape(-1)).to(b_all.dtype))
        xt = None  # x^T, converted once for the two products that may need it
        # Where z <= 0, a ReLU's g is often exactly 0, and then so are G_neg and b_neg: asked (one host
        # synchronisation). A nonzero slope's g is all but never: computed without asking.
        if neg_abs is not None and (self.slope is not None or neg_abs.item() != 0):
            masked = torch.mul(g2, planes[0], out=work)
            if not self.has_b_neg:
                torch.sum(masked, 0, out=self._view("b_neg"))
                self.has_b_neg = True
            else:
                self._view("b_neg").add_(masked.sum(0).to(self.ledger.dtype))
            xt = x.to(g2.dtype).T
            if self.g_neg is None:
                self.g_neg = torch.mm(xt, masked, out=self.scratch.get("g_neg", (self.fan_in, self.units), g2))
            else:
                self.g_neg.addmm_(xt, masked)
        if total_here:  # autograd's x^T g could not be read (or is in half precision): compute it
            self._add_total(torch.mm(x.to(g2.dtype).T if xt is None else xt, g2))
        elif tuple(total.shape) != (self.fan_in, self.units):
            self.split = False
        else:
            self._add_total(total.detach() if total.requires_grad else total)

    def _add_total(self, total: torch.Tensor) -> None:
        """Sum ``x^T g`` over the step's batches, or take the norms of a lone batch's at once.

        A loop that accumulates gradients does so on every step: once a recorded
        step of the run has summed several batches, every batch is summed in
        scratch as it comes, and :meth:`finish` takes the norms of the sum (exact, whatever
        happens to ``.grad`` in between). Otherwise the first batch's norms are
        taken now, while ``total`` is in cache (this batch's ``G_neg`` is
        complete: its ``g`` was taken first, in the same hook), which
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
        norm = torch.linalg.vector_norm
        if self.g_neg is None:  # G_neg is exactly 0: ||G_neg|| and <G_neg, G_pos> are 0 (the host knows)
            norm(total, dtype=self.ledger.dtype, out=self._view("split1"))
        else:
            g_pos = torch.sub(total.to(self.g_neg.dtype), self.g_neg,
                              out=self.scratch.get("g_pos", self.g_neg.shape, self.g_neg))
            norm(self.g_neg, out=self._view("split0"))
            norm(g_pos, out=self._view("split1"))
            torch.dot(self.g_neg.view(-1), g_pos.view(-1), out=self._view("split2"))

    def _take_total(self) -> torch.Tensor | None:
        """The first batch's kept ``x^T g`` if it is unchanged since its norms were taken, else None (no split)."""
        ref, self._total_ref = self._total_ref, None
        if ref is None:
            return None
        tensor, version, check = ref
        if check is None:
            check = self._view("split1")
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
        return float(sum(float(planes[0].sum()) for planes in self.grad_slabs))

    def finish(self) -> torch.Tensor | None:
        """Complete the ledger and return it (None without a forward pass).

        With one batch the weight-gradient norms are in the ledger already; with
        several, they are taken of the sums here.
        """
        self._closed, self._relu_grad = True, None
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
        self._closed, self._relu_grad = True, None
