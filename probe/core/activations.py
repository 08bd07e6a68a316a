"""The smooth activations next to the ReLU family: ELU, CELU, SELU, GELU, SiLU, Mish, Softplus, Tanh.

Each has a negative region (``z <= 0``) with its own output and gradient, so
the question "how much passes the negative side?" applies to all of them. This
module is the one table of their names, parameters, ``torch.nn`` modules and
elementwise functions; :mod:`probe.core.variants` parses the grammar into it.

Derivatives are never written by hand: :func:`value_and_derivative` asks
autograd for ``f'(z)`` of the very function that computes ``f(z)``, so the two
cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Smooth:
    """One smooth activation kind.

    Attributes:
        name: Spec name (``elu``, ``gelu``, ...).
        module: The ``torch.nn`` class.
        params: Parameter names with their defaults, in spec order (``elu:ALPHA``).
        fn: ``fn(z, **params)``, elementwise.
    """

    name: str
    module: type[nn.Module]
    params: tuple[tuple[str, float], ...]
    fn: Callable[..., torch.Tensor]

    def make_module(self, values: dict[str, float]) -> nn.Module:
        if self.name == "gelu" and values.get("tanh"):
            return nn.GELU(approximate="tanh")
        kwargs = {k: values[k] for k, _ in self.params if k != "tanh"}
        return self.module(**kwargs)


SMOOTH: dict[str, Smooth] = {s.name: s for s in (
    Smooth("elu", nn.ELU, (("alpha", 1.0),), lambda z, alpha: F.elu(z, alpha)),
    Smooth("celu", nn.CELU, (("alpha", 1.0),), lambda z, alpha: F.celu(z, alpha)),
    Smooth("selu", nn.SELU, (), lambda z: F.selu(z)),
    Smooth("gelu", nn.GELU, (("tanh", 0.0),),
           lambda z, tanh: F.gelu(z, approximate="tanh" if tanh else "none")),
    Smooth("silu", nn.SiLU, (), lambda z: F.silu(z)),
    Smooth("mish", nn.Mish, (), lambda z: F.mish(z)),
    Smooth("softplus", nn.Softplus, (("beta", 1.0), ("threshold", 20.0)),
           lambda z, beta, threshold: F.softplus(z, beta, threshold)),
    Smooth("tanh", nn.Tanh, (), lambda z: torch.tanh(z)),
)}

#: Spellings users write for the same kinds.
ALIASES = {"swish": "silu", "gelu_tanh": "gelu:tanh"}


def smooth_of_module(module: nn.Module) -> tuple[str, dict[str, float]] | None:
    """``(name, params)`` of a smooth activation module, or None when it is not one."""
    for smooth in SMOOTH.values():
        if type(module) is smooth.module:
            if smooth.name == "gelu":
                return "gelu", {"tanh": 1.0 if getattr(module, "approximate", "none") == "tanh" else 0.0}
            return smooth.name, {k: float(getattr(module, k)) for k, _ in smooth.params}
    return None


def value_and_derivative(fn: Callable[[torch.Tensor], torch.Tensor],
                         z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(z), f'(z))`` of an elementwise ``fn``, the derivative from autograd.

    Runs on a detached copy, so it never touches the caller's graph, and works
    inside ``torch.no_grad()``.
    """
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        h = fn(zz)
        (d,) = torch.autograd.grad(h.sum(), zz)
    return h.detach(), d
