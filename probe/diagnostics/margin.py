"""Sign routes of a classifier's **logit margin**: how each class's lead (or deficit) is built.

For a classifier with logits ``f = W h + b`` over ``K > 1`` classes, the sign of
a single logit means little (softmax ignores a shift shared by all logits). What
decides a prediction is the margin of class ``k``::

    m_k(x) = f_k(x) - max_{j != k} f_j(x)

positive when ``k`` is predicted, negative when it is not. Per sample the margin
is a linear read-out of ``h`` too, with the row ``W[k] - W[j*]`` and the bias
``b[k] - b[j*]``, where ``j* = j*(x, k)`` is the runner-up: the top class when
``k`` is not predicted, the second one when it is. :class:`MarginRoutes` reports,
for every class ``k``, the same masses as :class:`probe.diagnostics.sign.SignRoutes`
(``pos_pos``, ``neg_pos``, ``pos_neg``, ``neg_neg``, the bias routes, the
cancellation) with those per-sample rows, over all samples and over the samples
whose margin is negative (``negative_predictions``: the class is not predicted;
a margin of exactly 0, a tie, counts as predicted). Results carry
``target = "margin"``.

Memory stays O(K x K x units), not O(samples): the sums of ``max(h, 0)`` and
``max(-h, 0)`` are kept per top class (samples whose runner-up for every other
class is that top class), per (top, second) pair (the runner-up of the top
class itself), and per (class, top) pair for ties, which are not negative.
"""

from __future__ import annotations

import torch

from probe.diagnostics.sign import RouteMasses, SignResult, SignRoutes, negative_prediction, route_masses


def _pairs(dims: tuple[int, ...], dev: torch.device) -> torch.Tensor:
    return torch.zeros(*dims, dtype=torch.float64, device=dev)


