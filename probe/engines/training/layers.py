"""Batched per-member layers of the ensemble: activation groups, norms, dropout and RReLU noise.

Every tensor has a leading member dimension ``[M, batch, units]``.

* **Activation groups.** Members are laid out variant-major, so the members of
  one variant are one contiguous slice. When every variant is ``relu``,
  ``leaky[:S]`` or ``prelu``, one group covers all members and the activation
  is one :func:`~probe.core.variants.leaky_relu` with a per-member slope (the
  fast path). Otherwise each variant is its own group and applies its own
  activation to its slice (:class:`Group`).
* **Norms** (:class:`BatchedNorm`): ``batch`` normalises each unit over the
  member's own minibatch in training (biased variance) and keeps running
  statistics per member (momentum 0.1, unbiased variance, as
  ``torch.nn.BatchNorm1d``); eval mode uses the running statistics. ``layer``
  normalises each sample over the member's units (``torch.nn.LayerNorm``).
  Both have a per-member affine weight (1) and bias (0), eps ``1e-5``.
* **Randomness.** Dropout masks and RReLU slopes come from generators seeded
  per training seed (:func:`noise_generator`): the members of one seed draw the
  same dropout masks whatever their variant, and a member's draws do not depend
  on the other members. :func:`dropout_mask` and :func:`rrelu_slopes` are the
  one definition of each draw (a plain ``nn.Sequential`` reference uses them to
  reproduce a member exactly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from probe.core.variants import Variant, leaky_relu, leaky_relu_runs

FAST_KINDS = ("relu", "leaky", "prelu")
NORM_KINDS = ("none", "batch", "layer")
NORM_EPS = 1e-5
BN_MOMENTUM = 0.1
DROPOUT_STREAM = 2**40 + 1  # seed streams of the noise generators (epoch orders use 1..epochs)
RRELU_STREAM = 2**40 + 2


def mix_seed(seed: int, stream: int) -> int:
    """A 63-bit seed derived from ``(seed, stream)`` (splitmix64 finaliser)."""
    z = (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return (z ^ (z >> 31)) % 2**63


def noise_generator(seed: int, stream: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of one training seed's dropout (``DROPOUT_STREAM``) or RReLU (``RRELU_STREAM``) draws."""
    return torch.Generator(device=device).manual_seed(mix_seed(seed, stream))


def dropout_mask(gen: torch.Generator, shape: tuple[int, ...], p: float,
                 device: str | torch.device = "cpu") -> torch.Tensor:
    """Inverted-dropout multipliers: ``1 / (1 - p)`` where ``U[0, 1) >= p``, else 0."""
    keep = torch.rand(shape, generator=gen, device=device) >= p
    return keep.float() / (1.0 - p)


def rrelu_slopes(gen: torch.Generator, shape: tuple[int, ...], lower: float, upper: float,
                 device: str | torch.device = "cpu") -> torch.Tensor:
    """Per-entry RReLU slopes ``U[lower, upper)`` (``torch.nn.RReLU`` in training mode draws the same law)."""
    return lower + (upper - lower) * torch.rand(shape, generator=gen, device=device)


@dataclass(frozen=True)
class Group:
    """Members ``lo:hi`` that share one activation.

    Attributes:
        variant: Their variant, or None for the fast ReLU-family group (several
            variants, one per-member slope).
        lo, hi: The member slice.
    """

    variant: Variant | None
    lo: int
    hi: int

    @property
    def slice(self) -> slice:
        return slice(self.lo, self.hi)

    @property
    def piecewise(self) -> bool:
        """Whether the activation is fed to the diagnostics as a slope (else as a function)."""
        return self.variant is None or self.variant.piecewise


def make_groups(variants: list[Variant], n_seeds: int) -> list[Group]:
    """One group for all members when every variant is relu/leaky/prelu, else one per variant."""
    if all(v.kind in FAST_KINDS for v in variants):
        return [Group(None, 0, len(variants) * n_seeds)]
    return [Group(v, i * n_seeds, (i + 1) * n_seeds) for i, v in enumerate(variants)]


