"""Gradient flow through the negative region: the "100x smaller" claim, measured.

For a hidden layer with input ``x``, pre-activation ``z`` and ``g = dL/dz``:

* ``grad_ratio`` = mean ``|g|`` over entries with ``z <= 0`` divided by mean
  ``|g|`` over entries with ``z > 0``. For a leaky ReLU the local derivative
  ratio is exactly the slope, so ``grad_ratio / slope`` is what the upstream
  gradient contributes (reported as ``upstream_ratio``).
* ``neg_grad_share`` = ``||G_neg|| / (||G_neg|| + ||G_pos||)`` (Frobenius),
  where ``G_neg = sum_i x_i (dL/du_i * [z_i <= 0])^T`` and ``G_pos`` likewise
  with ``[z_i > 0]``; ``u`` is the Linear's output (``u = z`` unless a LayerNorm
  or RMSNorm sits between the Linear and the activation), so ``G_neg + G_pos``
  is the layer's full-batch weight gradient.
  It is a ratio of norms, not a share of the gradient: the two parts can point
  against each other, and the biases are left out.
* ``neg_grad_fraction`` = ``<G_neg, G> / ||G||^2`` with ``G = G_neg + G_pos``,
  now over the weights *and the bias* of the layer (the bias row of ``G_neg`` is
  ``sum_i g_i * [z_i <= 0]``): the fraction of the full gradient's squared norm
  contributed by its negative-region part. With the positive part's fraction it
  sums to exactly 1; it leaves [0, 1] only when the two parts oppose each other
  (then one "contributes" more than everything and the other a negative amount).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class GradientResult:
    """Gradient diagnostics of one hidden layer of one network."""

    grad_neg_mean_abs: float | None
    grad_pos_mean_abs: float | None
    grad_ratio: float | None
    upstream_ratio: float | None
    neg_grad_share: float | None
    neg_grad_fraction: float | None
    weight_grad_norm_neg: float
    weight_grad_norm_pos: float

    def to_dict(self) -> dict:
        return asdict(self)


class GradientStats:
    """Streams ``|g|`` sums and the split weight gradient; memory O(members x fan_in x units).

    Args:
        weight_grads: Also accumulate ``G_neg``/``G_pos`` (needs the layer input).
        pos_from_total: Skip the ``G_pos`` product per batch; the caller supplies
            the full weight gradient once through :meth:`set_total` (autograd
            computes it anyway), and ``G_pos = G_total - G_neg``. Saves one matrix
            product per layer and batch.
    """

    def __init__(self, weight_grads: bool = True, pos_from_total: bool = False) -> None:
        self.weight_grads = weight_grads
        self.pos_from_total = pos_from_total
        self.neg_abs = self.pos_abs = self.neg_count = self.pos_count = None
        self.g_neg: torch.Tensor | None = None
        self.g_pos: torch.Tensor | None = None
        self.b_neg: torch.Tensor | None = None  # [M, U] sum of g over the negative region (bias gradient part)
        self.b_all: torch.Tensor | None = None  # [M, U] sum of g (the full bias gradient)

    def update(self, neg: torch.Tensor, g: torch.Tensor, x: torch.Tensor | None = None) -> None:
        """Feed one batch.

        Args:
            neg: Mask ``z <= 0`` taken at forward time, ``[members, batch, units]``
                (boolean, or 0/1 in ``g``'s dtype).
            g: ``dL/dz``, same shape.
            x: Layer input ``[members, batch, fan_in]``; required when ``weight_grads``.
        """
        self.update_ratio(neg, g)
        if self.weight_grads:
            self.update_weights(neg, g, x)

    def update_ratio(self, neg: torch.Tensor, g: torch.Tensor) -> None:
        """Feed ``g = dL/dz`` at the activation's input: the ``|g|`` sums per side."""
        g = g.detach()
        if neg.dtype == torch.bool:
            neg = neg.to(g.dtype)  # float masks multiply several times faster than bool ones
        m = g.shape[0]
        g_abs = g.abs()
        all_abs = g_abs.sum(dim=(1, 2)).double()
        # sum of |g| over the negative region as a dot product: no masked temporary
        neg_abs = torch.bmm(g_abs.reshape(m, 1, -1), neg.reshape(m, -1, 1)).reshape(m).double()
        n_neg = neg.sum(dim=(1, 2)).round().long()
        if self.neg_abs is None:
            self.neg_abs = torch.zeros(m, dtype=torch.float64, device=g.device)
            self.pos_abs = torch.zeros_like(self.neg_abs)
            self.neg_count = torch.zeros(m, dtype=torch.long, device=g.device)
            self.pos_count = torch.zeros_like(self.neg_count)
        self.neg_abs += neg_abs
        self.pos_abs += all_abs - neg_abs
        self.neg_count += n_neg
        self.pos_count += g.shape[1] * g.shape[2] - n_neg

    def update_weights(self, neg: torch.Tensor, g: torch.Tensor, x: torch.Tensor | None) -> None:
        """Feed ``g = dL/du`` at the Linear's output (``u = z`` without a norm) and its input ``x``."""
        if x is None:
            raise ValueError("GradientStats(weight_grads=True).update() needs the layer input x")
        g = g.detach()
        if neg.dtype == torch.bool:
            neg = neg.to(g.dtype)
        xt = x.detach().transpose(1, 2)
        g_neg = g * neg
        if self.b_neg is None:
            self.b_neg = g_neg.sum(1).double()
            self.b_all = g.sum(1).double()
        else:
            self.b_neg += g_neg.sum(1).double()
            self.b_all += g.sum(1).double()
        # float32 accumulation in place (one fused product-and-add per batch); the
        # norms and the subtraction from the total are taken in float64 at the end
        if self.g_neg is None:
            self.g_neg = torch.bmm(xt, g_neg)
        else:
            self.g_neg.baddbmm_(xt, g_neg)
        if not self.pos_from_total:
            if self.g_pos is None:
                self.g_pos = torch.bmm(xt, g - g_neg)
            else:
                self.g_pos.baddbmm_(xt, g - g_neg)

    def set_total(self, total: torch.Tensor) -> None:
        """Give the full weight gradient ``G_neg + G_pos`` as ``[members, fan_in, units]``.

        Only with ``pos_from_total``; call after the last update.
        """
        if self.g_neg is not None:
            self.g_pos = total.detach().double() - self.g_neg.double()

    def grad_ratios(self) -> torch.Tensor:
        """``grad_ratio`` of every member at once, ``[members]`` float64; NaN where undefined.

        Undefined: no entry on one side, or zero gradient on the positive side.
        """
        if self.neg_abs is None:
            raise ValueError("GradientStats.grad_ratios() called before any update()")
        neg = self.neg_abs / self.neg_count.clamp_min(1)
        pos = self.pos_abs / self.pos_count.clamp_min(1)
        ok = (self.neg_count > 0) & (self.pos_count > 0) & (pos > 0)
        return torch.where(ok, neg / torch.where(ok, pos, 1.0), torch.nan)

    def result(self, member: int = 0, slope: float = 0.0) -> GradientResult:
        """The diagnostics of one member; ``slope`` is the nominal negative slope (see :meth:`results`)."""
        if self.neg_abs is None:
            raise ValueError("GradientStats.result() called before any update()")
        slopes = [0.0] * self.neg_abs.shape[0]
        slopes[member] = slope
        return self.results(slopes)[member]

    def results(self, slopes: list[float]) -> list[GradientResult]:
        """The diagnostics of every member at once; ``slopes[m]`` is member ``m``'s nominal negative slope."""
        if self.neg_abs is None:
            raise ValueError("GradientStats.result() called before any update()")
        n_neg, n_pos = self.neg_count.tolist(), self.pos_count.tolist()
        neg_abs, pos_abs = self.neg_abs.tolist(), self.pos_abs.tolist()
        ratios = self.grad_ratios().tolist()
        m = len(n_neg)
        norms_neg = norms_pos = [0.0] * m
        totals = dots = [0.0] * m
        if self.g_neg is not None:
            gn, gp = self.g_neg.double(), self.g_pos.double()
            norms_neg = torch.linalg.matrix_norm(gn).tolist()
            norms_pos = torch.linalg.matrix_norm(gp).tolist()
            full_neg = torch.cat([gn, self.b_neg[:, None]], 1)  # weights and bias, [M, fan_in + 1, U]
            full = torch.cat([gn + gp, self.b_all[:, None]], 1)
            totals = (full * full).sum((1, 2)).tolist()
            dots = (full_neg * full).sum((1, 2)).tolist()
        out = []
        for i in range(m):
            neg_mean = neg_abs[i] / n_neg[i] if n_neg[i] else None
            pos_mean = pos_abs[i] / n_pos[i] if n_pos[i] else None
            ratio = None if math.isnan(ratios[i]) else ratios[i]
            norm_neg, norm_pos = norms_neg[i], norms_pos[i]
            share = norm_neg / (norm_neg + norm_pos) if norm_neg + norm_pos > 0 else None
            out.append(GradientResult(
                grad_neg_mean_abs=neg_mean,
                grad_pos_mean_abs=pos_mean,
                grad_ratio=ratio,
                upstream_ratio=ratio / slopes[i] if ratio is not None and slopes[i] > 0 else None,
                neg_grad_share=share,
                neg_grad_fraction=dots[i] / totals[i] if self.g_neg is not None and totals[i] > 0 else None,
                weight_grad_norm_neg=norm_neg,
                weight_grad_norm_pos=norm_pos,
            ))
        return out
