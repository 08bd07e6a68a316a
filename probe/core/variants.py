"""The activation grammar shared by every probe command.

The ReLU family, each described by one negative slope (which is what lets
ReLU and leaky members share a batched forward pass):
``relu`` | ``leaky`` (slope 0.01) | ``leaky:SLOPE`` | ``prelu`` (learned slope,
initialised at 0.25 like ``torch.nn.PReLU``) | ``rrelu[:LOWER:UPPER]`` (random
slope in training; in eval mode a leaky ReLU of slope ``(LOWER + UPPER) / 2``).

The smooth activations (:mod:`probe.core.activations`), parameters optional:
``elu[:ALPHA]`` | ``celu[:ALPHA]`` | ``selu`` | ``gelu`` | ``gelu:tanh`` |
``silu`` (or ``swish``) | ``mish`` | ``softplus[:BETA[:THRESHOLD]]`` | ``tanh``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from probe.core.activations import ALIASES, SMOOTH, smooth_of_module
from probe.core.errors import VariantError

DEFAULT_LEAKY_SLOPE = 0.01
PRELU_INIT = 0.25
RRELU_DEFAULT = (1.0 / 8.0, 1.0 / 3.0)
FAMILY = "relu | leaky | leaky:SLOPE (e.g. leaky:0.2) | prelu | rrelu[:LOWER:UPPER]"
GRAMMAR = FAMILY + " | elu[:ALPHA] | celu[:ALPHA] | selu | gelu | gelu:tanh | silu | mish | softplus[:BETA] | tanh"


@dataclass(frozen=True)
class Variant:
    """A parsed activation spec.

    Attributes:
        spec: The canonical spelling (``relu``, ``leaky:0.01``, ``prelu``, ``gelu:tanh``, ``elu:0.5``).
        slope: The nominal negative slope for the ReLU family (0 for ReLU; the
            initial slope for PReLU; ``(l + u) / 2`` for RReLU); None for smooth kinds.
        learnable: True for PReLU, whose slope is a trained parameter.
        kind: ``relu``, ``leaky``, ``prelu``, ``rrelu`` or a smooth kind (``elu``, ``gelu``, ...).
        params: The kind's parameters as ``(name, value)`` pairs.
    """

    spec: str
    slope: float | None
    learnable: bool = False
    kind: str = "leaky"
    params: tuple[tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        """Short name for tables: ``leaky`` for the default slope, else the spec."""
        if self.spec == f"leaky:{DEFAULT_LEAKY_SLOPE:g}":
            return "leaky"
        return self.spec

    @property
    def piecewise(self) -> bool:
        """True for the ReLU family: identity above 0, a (learned or fixed) slope below."""
        return self.slope is not None

    def make_module(self, inplace: bool = False) -> nn.Module:
        """A fresh ``torch.nn`` activation module for this variant."""
        values = dict(self.params)
        if self.kind in SMOOTH:
            return SMOOTH[self.kind].make_module(values)
        if self.learnable:
            return nn.PReLU(init=self.slope)
        if self.kind == "rrelu":
            return nn.RReLU(values["lower"], values["upper"], inplace=inplace)
        if self.slope == 0.0:
            return nn.ReLU(inplace=inplace)
        return nn.LeakyReLU(self.slope, inplace=inplace)

    def function(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The activation as an elementwise function of ``z`` (eval mode; PReLU at its nominal slope)."""
        if self.kind in SMOOTH:
            fn, values = SMOOTH[self.kind].fn, dict(self.params)
            return lambda z: fn(z, **values)
        slope = self.slope
        return lambda z: leaky_relu(z, slope)


def _numbers(spec: str, name: str, args: list[str], names: tuple[str, ...]) -> list[float]:
    if len(args) > len(names):
        raise VariantError(f"Too many parameters in activation spec '{spec}'",
                           expected=f"{name}" + "".join(f"[:{n.upper()}]" for n in names),
                           found=f"{len(args)} parameters", fix=f"write e.g. '{name}'")
    out = []
    for arg, pname in zip(args, names):
        try:
            value = float(arg)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise VariantError(f"The {pname} in activation spec '{spec}' is not a finite number",
                               expected=f"{name}:{pname.upper()} with a number", found=f"'{arg}'",
                               fix=f"write the {pname} as a decimal number, e.g. {name}:0.5")
        out.append(value)
    return out