class MarginRoutes:
    """Streams the margin routes of every class; same interface as :class:`SignRoutes`.

    Args:
        weight: Final Linear weights ``[members, classes, units]``.
        bias: Final Linear bias ``[members, classes]`` (zeros if the layer has none).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight = weight.detach().double()
        self.bias = bias.detach().double()
        m, k, u = self.weight.shape
        self.logit = SignRoutes(weight, bias) if k < 2 else None  # one logit is its own margin
        dev = self.weight.device
        self.top_h = _pairs((2, m * k, u), dev)          # [pos/neg] sums by top class
        self.top_n = _pairs((m * k,), dev)
        self.second_h = _pairs((2, m * k * k, u), dev)   # by (top, second) pair
        self.second_n = _pairs((m * k * k,), dev)
        self.tie_h = _pairs((2, m * k * k, u), dev)      # by (class tied with the top, top) pair
        self.tie_n = _pairs((m * k * k,), dev)
        self.net_abs = _pairs((m, k), dev)
        self.neg_net_abs = _pairs((m, k), dev)
        self.neg_samples = torch.zeros(m, k, dtype=torch.long, device=dev)
        self.samples = 0

    @staticmethod
    def _add(h_sums: torch.Tensor, counts: torch.Tensor, index: torch.Tensor, hp: torch.Tensor,
             hn: torch.Tensor) -> None:
        """Add rows of ``hp``/``hn`` ``[n, units]`` at ``index`` (float32 per batch, float64 across)."""
        for side, rows in ((0, hp), (1, hn)):
            buf = torch.zeros(h_sums.shape[1:], dtype=rows.dtype, device=rows.device)
            h_sums[side] += buf.index_add_(0, index, rows).double()
        counts += torch.bincount(index, minlength=counts.shape[0]).double()

    def update(self, h: torch.Tensor) -> None:
        """Feed the last hidden activation of one batch, ``[members, batch, units]``."""
        if self.logit is not None:
            self.logit.update(h)
            return
        h = h.detach()
        m, b, u = h.shape
        k = self.weight.shape[1]
        net = torch.bmm(h, self.weight.to(h.dtype).transpose(1, 2)).double()  # [M, B, K], logits minus bias
        logits = net + self.bias[:, None, :]
        top = logits.topk(2, dim=-1).indices
        t1, t2 = top[..., 0], top[..., 1]  # [M, B]
        classes = torch.arange(k, device=h.device)
        runner = torch.where(classes == t1[..., None], t2[..., None], t1[..., None])  # [M, B, K]
        margin_net = net - net.gather(-1, runner)  # margin minus its bias b[k] - b[j*]
        margin = logits - logits.gather(-1, runner)
        neg = negative_prediction(margin)
        self.net_abs += margin_net.abs().sum(1)
        self.neg_net_abs += (margin_net.abs() * neg).sum(1)
        self.neg_samples += neg.sum(1)
        self.samples += b
        hp = h.clamp(min=0)
        hn = hp - h
        member = torch.arange(m, device=h.device)[:, None]
        rows_p, rows_n = hp.reshape(m * b, u), hn.reshape(m * b, u)
        self._add(self.top_h, self.top_n, (member * k + t1).reshape(-1), rows_p, rows_n)
        self._add(self.second_h, self.second_n, ((member * k + t1) * k + t2).reshape(-1), rows_p, rows_n)
        tie = (margin == 0) & (classes != t1[..., None])  # not predicted, yet not negative
        if bool(tie.any()):
            mi, bi, ki = tie.nonzero(as_tuple=True)
            index = (mi * k + ki) * k + t1[mi, bi]
            self._add(self.tie_h, self.tie_n, index, hp[mi, bi], hn[mi, bi])

    @staticmethod
    def _masses(wd: torch.Tensor, bd: torch.Tensor, h_pos: torch.Tensor, h_neg: torch.Tensor,
                counts: torch.Tensor, net_abs: float, samples: int) -> RouteMasses:
        """Masses of one class from its per-runner-up rows ``wd [K, U]``, biases ``bd [K]`` and sums."""
        w = route_masses(wd, h_pos, h_neg, 0.0, samples)
        return RouteMasses.of(samples, w.pos_pos, w.neg_pos, w.pos_neg, w.neg_neg, net_abs,
                              float((counts * bd.clip(0, None)).sum()), float((counts * (-bd).clip(0, None)).sum()))

    def result(self, member: int = 0) -> list[SignResult]:
        """One :class:`SignResult` per class (``target="margin"``) for one member."""
        if self.logit is not None:
            return self.logit.result(member)
        _, k, u = self.weight.shape
        w, b = self.weight[member], self.bias[member]
        wd = w[:, None, :] - w[None, :, :]  # [class, runner-up, units]; zero on the diagonal
        bd = b[:, None] - b[None, :]
        top_h = self.top_h.view(2, -1, k, u)[:, member]  # [2, top, units]
        top_n = self.top_n.view(-1, k)[member]
        second_h = self.second_h.view(2, -1, k, k, u)[:, member]
        second_n = self.second_n.view(-1, k, k)[member]
        tie_h = self.tie_h.view(2, -1, k, k, u)[:, member]
        tie_n = self.tie_n.view(-1, k, k)[member]
        # all samples: runner-up j is the top class (k not predicted) or the second (k predicted)
        all_h = top_h[:, None] + second_h
        all_n = top_n[None] + second_n
        # negative margins: k not predicted, ties with the top class left out
        neg_h = top_h[:, None] - tie_h
        neg_n = top_n[None] - tie_n
        out = []
        for c in range(k):
            whole = self._masses(wd[c], bd[c], all_h[0, c], all_h[1, c], all_n[c],
                                 float(self.net_abs[member, c]), self.samples)
            negs = self._masses(wd[c], bd[c], neg_h[0, c], neg_h[1, c], neg_n[c],
                                float(self.neg_net_abs[member, c]), int(self.neg_samples[member, c]))
            out.append(SignResult(c, whole, negs, target="margin"))
        return out
