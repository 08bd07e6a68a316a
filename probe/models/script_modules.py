"""Scripted or traced submodules rebuilt as fresh ``torch.nn`` modules, from their attributes or code.

A traced module keeps its tensors but not always its constructor arguments
(a LayerNorm's ``eps``, an ELU's ``alpha``): those are read from its code, and
an ``eps`` that cannot be read is left to candidates that the caller verifies.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from probe.models.chain import fresh_activation as _fresh_activation
from probe.models.chain import fresh_linear as _fresh_linear
from probe.models.chain import tensor_attr
from probe.models.convert import not_mlp
from probe.models.guards import finite_number
from probe.models.mlp import NORMS

_PARAMS = ("negative_slope", "alpha", "beta", "threshold", "lower", "upper", "approximate")


_TRACED_ARGS = {"LeakyReLU": ("negative_slope",), "ELU": ("alpha",), "CELU": ("alpha",),
                "Softplus": ("beta", "threshold"), "RReLU": ("lower", "upper")}


def _traced_params(kind: str, sub: object) -> dict:
    """The parameters a traced activation's code passes to its ``torch.*`` call (``{}`` when none is found)."""
    code = _code_of(sub)
    if kind == "GELU":
        return {"approximate": "tanh"} if re.search(r"approximate\s*=\s*[\"']tanh", code) else {}
    names = _TRACED_ARGS.get(kind)
    match = re.search(r"torch\.\w+\(\s*[\w.]+\s*,([^)]*)\)", code) if names else None
    if match is None:
        return {}
    values = []
    for arg in match.group(1).split(","):
        try:
            values.append(float(arg.strip()))
        except ValueError:
            break
    return dict(zip(names, values))


def copy_scripted(kind: str, sub: object, where: str, eps_guess: float | None = None) -> nn.Module:
    """A fresh ``torch.nn`` module equal to a scripted one, rebuilt from its attributes (nothing runs)."""
    if kind == "Linear":
        return _fresh_linear(sub, where)
    traced = _traced_params(kind, sub)  # a traced module keeps no attributes: its code passes them
    if kind == "LeakyReLU" and finite_number(getattr(sub, "negative_slope", None)) is None \
            and "negative_slope" in traced:
        return nn.LeakyReLU(traced["negative_slope"])
    if kind in ("ReLU", "LeakyReLU", "PReLU"):
        return _fresh_activation(kind, sub, where)
    cls = getattr(nn, kind)
    if kind == "BatchNorm1d" or kind in {c.__name__ for c in NORMS}:
        return _norm_copy(cls, kind, sub, where, eps_guess)
    kwargs = {}
    for attr in _PARAMS:
        value = getattr(sub, attr, traced.get(attr))
        if attr == "approximate" and value in ("none", "tanh"):
            kwargs[attr] = value
        elif attr != "approximate" and finite_number(value) is not None:
            kwargs[attr] = finite_number(value)
    try:
        return _fresh_activation(kind, cls(**kwargs), where)
    except TypeError:
        raise not_mlp(f"{where} whose parameters probe cannot read") from None


#: eps values tried, in order after the module's default, for a traced norm whose eps its code does not show.
EPS_CANDIDATES = (1e-5, 1e-6, 1e-3, 1e-8, 1e-12, 1e-4, 1e-2, 1e-7, 1e-1)
_NORM_CALL = re.compile(r"torch\.(batch_norm|layer_norm|rms_norm)\((.*)\)")
_EPS_ARG = {"batch_norm": 7, "layer_norm": 4, "rms_norm": 3}
#: What an eps missing from a layer_norm/rms_norm call means: the function's default.
_CALL_DEFAULT_EPS = {"layer_norm": 1e-5, "rms_norm": None}


def _code_of(sub: object) -> str:
    try:
        return str(sub.code)
    except Exception:
        return ""


def _traced_norm(sub: object) -> tuple[bool, float | None, int | None]:
    """(eps known, eps, width) read from a norm's scripted/traced code; eps unknown when the code has no call."""
    match = _NORM_CALL.search(_code_of(sub))
    if match is None:
        return False, None, None
    fn, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
    shape = re.search(r"\[\s*(\d+)\s*\]", match.group(2))
    width = int(shape.group(1)) if shape else None
    index = _EPS_ARG[fn]
    if fn == "layer_norm":  # layer_norm(x, [W], weight, bias[, eps]): the list counts as one argument
        args = [a for a in args if not a.startswith("[") and not a.endswith("]")]
        index -= 1
    if fn == "rms_norm":
        args = [a for a in args if not a.startswith("[") and not a.endswith("]")]
        index -= 1
    if len(args) <= index:
        return (True, _CALL_DEFAULT_EPS[fn], width) if fn in _CALL_DEFAULT_EPS else (False, None, width)
    if args[index] == "None":
        return True, None, width
    try:
        return True, float(args[index]), width
    except ValueError:
        return False, None, width


def norm_eps(kind: str, sub: object) -> tuple[bool, float | None]:
    """(recorded, eps) of a scripted or traced norm: its ``eps`` attribute, else the eps its code passes."""
    missing = object()
    try:
        value = getattr(sub, "eps", missing)
    except Exception:
        value = missing
    if value is None or finite_number(value) is not None:  # scripted: recorded (None: RMSNorm's default)
        return True, None if value is None else finite_number(value)
    known, eps, _ = _traced_norm(sub)
    return known, eps


def _norm_copy(cls: type, kind: str, sub: object, where: str, eps_guess: float | None = None) -> nn.Module:
    """A fresh norm from a scripted or traced one; ``eps_guess`` stands in for an eps neither records."""
    known, eps = norm_eps(kind, sub)
    if not known:
        eps = eps_guess if eps_guess is not None else (None if kind == "RMSNorm" else 1e-5)
    weight = getattr(sub, "weight", None)
    if kind == "BatchNorm1d":
        mean = tensor_attr(sub, "running_mean", 1, where) if getattr(sub, "running_mean", None) is not None else None
        width = mean.numel() if mean is not None else int(getattr(sub, "num_features", 0) or 0)
        if not width and isinstance(weight, torch.Tensor):
            width = weight.numel()
        module = nn.BatchNorm1d(width, eps=1e-5 if eps is None else eps, affine=weight is not None,
                                track_running_stats=mean is not None)
        names = ("running_mean", "running_var") if mean is not None else ()
    else:
        shape = tuple(getattr(sub, "normalized_shape", ()) or ())
        if not shape:  # a traced norm keeps only its tensors: the width is the weight's, or its code's
            traced_width = _traced_norm(sub)[2]
            shape = (weight.numel(),) if isinstance(weight, torch.Tensor) and weight.dim() == 1 else \
                ((traced_width,) if traced_width else ())
        if not shape:
            raise not_mlp(f"{where} whose width probe cannot read (a traced norm without affine weights)",
                          fix="script the model (torch.jit.script), or save the pickled model (torch.save(model))")
        affine = weight is not None
        module = cls(shape, eps=eps, elementwise_affine=affine) if kind == "RMSNorm" else \
            cls(shape, eps=1e-5 if eps is None else eps, elementwise_affine=affine)
        names = ()
    with torch.no_grad():
        for attr in names + tuple(a for a in ("weight", "bias") if getattr(module, a, None) is not None):
            getattr(module, attr).copy_(tensor_attr(sub, attr, 1, where))
    return module.eval()