def _smooth(spec: str, name: str, args: list[str]) -> Variant:
    smooth = SMOOTH[name]
    if name == "gelu":
        if args not in ([], ["tanh"]):
            raise VariantError(f"Unknown GELU form in '{spec}'", expected="gelu or gelu:tanh",
                               found=f"'{':'.join(args)}'", fix="write gelu (exact) or gelu:tanh")
        return Variant("gelu:tanh" if args else "gelu", None, kind="gelu",
                       params=(("tanh", 1.0 if args else 0.0),))
    names = tuple(n for n, _ in smooth.params)
    given = _numbers(spec, name, args, names)
    values = [*given, *(d for _, d in smooth.params[len(given):])]
    if name in ("elu", "celu") and values[0] <= 0 or name == "softplus" and values[0] <= 0:
        raise VariantError(f"The parameter in activation spec '{spec}' must be positive",
                           expected=f"{name}:{names[0].upper()} > 0", found=f"{values[0]:g}",
                           fix=f"write e.g. {name}:1")
    params = tuple(zip(names, values))
    defaults = tuple(d for _, d in smooth.params)
    shown = [f"{v:g}" for v in values]
    while shown and float(shown[-1]) == defaults[len(shown) - 1]:
        shown.pop()  # the canonical spelling leaves default parameters out
    return Variant(":".join([name, *shown]), None, kind=name, params=params)


def parse_variant(spec: str) -> Variant:
    """Parse an activation spec such as ``leaky:0.2`` or ``gelu:tanh``.

    Args:
        spec: A string in the activation grammar (case-insensitive).

    Returns:
        The parsed :class:`Variant`.

    Raises:
        VariantError: If the spec is not in the grammar or a parameter is out of range.
    """
    text = spec.strip().lower()
    text = ALIASES.get(text, text)
    name, *args = text.split(":")
    name = ALIASES.get(name, name)
    if name == "relu" and not args:
        return Variant("relu", 0.0, kind="relu")
    if name == "prelu" and not args:
        return Variant("prelu", PRELU_INIT, learnable=True, kind="prelu")
    if name == "rrelu":
        lower, upper = _numbers(spec, "rrelu", args, ("lower", "upper")) + list(RRELU_DEFAULT[len(args):])
        if not 0.0 <= lower <= upper < 1.0:
            raise VariantError(f"The slopes in activation spec '{spec}' are out of range",
                               expected="rrelu:LOWER:UPPER with 0 <= LOWER <= UPPER < 1",
                               found=f"lower {lower:g}, upper {upper:g}", fix="write e.g. rrelu:0.1:0.3")
        text = "rrelu" if (lower, upper) == RRELU_DEFAULT else f"rrelu:{lower:g}:{upper:g}"
        return Variant(text, (lower + upper) / 2, kind="rrelu", params=(("lower", lower), ("upper", upper)))
    if name in SMOOTH:
        return _smooth(spec, name, args)
    if name in ("leaky", "leaky_relu", "leakyrelu") and len(args) <= 1:
        if not args:
            slope = DEFAULT_LEAKY_SLOPE
        else:
            try:
                slope = float(args[0])
            except ValueError:
                raise VariantError(
                    f"The slope in activation spec '{spec}' is not a number",
                    expected="leaky:SLOPE with SLOPE a number such as 0.01",
                    found=f"'{args[0]}'",
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
        fix="pick one of relu, leaky, leaky:0.2, prelu, elu, gelu, silu or tanh",
    )


_PRELU_KERNEL = getattr(torch, "_prelu_kernel", None)  # torch.prelu's broadcasting kernel (torch >= 2.0)


def leaky_relu(z: torch.Tensor, slope: torch.Tensor | float) -> torch.Tensor:
    """The leaky family: ``z`` where ``z > 0``, ``slope * z`` elsewhere (ReLU at slope 0).

    The one implementation of the activation, used by the diagnostics and the
    training ensemble alike, with a scalar slope or a tensor of slopes that
    broadcasts against ``z`` (per member ``[M, 1, 1]``, per unit ``[U]``,
    learnable or not). Both branches are single fused kernels forward and
    backward (``torch.where`` and a ``relu + slope * clamp`` sum cost four to
    five elementwise passes), with the values and gradients of
    ``torch.where(z > 0, z, slope * z)`` bit for bit; at ``z == 0`` the
    gradient is ``slope * g``.
    """
    if not isinstance(slope, torch.Tensor):
        return F.leaky_relu(z, float(slope))
    if slope.dtype != z.dtype:  # the kernel does not promote: take the slope to z's precision
        slope = slope.to(z.dtype)
    if _PRELU_KERNEL is None:  # a torch without the broadcasting kernel: the same values, in more passes
        return torch.relu(z) + slope * z.clamp(max=0)
    return _PRELU_KERNEL(z, slope)  # broadcasting PReLU; autograd gives the slope its gradient too


