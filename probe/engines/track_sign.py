"""The final Linear's sign routes on a recorded step of ``probe.track`` (the device side).

:class:`SignStep` gathers the fast path's sums, which
:mod:`probe.engines.track_record` turns into analyze's sign entries, with the
definitions of :class:`probe.diagnostics.SignRoutes`. :class:`RoutesFeed` feeds
analyze's own accumulator instead: the general path's routes, and a
classifier's logit margins (``sign_target="margin"``) on either path.
"""

from __future__ import annotations

import torch
from torch import nn

from probe.diagnostics.margin import MarginRoutes
from probe.diagnostics.sign import SignResult, SignRoutes
from probe.engines.track_graph import plain, work_view
from probe.engines.track_ledger import Scratch, StepLedger, sign_layout


def _ones_first(buf: torch.Tensor) -> None:
    buf[:, 0].fill_(1)


class SignStep:
    """The final Linear's sign routes over the batches of one recorded step.

    Per batch, from the layer's input ``h`` (``[samples, units]``) and its weight
    ``W`` and bias ``b`` as they were at that forward pass: with ``A = [1, P]``
    (a column of ones, then ``P[i, k] = 1`` where sample ``i``'s prediction of
    output ``k`` is negative), ``A^T max(h, 0)``, ``A^T min(h, 0)`` and ``A^T |h W^T|``:
    the per-unit sums over all samples and over each output's negative
    predictions, and the counts ``sum_i A``, into the last part of the step's
    ledger (:func:`probe.engines.track_ledger.sign_layout`). Where ``h`` is a
    ReLU's output, ``max(h, 0) = h`` and ``min(h, 0) = 0``: one product, and
    ``nonnegative`` tells the record that the negative part was not written.
    """

    def __init__(self, scratch: Scratch, ledger: StepLedger, index: int, outputs: int, units: int) -> None:
        self.scratch, self._ledger, self._index = scratch, ledger, index
        self.outputs, self.units = outputs, units
        self.parts, _ = sign_layout(outputs, units)
        self.sums: torch.Tensor | None = None  # this step's part of the ledger
        self.samples = 0
        self.nonnegative = True  # every batch's h was a ReLU output: A^T min(h, 0) was not written

    def _view(self, name: str) -> torch.Tensor:
        """A piece of the sums (:func:`sign_layout`), the routes' as ``[1 + outputs, -1]``; made once per run."""
        return self.scratch.views("sign pieces", self.sums, self._pieces)[name]

    def _pieces(self, sums: torch.Tensor) -> dict[str, torch.Tensor]:
        got = {name: sums[piece] for name, piece in self.parts.items()}
        for name in ("hp", "hn", "net"):
            got[name] = got[name].view(self.outputs + 1, -1)
        return got

    def forward(self, module: nn.Linear, h: torch.Tensor, nonnegative: bool) -> None:
        """Read one batch's ``h``; ``nonnegative`` when it is a ReLU's output."""
        with plain(h.device):
            self._read(module, h, nonnegative)

    def _read(self, module: nn.Linear, h: torch.Tensor, nonnegative: bool) -> None:
        k, units = self.outputs, self.units
        h2 = work_view(h, units)
        weight = module.weight.detach()
        first = self.sums is None
        if first:  # a snapshot: the optimizer changes the weights before the record is built
            self.sums = self._ledger.part(self._index, h2)
            self._view("weight").copy_(weight.reshape(-1))
            bias = self._view("bias")
            if module.bias is None:
                bias.zero_()
            else:
                bias.copy_(module.bias.detach())
        net = h2 @ weight.to(h2.dtype).T  # [samples, outputs]: the output minus the bias
        a = self.scratch.get("sign_a", (h2.shape[0], k + 1), h2, _ones_first)  # ones, then P
        negative, at = self.scratch.views("sign a", a, lambda a: (a[:, 1:], a.T))
        if module.bias is None:
            torch.lt(net, 0, out=negative)  # negative_prediction(net)
        else:  # negative_prediction(net + b), exact: net + b < 0 exactly when net < -b (no rounding)
            torch.lt(net, module.bias.detach().to(net.dtype).neg(), out=negative)
        hp = self._view("hp")
        pos = h2 if nonnegative else torch.clamp(h2, min=0, out=self.scratch.get("sign_hp", h2.shape, h2))
        if first:
            torch.mm(at, pos, out=hp)
            torch.mm(at, net.abs(), out=self._view("net"))
            torch.sum(a, 0, out=self._view("counts"))
        else:
            hp.addmm_(at, pos)
            self._view("net").addmm_(at, net.abs())
            self._view("counts").add_(a.sum(0))
        if not nonnegative:  # min(h, 0), whose sums are exactly 0 where no h is negative
            low = torch.clamp(h2, max=0, out=self.scratch.get("sign_hn", h2.shape, h2))
            if self.nonnegative:  # the first batch with a negative part: the earlier ones' is 0
                torch.mm(at, low, out=self._view("hn"))
                self.nonnegative = False
            else:
                self._view("hn").addmm_(at, low)
        self.samples += h2.shape[0]


class RoutesFeed:
    """The final Linear's routes over one recorded step through analyze's accumulator, as ``probe analyze`` takes them.

    Args:
        margin: Each class's logit margin (:class:`probe.diagnostics.margin.MarginRoutes`)
            rather than each output itself (:class:`probe.diagnostics.SignRoutes`).
    """

    def __init__(self, margin: bool = False) -> None:
        self.margin = margin
        self.routes: SignRoutes | MarginRoutes | None = None
        self.samples = 0

    def forward(self, module: nn.Linear, h: torch.Tensor, nonnegative: bool = False) -> None:
        """Read one batch's input ``h`` of the final layer (``nonnegative``: unused, as SignStep's)."""
        h = h.detach().reshape(1, -1, module.in_features).float()
        if self.routes is None:  # the weights of this step's forward pass, before opt.step()
            weight = module.weight.detach().float()[None]
            bias = (torch.zeros(1, weight.shape[1], device=weight.device) if module.bias is None
                    else module.bias.detach().float()[None])
            self.routes = (MarginRoutes if self.margin else SignRoutes)(weight, bias)
        self.routes.update(h)
        self.samples += h.shape[1]

    def results(self) -> tuple[SignResult, ...]:
        return () if self.routes is None else tuple(self.routes.result(0))
