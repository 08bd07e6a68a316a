"""Read a module sequence as hidden blocks ``Linear -> [norm] -> activation``, folding BatchNorms.

Accepted per hidden layer: ``Linear -> [BatchNorm1d | LayerNorm | RMSNorm] ->
activation -> [Dropout] -> [BatchNorm1d]``, then an output ``Linear`` and an
optional final reshape of a one-output model to ``[N]``.

A BatchNorm1d in eval mode is an affine map per unit,
``bn(u) = s * (u - mean) + beta`` with ``s = gamma / sqrt(var + eps)``, so it
folds exactly into a Linear:

* right after a Linear (``W, b``): ``W' = diag(s) W``, ``b' = s * (b - mean) + beta``;
* after an activation, or before the first Linear, into the *next* Linear:
  ``W' = W diag(s)``, ``b' = b + W (beta - s * mean)``.

The analysed layer is the folded one, and :attr:`Chain.notes` says so. A
BatchNorm without running statistics (``track_running_stats=False``)
normalises with the statistics of each batch, so it is not a fixed function
and is refused. LayerNorm and RMSNorm stay in the chain. Every module is
copied fresh (float32), never shared with the user's model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from probe.core.errors import article
from probe.core.variants import variant_of_module
from probe.models.fresh import new_linear, new_prelu
from probe.models.guards import finite_number, short
from probe.models.mlp import NORMS, make_norm, norm_spec
from probe.models.trace import ACTIVATIONS, BATCHNORMS, OutputReshape, not_mlp


@dataclass
class Chain:
    """Fresh canonical modules read from a user's sequence."""

    linears: list[nn.Linear] = field(default_factory=list)
    norms: list[nn.Module | None] = field(default_factory=list)
    acts: list[nn.Module] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def tensor_attr(module: nn.Module, attr: str, dims: int, where: str) -> torch.Tensor:
    """``module.<attr>``, which must be a tensor with ``dims`` dimensions, else a clear refusal."""
    try:
        value = getattr(module, attr)
    except Exception:
        value = None
    if not isinstance(value, torch.Tensor) or value.dim() != dims:
        found = "none" if value is None else (f"a {value.dim()}-D tensor" if isinstance(value, torch.Tensor)
                                              else f"{article(type(value).__name__)}")
        raise not_mlp(f"{where} whose '{attr}' is {found}, not a {dims}-D tensor")
    return value


def fresh_linear(module: nn.Module, where: str) -> nn.Linear:
    weight = tensor_attr(module, "weight", 2, where)
    try:
        bias = getattr(module, "bias")
    except Exception:
        bias = None
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (weight.shape[0],)):
        raise not_mlp(f"{where} whose bias {short(bias, 40)} does not match its {weight.shape[0]} outputs")
    return new_linear(weight, bias)


def fresh_activation(kind: str, module: nn.Module, where: str) -> nn.Module:
    """A new activation module computing what ``module`` (of class name ``kind``) computes."""
    inplace = getattr(module, "inplace", False) is True
    if kind == "ReLU":
        return nn.ReLU(inplace=inplace)
    if kind == "LeakyReLU":
        slope = finite_number(getattr(module, "negative_slope", None))
        if slope is None:
            raise not_mlp(f"{where} whose negative_slope is {short(getattr(module, 'negative_slope', None), 40)}, "
                          "not a finite number")
        return nn.LeakyReLU(slope, inplace=inplace)
    if kind == "PReLU":
        return new_prelu(tensor_attr(module, "weight", 1, where))
    try:
        return variant_of_module(module).make_module()
    except Exception:  # a hostile attribute (alpha, beta, lower...) that is not a number
        raise not_mlp(f"{where} whose parameters are not finite numbers") from None