def fixed_runs(variants: list[Variant], n_seeds: int) -> tuple[tuple[int, int, float], ...] | None:
    """The fast group's slope runs ``(lo, hi, slope)``, one per variant (merged when equal), or None.

    None when a variant is learnable (PReLU) or outside the fast kinds: the
    slope is then a tensor (:func:`~probe.core.variants.leaky_relu`).
    """
    if not all(v.kind in FAST_KINDS and not v.learnable for v in variants):
        return None
    runs: list[tuple[int, int, float]] = []
    for i, v in enumerate(variants):
        if runs and runs[-1][2] == v.slope:
            runs[-1] = (runs[-1][0], (i + 1) * n_seeds, v.slope)
        else:
            runs.append((i * n_seeds, (i + 1) * n_seeds, float(v.slope)))
    return tuple(runs)


def group_activation(group: Group, z: torch.Tensor, slope: torch.Tensor | None,
                     noise: torch.Tensor | None,
                     runs: tuple[tuple[int, int, float], ...] | None = None) -> torch.Tensor:
    """The group's activation of its slice ``z``.

    Args:
        group: The group.
        z: Pre-activations of the group's members.
        slope: The group's per-member slope ``[n, 1, 1]`` (ReLU family), else None.
        noise: RReLU slopes per entry in training mode, else None (eval: the nominal slope).
        runs: Fixed slopes by member run (:func:`fixed_runs`): the fast kernel, used before ``slope``.
    """
    if runs is not None:
        return leaky_relu_runs(z, runs)
    if noise is not None:
        return leaky_relu(z, noise)
    if slope is not None:
        return leaky_relu(z, slope)
    return group.variant.function()(z)


class BatchedNorm:
    """A per-member BatchNorm or LayerNorm over ``units`` (see the module docstring).

    Args:
        kind: ``batch`` or ``layer``.
        members: M. width: Units.
        device: Where the tensors live.
    """

    def __init__(self, kind: str, members: int, width: int, device: torch.device) -> None:
        self.kind = kind
        self.weight = torch.ones(members, width, device=device, requires_grad=True)
        self.bias = torch.zeros(members, width, device=device, requires_grad=True)
        self.running_mean = torch.zeros(members, width, device=device) if kind == "batch" else None
        self.running_var = torch.ones(members, width, device=device) if kind == "batch" else None

    def parameters(self) -> list[torch.Tensor]:
        return [self.weight, self.bias]

    def buffers(self) -> list[torch.Tensor]:
        return [self.running_mean, self.running_var] if self.kind == "batch" else []

    def __call__(self, u: torch.Tensor, training: bool) -> torch.Tensor:
        """Normalise ``u`` ``[M, B, U]``; in training, BatchNorm also updates its running statistics."""
        w, b = self.weight.unsqueeze(1), self.bias.unsqueeze(1)
        if self.kind == "layer":
            return F.layer_norm(u, u.shape[-1:], eps=NORM_EPS) * w + b
        if training:
            mean = u.mean(1, keepdim=True)
            var = u.var(1, unbiased=False, keepdim=True)
            with torch.no_grad():
                n = u.shape[1]
                unbiased = var.squeeze(1) * (n / max(n - 1, 1))
                self.running_mean.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * mean.squeeze(1))
                self.running_var.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * unbiased)
        else:
            mean, var = self.running_mean.unsqueeze(1), self.running_var.unsqueeze(1)
        return (u - mean) * torch.rsqrt(var + NORM_EPS) * w + b

    def mapped(self, take: Callable[[torch.Tensor], torch.Tensor]) -> BatchedNorm:
        """A copy whose tensors are ``take(tensor)`` (new tensors: moved to a device, or some members' rows)."""
        new = BatchedNorm.__new__(BatchedNorm)
        new.kind = self.kind
        new.weight = take(self.weight.detach()).requires_grad_()
        new.bias = take(self.bias.detach()).requires_grad_()
        new.running_mean = None if self.running_mean is None else take(self.running_mean)
        new.running_var = None if self.running_var is None else take(self.running_var)
        return new

    def folded(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """BatchNorm ``m`` in eval mode as ``z = scale * u + shift``: ``(scale [U], shift [U])``."""
        scale = self.weight[m].detach() * torch.rsqrt(self.running_var[m] + NORM_EPS)
        return scale, self.bias[m].detach() - self.running_mean[m] * scale
