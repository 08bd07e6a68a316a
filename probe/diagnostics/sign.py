"""How the final Linear layer builds the sign of each output.

For output ``k`` with weights ``W[k, :]`` and last hidden activation ``h``,
each contribution ``c_ij = W[k, j] * h[i, j]`` falls into one of four masses,
summed over samples ``i`` and units ``j`` as absolute values:

* ``pos_pos``: ``W > 0, h > 0`` (pushes the output up)
* ``neg_pos``: ``W < 0, h > 0`` (pushes down through a negative *weight*: with the
  bias, the only route a ReLU network has)
* ``pos_neg``: ``W > 0, h < 0`` (pushes down through a negative *activation*:
  only leaky variants have it)
* ``neg_neg``: ``W < 0, h < 0`` (pushes up)

The output's bias is a route too: ``bias_pos`` and ``bias_neg`` are its
absolute contribution summed over the samples, split by its sign (a negative
bias pushes every sample down, with no help from the hidden units). Over the
whole downward mass ``neg_pos + pos_neg + bias_neg``, ``downward_shares`` gives
the part through ``negative_weights`` (neg_pos), ``negative_activations``
(pos_neg) and the ``bias`` (bias_neg); they sum to 1. A ReLU network has two
downward routes, negative weights and a negative bias; leaky variants add
negative activations.

``activation_route_share = pos_neg / (neg_pos + pos_neg)``: the share of the
weight-times-activation downward mass that arrives through negative activations
(the bias left out, as before it was counted). ``cancellation`` =
``sum_i sum_j |c_ij| / sum_i |sum_j c_ij|``: 1 when no contribution to a
sample's output fights another, larger when positive and negative masses
cancel. The same quantities are reported over the samples whose prediction of
output ``k`` is negative (``negative_predictions``).

**What is signed** (``target``): for a regression model or a one-logit binary
classifier (bce), output ``k`` itself (``target = "logit"``: for bce the logit
is the margin of the positive class). For a classifier with ``K > 1`` logits
under cross-entropy, the sign of one logit means little; there the routes
describe each class's **logit margin** ``m_k = f_k - max_{j != k} f_j``, whose
per-sample row is ``W[k] - W[j*]`` with ``j*`` the runner-up, and a negative
prediction means the class is not predicted (``target = "margin"``, see
:mod:`probe.diagnostics.margin`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RouteMasses:
    """The four contribution masses of one output over a set of samples.

    ``net_mass`` is ``sum_i |sum_j c_ij|``, the denominator of ``cancellation``;
    build instances with :meth:`of`, which derives the share and the cancellation.
    """

    samples: int
    pos_pos: float
    neg_pos: float
    pos_neg: float
    neg_neg: float
    activation_route_share: float | None
    cancellation: float | None
    net_mass: float = 0.0
    bias_pos: float = 0.0
    bias_neg: float = 0.0

    @classmethod
    def of(cls, samples: int, pos_pos: float, neg_pos: float, pos_neg: float, neg_neg: float,
           net_mass: float, bias_pos: float = 0.0, bias_neg: float = 0.0) -> RouteMasses:
        """Masses with ``activation_route_share`` and ``cancellation`` derived (None when 0/0)."""
        down = neg_pos + pos_neg
        total = pos_pos + neg_pos + pos_neg + neg_neg
        return cls(samples, pos_pos, neg_pos, pos_neg, neg_neg,
                   activation_route_share=pos_neg / down if down > 0 else None,
                   cancellation=total / net_mass if net_mass > 0 else None, net_mass=net_mass,
                   bias_pos=bias_pos, bias_neg=bias_neg)

    @property
    def downward_shares(self) -> dict[str, float] | None:
        """Shares of the downward mass by route; they sum to 1 (None when nothing pushes down)."""
        down = self.neg_pos + self.pos_neg + self.bias_neg
        if down <= 0:
            return None
        return {"negative_weights": self.neg_pos / down, "negative_activations": self.pos_neg / down,
                "bias": self.bias_neg / down}

    def __add__(self, other: RouteMasses) -> RouteMasses:
        """Pooled masses of two sets (e.g. several layers): sums, with shares re-derived."""
        return RouteMasses.of(self.samples + other.samples, self.pos_pos + other.pos_pos,
                              self.neg_pos + other.neg_pos, self.pos_neg + other.pos_neg,
                              self.neg_neg + other.neg_neg, self.net_mass + other.net_mass,
                              self.bias_pos + other.bias_pos, self.bias_neg + other.bias_neg)

    def to_dict(self) -> dict:
        return {**vars(self), "downward_shares": self.downward_shares}  # flat numbers: no deep copy needed


@dataclass(frozen=True)
class SignResult:
    """Sign construction of one output over all samples and over negative predictions.

    ``target`` is ``"logit"`` (the output itself) or ``"margin"`` (class ``output``'s
    logit margin over the runner-up, :mod:`probe.diagnostics.margin`).
    """

    output: int
    all_samples: RouteMasses
    negative_predictions: RouteMasses
    target: str = "logit"

    def to_dict(self) -> dict:
        """Flat keys for the whole set, the negative-prediction subset nested."""
        d = {"output": self.output, "target": self.target, **self.all_samples.to_dict()}
        d["negative_predictions"] = self.negative_predictions.to_dict()
        return d


def negative_prediction(out: torch.Tensor) -> torch.Tensor:
    """The rule for a *negative prediction*, shared by the sign routes and the circuits.

    A sample's prediction of an output is negative when the output is strictly
    below 0; an output of exactly 0 counts with the positive ones.
    """
    return out < 0


def route_masses(weight, pos, neg, net_abs: float, samples: int, bias=None) -> RouteMasses:
    """The four masses of a weight block, summed over its receivers and senders.

    The one implementation of the route formulas, for the final layer's sign
    routes and the circuit's layer routes alike (torch tensors or numpy arrays).

    Args:
        weight: ``[receivers, senders]``.
        pos, neg: Per-sender sums over the samples of ``max(a, 0)`` and
            ``max(-a, 0)``: ``[senders]``, or ``[receivers, senders]`` when each
            receiver has its own samples.
        net_abs: ``sum_i sum_k |z[i, k] - bias[k]|`` over the same samples.
        samples: How many samples the sums cover.
        bias: The receivers' biases ``[receivers]`` (each adds ``|b|`` per sample
            to ``bias_pos`` or ``bias_neg``), or None for a block without bias.
    """
    b_pos = b_neg = 0.0
    if bias is not None:
        b_pos, b_neg = samples * float(bias.clip(0, None).sum()), samples * float((-bias).clip(0, None).sum())
    pos_pos, neg_pos, pos_neg, neg_neg = (float(m.sum()) for m in route_sums(weight, pos, neg))
    return RouteMasses.of(samples, pos_pos, neg_pos, pos_neg, neg_neg, float(net_abs), b_pos, b_neg)


def route_sums(weight, pos, neg) -> tuple:
    """Per receiver, the masses ``pos_pos``, ``neg_pos``, ``pos_neg``, ``neg_neg`` (four ``[receivers]``).

    ``sum_j max(W, 0) * pos``, ``sum_j max(-W, 0) * pos``, ``sum_j max(W, 0) * neg`` and
    ``sum_j max(-W, 0) * neg`` over the senders ``j``; arguments as in :func:`route_masses`
    (torch tensors or numpy arrays).
    """
    w_pos, w_neg = weight.clip(0, None), (-weight).clip(0, None)
    return (w_pos * pos).sum(-1), (w_neg * pos).sum(-1), (w_pos * neg).sum(-1), (w_neg * neg).sum(-1)


def _per_output(w: torch.Tensor, b: torch.Tensor, h_pos: torch.Tensor, h_neg: torch.Tensor,
                net_abs: torch.Tensor, samples: torch.Tensor) -> list[RouteMasses]:
    """Masses per output ``k`` (row ``k`` of ``w``, bias ``b[k]``); ``h_pos``/``h_neg``: ``[K, U]`` or ``[U]``."""
    if h_pos.dim() == 1:
        h_pos, h_neg = h_pos.expand_as(w), h_neg.expand_as(w)
    return [route_masses(w[k], h_pos[k], h_neg[k], float(net_abs[k]), int(samples[k]), b[k:k + 1])
            for k in range(w.shape[0])]


class SignRoutes:
    """Streams per-unit sums of the last hidden activation; memory O(members x outputs x units).

    Args:
        weight: Final Linear weights ``[members, outputs, units]``.
        bias: Final Linear bias ``[members, outputs]`` (zeros if the layer has none).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight = weight.detach().double()
        self.bias = bias.detach().double()
        m, k, u = self.weight.shape
        dev = self.weight.device
        self.h_pos = torch.zeros(m, u, dtype=torch.float64, device=dev)
        self.h_neg = torch.zeros_like(self.h_pos)
        self.net_abs = torch.zeros(m, k, dtype=torch.float64, device=dev)
        self.neg_h_pos = torch.zeros(m, k, u, dtype=torch.float64, device=dev)
        self.neg_h_neg = torch.zeros_like(self.neg_h_pos)
        self.neg_net_abs = torch.zeros(m, k, dtype=torch.float64, device=dev)
        self.neg_samples = torch.zeros(m, k, dtype=torch.long, device=dev)
        self.samples = 0

    def update(self, h: torch.Tensor) -> None:
        """Feed the last hidden activation of one batch, ``[members, batch, units]``."""
        h = h.detach()
        w = self.weight.to(h.dtype)
        # float32 work on the batch, float64 accumulation across batches. The negative part is
        # summed as min(h, 0) itself: taken as (positive part) - h, its sums cancelled (relative
        # errors up to 2e-5 measured on a leaky(0.01) layer, whose negative part is small).
        hp, hn = h.clamp(min=0), h.clamp(max=0)
        net = torch.bmm(h, w.transpose(1, 2))  # [M, B, K], output minus bias
        neg_pred = negative_prediction(net.double() + self.bias[:, None, :]).to(h.dtype)  # [M, B, K]
        self.h_pos += hp.sum(1).double()
        self.h_neg -= hn.sum(1).double()
        net_abs = net.abs()
        self.net_abs += net_abs.sum(1).double()
        mask_t = neg_pred.transpose(1, 2)
        self.neg_h_pos += torch.bmm(mask_t, hp).double()
        self.neg_h_neg -= torch.bmm(mask_t, hn).double()
        self.neg_net_abs += (net_abs * neg_pred).sum(1).double()
        self.neg_samples += neg_pred.sum(1).round().long()
        self.samples += h.shape[1]

    def result(self, member: int = 0) -> list[SignResult]:
        """One :class:`SignResult` per output for one member."""
        w = self.weight[member]
        k = w.shape[0]
        n_all = torch.full((k,), self.samples)
        b = self.bias[member]
        whole = _per_output(w, b, self.h_pos[member], self.h_neg[member], self.net_abs[member], n_all)
        neg = _per_output(w, b, self.neg_h_pos[member], self.neg_h_neg[member], self.neg_net_abs[member],
                          self.neg_samples[member])
        return [SignResult(i, a, b) for i, (a, b) in enumerate(zip(whole, neg))]