def _bn_affine(bn: nn.Module, width: int, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, t)`` with ``bn(u) = s * u + t`` in eval mode, float64."""
    if getattr(bn, "running_mean", None) is None or getattr(bn, "track_running_stats", True) is not True:
        raise not_mlp(f"{where} without running statistics (track_running_stats=False): it normalises "
                      "each batch by that batch's own statistics, so it is not a fixed function",
                      fix="train with track_running_stats=True (the default), or drop the BatchNorm")
    mean = tensor_attr(bn, "running_mean", 1, where).double()
    var = tensor_attr(bn, "running_var", 1, where).double()
    eps = finite_number(getattr(bn, "eps", None))
    if mean.numel() != width or var.numel() != width or eps is None:
        raise not_mlp(f"{where} over {mean.numel()} features next to a layer of width {width}")
    gamma = torch.ones(width, dtype=torch.float64)
    beta = torch.zeros(width, dtype=torch.float64)
    if getattr(bn, "weight", None) is not None:
        gamma = tensor_attr(bn, "weight", 1, where).double()
        beta = tensor_attr(bn, "bias", 1, where).double()
    if gamma.numel() != width or beta.numel() != width:
        raise not_mlp(f"{where} whose affine parameters do not match its {width} features")
    s = gamma / torch.sqrt(var + eps)
    return s, beta - s * mean


def _fold_output(lin: nn.Linear, bn: nn.Module, where: str) -> nn.Linear:
    s, t = _bn_affine(bn, lin.out_features, where)
    w = lin.weight.detach().double()
    b = lin.bias.detach().double() if lin.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    return new_linear(s[:, None] * w, s * b + t)


def _fold_input(lin: nn.Linear, bn: nn.Module, where: str) -> nn.Linear:
    s, t = _bn_affine(bn, lin.in_features, where)
    w = lin.weight.detach().double()
    b = lin.bias.detach().double() if lin.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    return new_linear(w * s[None, :], b + w @ t)


def _fresh_norm(norm: nn.Module, width: int, where: str) -> nn.Module:
    shape = tuple(getattr(norm, "normalized_shape", ()) or ())
    if shape != (width,):
        raise not_mlp(f"{where} over shape {short(shape, 40)} after a layer of width {width}")
    spec = norm_spec(norm)
    if spec["eps"] is not None and finite_number(spec["eps"]) is None:
        raise not_mlp(f"{where} whose eps is not a finite number")
    fresh = make_norm(spec, width)
    if spec["affine"]:
        with torch.no_grad():
            fresh.weight.copy_(tensor_attr(norm, "weight", 1, where))
            if getattr(fresh, "bias", None) is not None:
                fresh.bias.copy_(tensor_attr(norm, "bias", 1, where))
    return fresh


def read_chain(seq: list[nn.Module]) -> Chain:
    """Fresh canonical modules from the sequence a model applies (see the module docstring)."""
    chain = Chain()
    stage = "start"  # start | linear | norm | act
    pending_bn: nn.Module | None = None
    for pos, mod in enumerate(seq):
        where = f"{article(type(mod).__name__)}"
        layer = len(chain.linears)
        if isinstance(mod, nn.Linear):
            if stage in ("linear", "norm"):
                raise not_mlp("two Linear layers with no activation between them")
            lin = fresh_linear(mod, where)
            if pending_bn is not None:
                lin = _fold_input(lin, pending_bn, "a BatchNorm1d")
                chain.notes.append(f"the BatchNorm1d before Linear layer {layer + 1} (after the activation) was "
                                   f"folded into it (eval-mode running statistics); layer {layer + 1} is analysed "
                                   "folded: the analysed layer (and its gradient figures: neg_grad_share, "
                                   "neg_grad_fraction) is the folded Linear W·diag(s), not the weight the optimiser "
                                   "updates")
                pending_bn = None
            chain.linears.append(lin)
            chain.norms.append(None)
            stage = "linear"
        elif isinstance(mod, BATCHNORMS):
            if stage == "linear":
                chain.linears[-1] = _fold_output(chain.linears[-1], mod, where)
                chain.notes.append(f"the BatchNorm1d after Linear layer {layer} was folded into it "
                                   f"(eval-mode running statistics); layer {layer} is analysed folded")
                stage = "norm"
            elif stage in ("start", "act") and pending_bn is None:
                pending_bn = mod
            else:
                raise not_mlp(f"a BatchNorm1d after a {'norm' if stage == 'norm' else 'BatchNorm'} "
                              f"in hidden layer {layer}")
        elif isinstance(mod, NORMS):
            if stage != "linear":
                raise not_mlp(f"{where} that does not directly follow a Linear layer"
                              + (" (it comes after the activation)" if stage == "act" else ""),
                              fix="probe reads a LayerNorm/RMSNorm between a Linear layer and its activation "
                                  "(Linear -> norm -> activation); unlike a BatchNorm1d, a norm after the "
                                  "activation cannot be folded into the next Linear: analyse a model with the "
                                  "norm before the activation, or without it")
            chain.norms[-1] = _fresh_norm(mod, chain.linears[-1].out_features, where)
            stage = "norm"
        elif isinstance(mod, ACTIVATIONS):
            if stage not in ("linear", "norm"):
                raise not_mlp(f"{where} that does not follow a Linear layer "
                              "(two activations in a row, or one before the first Linear)")
            chain.acts.append(fresh_activation(type(mod).__name__, mod, where))
            stage = "act"
        elif isinstance(mod, OutputReshape):
            if pos != len(seq) - 1 or stage not in ("linear", "norm"):
                raise not_mlp("a squeeze/view/flatten before the output layer")
            if chain.linears[-1].out_features != 1:
                raise not_mlp(f"a final squeeze/view/flatten of {chain.linears[-1].out_features} outputs "
                              "(it mixes samples and outputs)")
            chain.notes.append("the output's final reshape to [N] was dropped (same values, shape [N, 1])")
        else:  # trace.py hands over known modules only
            raise not_mlp(f"{where} layer")
    if not chain.linears:
        raise not_mlp("no Linear layer at all")
    if stage == "act" or pending_bn is not None:
        raise not_mlp(f"an activation ({type(chain.acts[-1]).__name__}) after the output layer"
                      if pending_bn is None else "a BatchNorm1d after the output layer's activation")
    if chain.norms[-1] is not None:
        raise not_mlp("a LayerNorm/RMSNorm after the output layer")
    chain.norms.pop()
    return chain
