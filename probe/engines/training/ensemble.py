"""Many MLPs as one set of batched tensors with a leading member dimension.

Member ``m`` has weights ``W_l[m]`` of shape ``[out, in]`` and biases
``b_l[m]``; a layer is ``z = b + x W^T`` for all members at once
(``torch.baddbmm``) and the activation is :func:`probe.core.variants.leaky_relu` with a
per-member slope ``[M, 1, 1]``. Slope 0 is ReLU, a constant slope is a leaky
ReLU, and a PReLU member has a learnable slope per hidden layer (one scalar, as
``torch.nn.PReLU()``), initialised at 0.25. Members never interact: the
training objective is the sum of member losses, so each member's gradient is
its own loss's gradient and an element-wise optimiser (Adam, SGD) over the
batched tensors is exactly per-member Adam/SGD.

Members are laid out variant-major: ``m = variant_index * n_seeds + seed_index``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from probe.diagnostics import Collector
from probe.diagnostics.collector import PendingBackward
from probe.core.variants import leaky_relu
from probe.models.mlp import MLP
from probe.engines.training.init import Params, init_params, stack_params
from probe.core.variants import Variant


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
    """

    def __init__(self, widths: Sequence[int], variants: Sequence[Variant], seeds: Sequence[int],
                 init: str, device: str | torch.device = "cpu") -> None:
        self.widths = list(widths)
        self.variants = list(variants)
        self.seeds = list(seeds)
        self.device = torch.device(device)
        self.initial: list[Params] = [init_params(widths, init, s) for s in self.seeds]
        stacked = stack_params([self.initial[i % len(self.seeds)] for i in range(self.members)])
        self.weights = [w.to(self.device).requires_grad_() for w, _ in stacked]
        self.biases = [b.to(self.device).requires_grad_() for _, b in stacked]
        slopes = torch.tensor([v.slope for v in self.variants]).repeat_interleave(len(self.seeds))
        learn = torch.tensor([v.learnable for v in self.variants]).repeat_interleave(len(self.seeds))
        self.fixed_slope = slopes.reshape(-1, 1, 1).to(self.device)
        self.learnable = learn.reshape(-1, 1, 1).to(self.device)
        # one learnable slope per member and hidden layer; only PReLU members read it
        self.prelu = [self.fixed_slope.clone().requires_grad_() for _ in range(self.n_hidden)] \
            if bool(learn.any()) else []

    @property
    def members(self) -> int:
        return len(self.variants) * len(self.seeds)

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
        """Every trained tensor: weights and biases layer by layer, then PReLU slopes."""
        out = [t for pair in zip(self.weights, self.biases) for t in pair]
        return out + list(self.prelu)

    def slopes(self) -> list[torch.Tensor]:
        """Negative slope per hidden layer, ``[M, 1, 1]`` (differentiable for PReLU members)."""
        if not self.prelu:
            return [self.fixed_slope] * self.n_hidden
        return [torch.where(self.learnable, p, self.fixed_slope) for p in self.prelu]

    def forward(self, x: torch.Tensor, collector: Collector | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[PendingBackward]]:
        """Outputs ``[M, B, K]`` for inputs ``[M, B, F]`` (or ``[B, F]``, shared by all members).

        With a ``collector``, each hidden layer's ``x``, ``z`` and slope are fed to
        it, and the pre-activations (for ``torch.autograd.grad``) and pending
        backward states are returned alongside; otherwise both lists are empty.
        """
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        zs: list[torch.Tensor] = []
        pending: list[PendingBackward] = []
        h = x
        for i, slope in enumerate(self.slopes()):
            z = torch.baddbmm(self.biases[i].unsqueeze(1), h, self.weights[i].transpose(1, 2))
            if collector is not None:
                # detached: the Collector's accumulators must not hold a PReLU slope's graph
                pending.append(collector.forward(i, h, z, slope.detach()))
                zs.append(z)
            h = leaky_relu(z, slope)
        out = torch.baddbmm(self.biases[-1].unsqueeze(1), h, self.weights[-1].transpose(1, 2))
        return out, zs, pending

    def state(self) -> list[torch.Tensor]:
        """A detached copy of every parameter (for freezing and rolling back)."""
        return [p.detach().clone() for p in self.parameters()]

    @torch.no_grad()
    def restore(self, state: list[torch.Tensor], members: torch.Tensor | None = None) -> None:
        """Copy ``state`` back into the parameters, for all members or a boolean mask ``[M]``."""
        for p, s in zip(self.parameters(), state):
            if members is None:
                p.copy_(s)
            else:
                p[members] = s[members]

    def to(self, device: str | torch.device) -> Ensemble:
        """A copy of the ensemble on ``device`` (parameters copied, not shared)."""
        new = copy.copy(self)
        new.device = torch.device(device)
        new.weights = [w.detach().to(device, copy=True).requires_grad_() for w in self.weights]
        new.biases = [b.detach().to(device, copy=True).requires_grad_() for b in self.biases]
        new.prelu = [p.detach().to(device, copy=True).requires_grad_() for p in self.prelu]
        new.fixed_slope, new.learnable = self.fixed_slope.to(device), self.learnable.to(device)
        return new

    def to_mlp(self, m: int) -> MLP:
        """Member ``m`` as a canonical :class:`probe.models.MLP` on the CPU (eval mode)."""
        variant, _ = self.member(m)
        mlp = MLP.build(self.widths, variant)
        with torch.no_grad():
            for lin, w, b in zip(mlp.linears, self.weights, self.biases):
                lin.weight.copy_(w[m].detach().cpu())
                lin.bias.copy_(b[m].detach().cpu())
            if variant.learnable:
                for act, p in zip(mlp.activations, self.prelu):
                    act.weight.copy_(p[m].detach().reshape(1).cpu())
        return mlp.eval()
