"""Many MLPs as one set of batched tensors with a leading member dimension.

Member ``m`` has weights ``W_l[m]`` of shape ``[out, in]`` and biases
``b_l[m]``; a hidden block is ``u = b + x W^T`` for all members at once
(``torch.baddbmm``), an optional per-member norm ``z = norm(u)``, the
activation ``h = f(z)`` and, in training, dropout. Members never interact: the
training objective is the sum of member losses, so each member's gradient is
its own loss's gradient and an element-wise optimiser (Adam, SGD) over the
batched tensors is exactly per-member Adam/SGD.

Activations (:mod:`probe.engines.training.layers`): when every variant is of
the ReLU family (``relu``, ``leaky[:S]``, ``prelu``) one
:func:`probe.core.variants.leaky_relu` with a per-member slope ``[M, 1, 1]``
covers all members; a PReLU member has a learnable slope per hidden layer (one
scalar, as ``torch.nn.PReLU()``), initialised at 0.25. Any other variant
(``rrelu``, ``elu``, ``gelu``, ``tanh``, ...) makes each variant apply its own
activation to its contiguous slice of members.

Members are laid out variant-major: ``m = variant_index * n_seeds + seed_index``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch

from probe.core.variants import Variant
from probe.diagnostics import Collector
from probe.diagnostics.collector import PendingBackward
from probe.engines.training.init import Params, init_params, stack_params
from probe.engines.training.layers import (DROPOUT_STREAM, NORM_EPS, RRELU_STREAM, BatchedNorm, Group,
                                           dropout_mask, fixed_runs, group_activation, make_groups,
                                           noise_generator, rrelu_slopes)
from probe.models.mlp import MLP, linear_from

#: per hidden layer: ``(z, u)``, the activation input and the Linear output (``u`` only under a LayerNorm)
Taps = list[tuple[torch.Tensor, torch.Tensor | None]]


class Ensemble:
    """Batched parameters of ``len(variants) * len(seeds)`` MLPs of the same widths.

    For a given seed every variant starts from the same initial parameters
    (drawn once per seed by :func:`probe.engines.training.init.init_params`).

    Args:
        widths: ``[in_features, hidden..., out_features]``.
        variants: Activation of each variant group.
        seeds: Initialisation seeds, one member per (variant, seed).
        init: Initialisation scheme (see :mod:`probe.engines.training.init`).
        device: Where the tensors live.
        norm: ``none``, ``batch`` or ``layer``: a per-member norm after every hidden Linear.
        dropout: Dropout probability after every hidden activation, in training only.
    """

    def __init__(self, widths: Sequence[int], variants: Sequence[Variant], seeds: Sequence[int],
                 init: str, device: str | torch.device = "cpu", *, norm: str = "none",
                 dropout: float = 0.0) -> None:
        self.widths = list(widths)
        self.variants = list(variants)
        self.seeds = list(seeds)
        self.device = torch.device(device)
        self.norm, self.dropout = norm, float(dropout)
        self.groups: list[Group] = make_groups(self.variants, len(self.seeds))
        self.runs = fixed_runs(self.variants, len(self.seeds))  # the fast kernel's slope per member run
        self.initial: list[Params] = [init_params(widths, init, s) for s in self.seeds]
        stacked = stack_params([self.initial[i % len(self.seeds)] for i in range(self.members)])
        # stored as W^T [M, in, out], the layout baddbmm wants: neither the forward pass nor the
        # weight gradient then copies a transposed tensor (``weights`` gives the [M, out, in] views)
        self.weights_t = [w.transpose(1, 2).contiguous().to(self.device).requires_grad_() for w, _ in stacked]
        self.biases = [b.to(self.device).requires_grad_() for _, b in stacked]
        slopes = torch.tensor([0.0 if v.slope is None else v.slope for v in self.variants])
        learn = torch.tensor([v.learnable for v in self.variants]).repeat_interleave(len(self.seeds))
        self.fixed_slope = slopes.repeat_interleave(len(self.seeds)).reshape(-1, 1, 1).to(self.device)
        self.learnable = learn.reshape(-1, 1, 1).to(self.device)
        # one learnable slope per member and hidden layer; only PReLU members read it
        self.prelu = [self.fixed_slope.clone().requires_grad_() for _ in range(self.n_hidden)] \
            if bool(learn.any()) else []
        self.norms = [BatchedNorm(norm, self.members, w, self.device) for w in self.widths[1:-1]] \
            if norm != "none" else []
        self._reset_noise()

    def _reset_noise(self) -> None:
        """Fresh dropout and RReLU generators, one per training seed (see :mod:`~.layers`)."""
        self.dropout_gens = [noise_generator(s, DROPOUT_STREAM, self.device) for s in self.seeds] \
            if self.dropout > 0 else []
        self._seed_rows = self.seed_index().to(self.device)  # which seed's mask each member takes
        self.rrelu_gens = {g.lo: [noise_generator(s, RRELU_STREAM, self.device) for s in self.seeds]
                           for g in self.groups if g.variant is not None and g.variant.kind == "rrelu"}

    @property
    def members(self) -> int:
        return len(self.variants) * len(self.seeds)

    @property
    def weights(self) -> list[torch.Tensor]:
        """Per layer, the weights ``[M, out, in]`` as ``torch.nn.Linear`` holds them (views of ``weights_t``)."""
        return [w.transpose(1, 2) for w in self.weights_t]

    @property
    def n_hidden(self) -> int:
        return len(self.widths) - 2

    def member(self, m: int) -> tuple[Variant, int]:
        """``(variant, seed)`` of member ``m``."""
        return self.variants[m // len(self.seeds)], self.seeds[m % len(self.seeds)]

    def seed_index(self) -> torch.Tensor:
        """For each member, the index of its seed in ``seeds`` (``[M]``, long)."""
        return torch.arange(self.members) % len(self.seeds)

    def parameters(self) -> list[torch.Tensor]:
        """Every trained tensor: weights (as ``weights_t``) and biases layer by layer, then PReLU slopes, then norm affines."""
        out = [t for pair in zip(self.weights_t, self.biases) for t in pair]
        return out + list(self.prelu) + [p for n in self.norms for p in n.parameters()]

    def buffers(self) -> list[torch.Tensor]:
        """BatchNorm running statistics (trained state that is not a parameter)."""
        return [b for n in self.norms for b in n.buffers()]

    def slopes(self) -> list[torch.Tensor]:
        """Negative slope per hidden layer, ``[M, 1, 1]`` (differentiable for PReLU members).

        Smooth variants' entries are 0 and unused; RReLU members have their eval-mode slope.
        """
        if not self.prelu:
            return [self.fixed_slope] * self.n_hidden
        return [torch.where(self.learnable, p, self.fixed_slope) for p in self.prelu]

    def _activate(self, i: int, z: torch.Tensor, slope: torch.Tensor, training: bool) -> torch.Tensor:
        if len(self.groups) == 1 and self.groups[0].variant is None:
            return group_activation(self.groups[0], z, slope, None, self.runs)
        parts = []
        for g in self.groups:
            noise = None
            if training and g.lo in self.rrelu_gens:
                v = dict(g.variant.params)
                noise = torch.stack([rrelu_slopes(gen, z.shape[1:], v["lower"], v["upper"], self.device)
                                     for gen in self.rrelu_gens[g.lo]])
            parts.append(group_activation(g, z[g.slice], slope[g.slice] if g.piecewise else None, noise))
        return torch.cat(parts)

    def group_slope(self, group: Group, slope: torch.Tensor) -> torch.Tensor | None:
        """What a group's Collector is given for layer slope ``slope``: its slice, or None (smooth)."""
        return slope[group.slice] if group.piecewise else None

    def forward(self, x: torch.Tensor, collector: Collector | Sequence[Collector] | None = None,
                training: bool = False) -> tuple[torch.Tensor, Taps, list[list[PendingBackward]]]:
        """Outputs ``[M, B, K]`` for inputs ``[M, B, F]`` (or ``[B, F]``, shared by all members).

        Args:
            x: Inputs.
            collector: One :class:`Collector` per group of :attr:`groups` (or one
                Collector when there is one group). Each hidden layer's ``x``,
                ``z`` and slope (or activation function) are fed to it.
            training: Training mode: batch statistics (and their running update)
                for BatchNorm, dropout, random RReLU slopes. Eval mode otherwise.

        Returns:
            ``(out, taps, pending)``; with a collector, ``taps`` holds each hidden
            layer's ``(z, u)`` (for ``torch.autograd.grad``) and ``pending`` each
            layer's pending backward states, one per group; otherwise both are empty.
        """
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        collectors = None if collector is None else (
            [collector] if isinstance(collector, Collector) else list(collector))
        taps: Taps = []
        pending: list[list[PendingBackward]] = []
        h = x
        for i, slope in enumerate(self.slopes()):
            u = torch.baddbmm(self.biases[i].unsqueeze(1), h, self.weights_t[i])
            z = self.norms[i](u, training) if self.norms else u
            if collectors is not None:
                # detached: the Collector's accumulators must not hold a PReLU slope's graph
                pending.append([c.forward(i, h[g.slice], z[g.slice], None if s is None else s.detach(),
                                          fn=None if g.piecewise else g.variant.function())
                                for c, g in zip(collectors, self.groups)
                                for s in [self.group_slope(g, slope)]])
                taps.append((z, u if self.norm == "layer" else None))
            h = self._activate(i, z, slope, training)
            if training and self.dropout > 0:
                masks = torch.stack([dropout_mask(g, h.shape[1:], self.dropout, self.device)
                                     for g in self.dropout_gens])
                h = h * masks[self._seed_rows]
        out = torch.baddbmm(self.biases[-1].unsqueeze(1), h, self.weights_t[-1])
        return out, taps, pending

    def state(self) -> list[torch.Tensor]:
        """A detached copy of every parameter and buffer (for freezing and rolling back)."""
        return [p.detach().clone() for p in self.parameters() + self.buffers()]

    @torch.no_grad()
    def restore(self, state: list[torch.Tensor], members: torch.Tensor | None = None) -> None:
        """Copy ``state`` back into the parameters and buffers, for all members or a boolean mask ``[M]``."""
        for p, s in zip(self.parameters() + self.buffers(), state):
            if members is None:
                p.copy_(s)
            else:
                p[members] = s[members]

    def _mapped(self, take: Callable[[torch.Tensor], torch.Tensor]) -> Ensemble:
        """A shallow copy whose tensors are ``take(tensor)``: new tensors, never shared with this ensemble."""
        new = copy.copy(self)
        new.weights_t = [take(w.detach()).requires_grad_() for w in self.weights_t]
        new.biases = [take(b.detach()).requires_grad_() for b in self.biases]
        new.prelu = [take(p.detach()).requires_grad_() for p in self.prelu]
        new.fixed_slope, new.learnable = take(self.fixed_slope), take(self.learnable)
        new.norms = [n.mapped(take) for n in self.norms]
        return new

    def to(self, device: str | torch.device) -> Ensemble:
        """A copy of the ensemble on ``device`` (parameters copied, not shared; fresh noise generators)."""
        new = self._mapped(lambda t: t.to(device, copy=True))
        new.device = torch.device(device)
        new._reset_noise()
        return new

    def seed_members(self, lo: int, hi: int) -> torch.Tensor:
        """The member indices of seeds ``lo:hi`` in every variant, in the order of a sub-ensemble's members."""
        n = len(self.seeds)
        return torch.tensor([v * n + s for v in range(len(self.variants)) for s in range(lo, hi)])

    def subset(self, lo: int, hi: int) -> Ensemble:
        """The members of seeds ``lo:hi`` (every variant) as an ensemble of their own, parameters copied.

        Members are independent, so training the subset is training those
        members: :func:`~probe.engines.training.trainer.train` trains a large
        CPU ensemble by seed chunks whose tensors stay in cache, then copies them
        back with :meth:`absorb`.
        """
        idx = self.seed_members(lo, hi).to(self.device)
        new = self._mapped(lambda t: t[idx])  # indexing copies
        new.seeds, new.initial = self.seeds[lo:hi], self.initial[lo:hi]
        new.groups = make_groups(new.variants, len(new.seeds))
        new.runs = fixed_runs(new.variants, len(new.seeds))
        # the seeds' own noise generators, shared: a seed draws the same masks and slopes in any chunk
        new.dropout_gens = self.dropout_gens[lo:hi]
        new._seed_rows = new.seed_index().to(self.device)
        new.rrelu_gens = {ng.lo: self.rrelu_gens[og.lo][lo:hi]
                          for og, ng in zip(self.groups, new.groups) if og.lo in self.rrelu_gens}
        return new

    @torch.no_grad()
    def absorb(self, sub: Ensemble, lo: int, hi: int) -> None:
        """Copy the parameters and buffers of ``subset(lo, hi)``'s members back into this ensemble."""
        idx = self.seed_members(lo, hi).to(self.device)
        for mine, theirs in zip(self.parameters() + self.buffers(), sub.parameters() + sub.buffers()):
            mine[idx] = theirs

    def to_mlp(self, m: int) -> MLP:
        """Member ``m`` as a canonical :class:`probe.models.MLP` on the CPU (eval mode).

        A LayerNorm stays in the chain; a BatchNorm is folded into its Linear
        (eval mode, running statistics), noted in ``mlp.notes``; dropout is the
        identity in eval mode and is left out.
        """
        variant, _ = self.member(m)
        layer = [{"kind": "layer", "eps": NORM_EPS, "affine": True}] * self.n_hidden
        linears = []
        with torch.no_grad():
            for i, (w, b) in enumerate(zip(self.weights, self.biases)):
                w, b = w[m].detach().cpu(), b[m].detach().cpu()
                if self.norm == "batch" and i < self.n_hidden:
                    scale, shift = (t.cpu() for t in self.norms[i].folded(m))
                    w, b = w * scale[:, None], b * scale + shift
                linears.append(linear_from(w, b))
            mlp = MLP.build(self.widths, variant, norms=layer if self.norm == "layer" else None, linears=linears)
            if self.norm == "layer":
                for mod, n in zip(mlp.norms, self.norms):
                    mod.weight.copy_(n.weight[m].detach().cpu())
                    mod.bias.copy_(n.bias[m].detach().cpu())
            if variant.learnable:
                for act, p in zip(mlp.activations, self.prelu):
                    act.weight.copy_(p[m].detach().reshape(1).cpu())
        if self.norm == "batch":
            mlp.notes.append("BatchNorm folded into the preceding Linear (eval-mode running statistics)")
        return mlp.eval()
