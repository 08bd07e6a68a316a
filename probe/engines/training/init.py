"""Initial parameters: one seed, one network, identical for every variant.

Schemes (``fan_in`` = inputs of the layer):

* ``default``: PyTorch's ``nn.Linear`` initialisation, weight and bias both
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``kaiming_uniform_(a=sqrt(5))``).
* ``he_normal``: He et al. 2015, "Delving Deep into Rectifiers": weight
  ``N(0, 2/fan_in)``, bias 0.
* ``rai``: the randomized asymmetric initialization of Lu, Shin, Su and
  Karniadakis, "Dying ReLU and Initialization: Theory and Numerical Examples"
  (arXiv:1903.06733; Commun. Comput. Phys. 28(5), 2020). Each unit ``j`` of a
  layer has the augmented row ``V_j = [W_j, b_j]`` of ``fan_in + 1`` entries;
  one index ``k_j`` is drawn uniformly from them and ``V_{j,k_j}`` is drawn
  from the asymmetric, positive ``P = Beta(2, 1)`` (density ``2x`` on [0, 1],
  sampled as ``sqrt(U)``); every other entry is ``N(0, sigma^2)`` with
  ``sigma = 0.6007 / sqrt(fan_in)``, the scale the authors use with
  ``Beta(2, 1)`` (chosen in the paper from a second-moment analysis so that
  signals neither vanish nor explode with depth). The one positive entry per
  unit is what makes deep narrow ReLU networks far less often born dead.

All schemes apply to every Linear layer (hidden and output). Sampling uses an
explicit ``torch.Generator`` on the CPU, so the parameters of a seed do not
depend on the device or on the variants being compared.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

RAI_SIGMA = 0.6007

Params = list[tuple[torch.Tensor, torch.Tensor]]


def _default(fan_in: int, fan_out: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    bound = 1.0 / math.sqrt(fan_in)
    w = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound
    b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
    return w, b


def _he_normal(fan_in: int, fan_out: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(fan_out, fan_in, generator=gen) * math.sqrt(2.0 / fan_in), torch.zeros(fan_out)


def _rai(fan_in: int, fan_out: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.randn(fan_out, fan_in + 1, generator=gen) * (RAI_SIGMA / math.sqrt(fan_in))
    k = torch.randint(0, fan_in + 1, (fan_out,), generator=gen)
    beta21 = torch.rand(fan_out, generator=gen).sqrt()  # inverse CDF of Beta(2, 1): F(x) = x^2
    v[torch.arange(fan_out), k] = beta21
    return v[:, :fan_in].contiguous(), v[:, fan_in].contiguous()


#: scheme name -> (function, one-line description)
INITS = {
    "default": (_default, "PyTorch's nn.Linear default: U(+-1/sqrt(fan_in)) for weights and biases"),
    "he_normal": (_he_normal, "He et al. 2015: N(0, 2/fan_in) weights, zero biases"),
    "rai": (_rai, "randomized asymmetric initialization (Lu et al. 2019, arXiv:1903.06733)"),
}


def init_params(widths: Sequence[int], scheme: str, seed: int) -> Params:
    """Float32 ``(weight [out, in], bias [out])`` per Linear layer of one network.

    Args:
        widths: ``[in_features, hidden..., out_features]``.
        scheme: A key of :data:`INITS`.
        seed: Seeds a fresh ``torch.Generator``; same seed, same parameters.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {sorted(INITS)}")
    fn = INITS[scheme][0]
    gen = torch.Generator().manual_seed(int(seed))
    return [tuple(t.float() for t in fn(widths[i], widths[i + 1], gen)) for i in range(len(widths) - 1)]


def stack_params(per_member: Sequence[Params]) -> Params:
    """Stack members' parameters along a leading member dimension: ``[M, out, in]``, ``[M, out]``."""
    return [(torch.stack([p[i][0] for p in per_member]), torch.stack([p[i][1] for p in per_member]))
            for i in range(len(per_member[0]))]


def init_digest(params: Params) -> str:
    """First 16 hex digits of sha256 over the parameters' float32 bytes, layer by layer (W, then b)."""
    h = hashlib.sha256()
    for w, b in params:
        for t in (w, b):
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
