"""TorchScript models (``torch.jit.save``) as canonical MLPs: only with ``trust``, since their code runs.

The Linear submodules are read in order, the activations from activation
modules or from a functional ``relu``/``leaky_relu`` in the scripted
``forward`` (the slope read from the code text, or the ``--activation`` spec),
and the conversion is checked by running both on random inputs.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from probe.core.errors import ModelLoadError
from probe.core.variants import Variant
from probe.models.convert import (PASSTHROUGH_NAMES, _fresh_activation, _fresh_linear, assemble, not_mlp,
                                  verify_same_function)
from probe.models.guards import check_layer_count, check_tensors, clip, module_tensors, walk_modules
from probe.models.mlp import MLP


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


def script_to_mlp(script: torch.jit.ScriptModule, variant: Variant | None, *,
                  max_memory: int | None = None) -> MLP:
    """Convert a TorchScript MLP; ``variant`` overrides the activation found in its code.

    Submodules are recognised by their original class name; one named ``Linear``
    must hold a 2-D ``weight`` (and a matching ``bias`` or none), one named
    ``LeakyReLU`` a finite ``negative_slope``. Layer count and tensors are checked
    before any weight is copied.
    """
    nodes = walk_modules(script)
    layers: list[tuple[str, str, nn.Module]] = []
    for name, sub in nodes:
        kind = getattr(sub, "original_name", None)
        kind = kind if isinstance(kind, str) else type(sub).__name__
        if not name or kind in PASSTHROUGH_NAMES:
            continue
        if kind in ("Linear", "ReLU", "LeakyReLU", "PReLU"):
            layers.append((name, kind, sub))
        elif any(True for _ in sub.children()):
            continue  # a container of other modules
        else:
            raise not_mlp(f"a {clip(kind, 40)} layer at '{clip(name, 60)}' in the TorchScript model")
    check_layer_count(sum(kind == "Linear" for _, kind, _ in layers))
    check_tensors(module_tensors(nodes), "this TorchScript model", max_memory)
    linears: list[nn.Linear] = []
    acts: list[nn.Module] = []
    for name, kind, sub in layers:
        where = f"a TorchScript {kind} at '{clip(name, 60)}'"
        if kind == "Linear":
            linears.append(_fresh_linear(sub, where))
        else:
            acts.append(_fresh_activation(kind, sub, where))
    if variant is not None:
        acts = [variant.make_module() for _ in range(len(linears) - 1)]
    elif not acts:
        code = str(script.code) + "".join(str(m.code) for _, m in script.named_modules() if hasattr(m, "code"))
        candidates = _script_slopes(code)
        if not candidates:
            raise ModelLoadError(
                "Could not tell which activation this TorchScript model uses",
                expected="activation modules, or a functional relu/leaky_relu in forward()",
                found="neither", fix="pass --activation relu, leaky:SLOPE or prelu")
        for slope in candidates:
            acts = [(nn.ReLU() if slope == 0 else nn.LeakyReLU(slope)) for _ in range(len(linears) - 1)]
            mlp = assemble(linears, acts)
            try:
                verify_same_function(script, mlp)
                return mlp
            except ModelLoadError:
                continue
        raise not_mlp("a TorchScript model that no ReLU/leaky chain of its Linear layers reproduces",
                      fix="pass the right --activation (e.g. leaky:0.2)")
    mlp = assemble(linears, acts)
    hint = ("check that --activation matches the model, and that it has no residual or normalisation"
            if variant is not None else "pass the right --activation (e.g. leaky:0.2)")
    verify_same_function(script, mlp, hint=hint)
    return mlp
