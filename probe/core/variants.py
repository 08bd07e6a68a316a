"""The activation grammar shared by every probe command.

``relu`` | ``leaky`` (slope 0.01) | ``leaky:SLOPE`` | ``prelu`` (learned slope,
initialised at 0.25 like ``torch.nn.PReLU``). A leaky ReLU with slope 0 *is* a
ReLU, so every variant is described by one negative slope, which is what lets
ReLU and leaky members share a batched forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from probe.core.errors import VariantError

DEFAULT_LEAKY_SLOPE = 0.01
PRELU_INIT = 0.25
GRAMMAR = "relu | leaky | leaky:SLOPE (e.g. leaky:0.2) | prelu"


@dataclass(frozen=True)
class Variant:
    """A parsed activation spec.

    Attributes:
        spec: The canonical spelling (``relu``, ``leaky:0.01``, ``prelu``).
        slope: The negative slope (0 for ReLU; the initial slope for PReLU).
        learnable: True for PReLU, whose slope is a trained parameter.
    """

    spec: str
    slope: float
    learnable: bool = False

    @property
    def label(self) -> str:
        """Short name for tables: ``leaky`` for the default slope, else the spec."""
        if self.spec == f"leaky:{DEFAULT_LEAKY_SLOPE:g}":
            return "leaky"
        return self.spec

    def make_module(self, inplace: bool = False) -> nn.Module:
        """A fresh ``torch.nn`` activation module for this variant."""
        if self.learnable:
            return nn.PReLU(init=self.slope)
        if self.slope == 0.0:
            return nn.ReLU(inplace=inplace)
        return nn.LeakyReLU(self.slope, inplace=inplace)


def parse_variant(spec: str) -> Variant:
    """Parse an activation spec such as ``leaky:0.2``.

    Args:
        spec: A string in the variant grammar (case-insensitive).

    Returns:
        The parsed :class:`Variant`.

    Raises:
        VariantError: If the spec is not in the grammar or the slope is not a
            finite number in [0, 1).
    """
    text = spec.strip().lower()
    name, _, arg = text.partition(":")
    if name == "relu" and not arg:
        return Variant("relu", 0.0)
    if name == "prelu" and not arg:
        return Variant("prelu", PRELU_INIT, learnable=True)
    if name in ("leaky", "leaky_relu", "leakyrelu"):
        if not arg:
            slope = DEFAULT_LEAKY_SLOPE
        else:
            try:
                slope = float(arg)
            except ValueError:
                raise VariantError(
                    f"The slope in activation spec '{spec}' is not a number",
                    expected="leaky:SLOPE with SLOPE a number such as 0.01",
                    found=f"'{arg}'",
                    fix="write the slope as a decimal number, e.g. leaky:0.2",
                ) from None
        if not math.isfinite(slope) or not 0.0 <= slope < 1.0:
            raise VariantError(
                f"The slope in activation spec '{spec}' is out of range",
                expected="a negative slope in [0, 1)",
                found=f"{slope}",
                fix="use a slope such as 0.01, 0.1 or 0.3 (leaky:0 is plain relu)",
            )
        return Variant(f"leaky:{slope:g}", slope)
    raise VariantError(
        f"Unknown activation spec '{spec}'",
        expected=GRAMMAR,
        found=f"'{spec}'",
        fix="pick one of relu, leaky, leaky:0.2 or prelu",
    )


def leaky_relu(z: torch.Tensor, slope: torch.Tensor | float) -> torch.Tensor:
    """The leaky family: ``z`` where ``z > 0``, ``slope * z`` elsewhere (ReLU at slope 0).

    The one implementation of the activation, used by the diagnostics and the
    training ensemble alike. Written as ``max(z, 0) + slope * min(z, 0)``: the
    same values (bit for bit) and gradients as ``torch.where(z > 0, z, slope * z)``
    with a per-member or per-unit slope, in cheaper elementwise passes.
    """
    return torch.relu(z) + slope * z.clamp(max=0)


def variant_of_module(module: nn.Module) -> Variant:
    """The variant that a ``torch.nn`` activation module computes.

    For a PReLU the slope is the mean of its learned slopes.
    """
    if isinstance(module, nn.PReLU):
        return Variant("prelu", float(module.weight.detach().mean()), learnable=True)
    if isinstance(module, nn.LeakyReLU):
        return Variant(f"leaky:{module.negative_slope:g}", float(module.negative_slope))
    if isinstance(module, nn.ReLU):
        return Variant("relu", 0.0)
    raise VariantError(
        f"Unsupported activation {type(module).__name__}",
        expected="ReLU, LeakyReLU or PReLU",
        found=type(module).__name__,
        fix="probe analyses ReLU-family MLPs only",
    )


def slope_tensor(module: nn.Module) -> torch.Tensor:
    """The negative slope of an activation module: a scalar, or one per unit (PReLU)."""
    if isinstance(module, nn.PReLU):
        return module.weight.detach().clone()
    return torch.tensor(variant_of_module(module).slope)
