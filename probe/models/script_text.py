"""What the code text of a TorchScript model says about its functional activations.

TorchScript aliases functions (``_0 = ...leaky_relu`` then ``_0(x, 0.2, False)``),
so the candidates read here are checked by running the converted model, never trusted.
"""

from __future__ import annotations

import re

from torch import nn


def _script_slopes(code: str) -> list[float]:
    """Candidate slopes of a functional activation in TorchScript code, most likely first.

    TorchScript aliases functions (``_0 = ...leaky_relu`` then ``_0(x, 0.2, False)``),
    so every float literal in (0, 1) is a candidate; the output check picks the right one.
    """
    if "leaky_relu" in code:
        literals = [float(v) for v in re.findall(r"(?<![\w.])(0?\.\d+(?:[eE][+-]?\d+)?|\d\.?\d*[eE]-\d+)", code)]
        return list(dict.fromkeys([v for v in literals if 0 < v < 1] + [0.01]))
    if re.search(r"\brelu_?\b", code):
        return [0.0]
    return []


_FLOAT = r"(?<![\w.])(\d*\.\d+(?:[eE][+-]?\d+)?|\d+\.?\d*[eE][+-]?\d+)"
#: Functional activations probe reads from TorchScript code, by the name the code calls.
_FUNCTIONS = ("leaky_relu", "relu", "gelu", "elu", "celu", "selu", "silu", "mish", "softplus", "tanh")


def _script_functions(code: str) -> list[str]:
    """The functional activations a TorchScript code text calls, in order of first appearance."""
    found = [(m.start(), m.group(1)) for m in re.finditer(r"(?<![\w\"'])(leaky_relu|relu|gelu|elu|celu|selu|"
                                                          r"silu|mish|softplus|tanh)_?\b(?![\"'])", code)]
    return list(dict.fromkeys(name for _, name in sorted(found)))


def script_candidates(code: str) -> list[tuple[str, object]]:
    """(function, activation factory) candidates of a functional activation in TorchScript code, likeliest first.

    Parameters (a slope, an alpha, a beta) are read from the float literals of
    the code; the output check (:func:`verify_same_function`) picks the right one.
    """
    literals = list(dict.fromkeys(float(v) for v in re.findall(_FLOAT, code)))
    out: list[tuple[str, object]] = []
    for name in _script_functions(code):
        if name == "leaky_relu":
            out += [(name, lambda v=v: nn.LeakyReLU(v)) for v in _script_slopes(code)]
        elif name == "relu":
            out.append((name, nn.ReLU))
        elif name == "gelu":
            tanh = re.search(r"approximate\s*=\s*[\"']tanh", code) is not None
            out += [(name, lambda a=a: nn.GELU(approximate=a)) for a in (("tanh", "none") if tanh else ("none",))]
        elif name in ("elu", "celu"):
            cls = nn.ELU if name == "elu" else nn.CELU
            out += [(name, lambda a=a, c=cls: c(a)) for a in dict.fromkeys([v for v in literals if v > 0] + [1.0])]
        elif name == "softplus":
            out += [(name, lambda b=b: nn.Softplus(b)) for b in dict.fromkeys([v for v in literals if v > 0] + [1.0])]
        else:
            out.append((name, {"selu": nn.SELU, "silu": nn.SiLU, "mish": nn.Mish, "tanh": nn.Tanh}[name]))
    return out


#: Output activations a model may apply to its logits; probe analyses the logits.