class _LeakyRuns(torch.autograd.Function):
    """Fixed slopes per contiguous run of the leading dimension, one fused leaky-ReLU kernel per run."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, runs: tuple[tuple[int, int, float], ...]) -> torch.Tensor:  # noqa: D102
        out = torch.empty_like(z)
        for lo, hi, slope in runs:
            torch._C._nn.leaky_relu(z[lo:hi], slope, out=out[lo:hi])
        ctx.save_for_backward(z)
        ctx.runs = runs
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        (z,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: out= kernels are not differentiable, these are
            return torch.cat([torch.ops.aten.leaky_relu_backward(grad[lo:hi], z[lo:hi], slope, False)
                              for lo, hi, slope in ctx.runs]), None
        grad, out = grad.contiguous(), torch.empty_like(z)
        for lo, hi, slope in ctx.runs:
            torch.ops.aten.leaky_relu_backward.grad_input(grad[lo:hi], z[lo:hi], slope, False,
                                                          grad_input=out[lo:hi])
        return out, None


def leaky_relu_runs(z: torch.Tensor, runs: Sequence[tuple[int, int, float]]) -> torch.Tensor:
    """:func:`leaky_relu` with a fixed slope per run ``(lo, hi, slope)`` of ``z``'s leading dimension.

    The training ensemble's hot path: members of one variant are one
    contiguous run, so ReLU and leaky members share one forward pass at the
    cost of one elementwise pass each way (a broadcast slope tensor costs
    several times more, its backward a full-size slope gradient). ``z`` must be contiguous and the runs must cover its leading
    dimension; values and gradients are those of :func:`leaky_relu`, bit for bit.
    """
    return _LeakyRuns.apply(z.contiguous(), tuple((int(lo), int(hi), float(s)) for lo, hi, s in runs))


def variant_of_module(module: nn.Module) -> Variant:
    """The variant that a ``torch.nn`` activation module computes (in eval mode).

    For a PReLU the slope is the mean of its learned slopes: use
    :func:`slope_tensor` for the slopes themselves.
    """
    if isinstance(module, nn.PReLU):
        return Variant("prelu", float(module.weight.detach().mean()), learnable=True, kind="prelu")
    if isinstance(module, nn.RReLU):
        spec = "rrelu" if (module.lower, module.upper) == RRELU_DEFAULT else f"rrelu:{module.lower:g}:{module.upper:g}"
        return Variant(spec, (module.lower + module.upper) / 2, kind="rrelu",
                       params=(("lower", float(module.lower)), ("upper", float(module.upper))))
    if isinstance(module, nn.LeakyReLU):
        return Variant(f"leaky:{module.negative_slope:g}", float(module.negative_slope))
    if isinstance(module, nn.ReLU):
        return Variant("relu", 0.0, kind="relu")
    smooth = smooth_of_module(module)
    if smooth is not None:
        name, values = smooth
        args = [] if name != "gelu" else (["tanh"] if values["tanh"] else [])
        if name != "gelu":
            args = [f"{values[k]!r}" for k, _ in SMOOTH[name].params]
        return _smooth(name, name, args)
    raise VariantError(
        f"Unsupported activation {type(module).__name__}",
        expected="ReLU, LeakyReLU, PReLU, RReLU, ELU, CELU, SELU, GELU, SiLU, Mish, Softplus or Tanh",
        found=type(module).__name__,
        fix="probe analyses MLPs with one of those activations",
    )


def slope_tensor(module: nn.Module) -> torch.Tensor | None:
    """The negative slope of a ReLU-family module: a scalar, or one per unit (PReLU); None for smooth kinds."""
    if isinstance(module, nn.PReLU):
        return module.weight.detach().clone()
    slope = variant_of_module(module).slope
    return None if slope is None else torch.tensor(slope)
