"""The final Linear's sign routes on a recorded step of ``probe.track`` (the device side).

:mod:`probe.engines.track_record` turns the sums into analyze's sign entries,
with the definitions of :class:`probe.diagnostics.SignRoutes`.
"""

from __future__ import annotations

import torch
from torch import nn

from probe.diagnostics.sign import negative_prediction
from probe.engines.track_batch import Scratch, work_view


def _ones_first(buf: torch.Tensor) -> None:
    buf[:, 0].fill_(1)


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
        h2 = work_view(h, units)
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
