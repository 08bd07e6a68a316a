"""Follow a model's ``forward`` with ``torch.fx`` into the list of modules it applies, in order.

Functional calls (``F.relu``, ``F.gelu``, ``x.tanh()``, ...) become equivalent
modules; dropout and identities are skipped; a final ``squeeze``/``view(-1)``/
``flatten()`` becomes an :class:`OutputReshape` marker. Anything that combines
several tensors (a residual add, a concatenation) or that probe does not know
is refused with the node that does it. :mod:`probe.models.chain` then reads
the sequence as hidden blocks.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from probe.core.activations import SMOOTH
from probe.core.errors import ModelLoadError, article
from probe.models.guards import clip, finite_number
from probe.models.mlp import NORMS

ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU) + tuple(
    s.module for s in SMOOTH.values())
BATCHNORMS = (nn.BatchNorm1d,)
PASSTHROUGH = (nn.Dropout, nn.Identity, nn.Flatten, nn.AlphaDropout)
PASSTHROUGH_NAMES = {"Dropout", "Identity", "Flatten", "AlphaDropout", "Sequential", "ModuleList"}
KNOWN = (nn.Linear,) + ACTIVATIONS + BATCHNORMS + NORMS
_FN_RELU = {F.relu, torch.relu, torch.relu_, F.relu_}
_FN_LEAKY = {F.leaky_relu, torch._C._nn.leaky_relu}
_FN_SKIP = {F.dropout}
_FN_RESHAPE = {torch.squeeze, torch.flatten}
_METHOD_RESHAPE = {"squeeze", "flatten", "view", "reshape"}
_METHOD_ACT = {"relu": nn.ReLU, "relu_": nn.ReLU, "tanh": nn.Tanh}


class OutputReshape(nn.Module):
    """Marker for a reshape of a width-1 output to ``[N]`` (``squeeze(-1)``, ``view(-1)``, ...).

    It changes the shape, not a value, so the canonical MLP drops it (and says so).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1)


def not_mlp(found: str, fix: str = "") -> ModelLoadError:
    return ModelLoadError(
        "This model is not an MLP that probe can analyse",
        expected="a chain Linear -> [BatchNorm1d | LayerNorm | RMSNorm] -> activation -> [Dropout] -> ... "
        "-> Linear, with a ReLU-family, ELU, CELU, SELU, GELU, SiLU, Mish, Softplus or Tanh activation",
        found=found,
        fix=fix or "check the model against the chain expected above; if only part of it is an MLP, export "
                   "that part on its own",
    )


#: Output activations a model may apply to its logits (modules, functions, methods); probe analyses the logits.
_OUTPUT_MODULES = {nn.Sigmoid: "sigmoid", nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax"}
_OUTPUT_FUNCTIONS = {torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.softmax: "softmax", F.softmax: "softmax",
                     torch.log_softmax: "log_softmax", F.log_softmax: "log_softmax"}
_OUTPUT_METHODS = {"sigmoid": "sigmoid", "softmax": "softmax", "log_softmax": "log_softmax"}


def output_activation_refusal(name: str) -> ModelLoadError:
    """The refusal of a model that applies ``name`` (sigmoid, softmax, ...) to its output logits."""
    loss = "bce" if name == "sigmoid" else "cross_entropy"
    return not_mlp(f"an output activation ({name}) after the last Linear layer: probe analyses the logits",
                   fix=f"drop it from forward (and use --loss {loss})")


def _output_act(node: fx.Node, named: dict[str, nn.Module]) -> str | None:
    if node.op == "call_module":
        return next((n for cls, n in _OUTPUT_MODULES.items() if isinstance(named.get(node.target), cls)), None)
    if node.op == "call_function":
        try:
            return _OUTPUT_FUNCTIONS.get(node.target)
        except TypeError:
            return None
    if node.op == "call_method":
        return _OUTPUT_METHODS.get(node.target)
    return None


def _is_linear(node: fx.Node, named: dict[str, nn.Module]) -> bool:
    return node.op == "call_module" and isinstance(named.get(node.target), nn.Linear)


def module_sequence(module: nn.Module, keep: tuple[type, ...] = ()) -> list[nn.Module]:
    """The modules a plain chain model applies, in order, via ``torch.fx``.

    Pass-through modules (dropout, identity, flatten) are left out, but those
    of the types in ``keep``, which stay in their place.
    """
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception as exc:  # tracing fails on data-dependent control flow
        if isinstance(module, nn.Sequential):
            return flatten_sequential(module, keep)
        raise not_mlp(f"{article(type(module).__name__)} whose forward could not be traced "
                      f"({type(exc).__name__}: {clip(str(exc), 160)})") from None
    named = dict(module.named_modules())
    seq: list[nn.Module] = []
    prev = None
    nodes = list(graph.nodes)
    last_linear = max((i for i, n in enumerate(nodes) if _is_linear(n, named)), default=-1)
    for i, node in enumerate(nodes):
        output_act = _output_act(node, named) if i > last_linear else None
        if output_act is not None:
            raise output_activation_refusal(output_act)
        if node.op == "placeholder":
            if prev is not None:
                raise not_mlp("a forward() with more than one input")
            prev = node
            continue
        if node.op == "output":
            if node.args[0] is not prev:
                raise not_mlp("an output that is not the last layer's result")
            break
        if list(node.all_input_nodes) != [prev]:
            what = node.target.__name__ if callable(node.target) else str(node.target)
            raise not_mlp(f"'{what}' combining several tensors at node '{node.name}' "
                          "(a residual or skip connection)",
                          fix="export the plain MLP part of the model on its own (a residual or multi-input "
                              "model is not an MLP)")
        seq.extend(_node_module(node, named, keep))
        prev = node
    return seq


def _act_from_function(node: fx.Node) -> nn.Module | None:
    """The activation module a functional call computes, or None when it is not one."""
    target, args, kwargs = node.target, node.args, node.kwargs

    def arg(i: int, name: str, default: float) -> float:
        value = kwargs.get(name, args[i] if len(args) > i else default)
        number = finite_number(value)
        if number is None:
            raise not_mlp(f"a {getattr(target, '__name__', target)} at node '{node.name}' whose {name} "
                          "is not a number")
        return number

    if target in _FN_RELU:
        return nn.ReLU()
    if target in _FN_LEAKY:
        return nn.LeakyReLU(arg(1, "negative_slope", 0.01))
    if target in (F.gelu, torch._C._nn.gelu):
        approx = kwargs.get("approximate", "none")
        return nn.GELU(approximate=approx if approx in ("none", "tanh") else "none")
    if target in (F.elu, F.celu):
        return (nn.ELU if target is F.elu else nn.CELU)(arg(1, "alpha", 1.0))
    if target is F.softplus:
        return nn.Softplus(arg(1, "beta", 1.0), arg(2, "threshold", 20.0))
    simple = {F.selu: nn.SELU, torch.selu: nn.SELU, F.silu: nn.SiLU, F.mish: nn.Mish,
              torch.tanh: nn.Tanh, F.tanh: nn.Tanh}
    return simple[target]() if target in simple else None


def _node_module(node: fx.Node, named: dict[str, nn.Module], keep: tuple[type, ...] = ()) -> list[nn.Module]:
    """Translate one traced node into zero or one module."""
    if node.op == "call_module":
        mod = named[node.target]
        if isinstance(mod, KNOWN):
            return [mod]
        if isinstance(mod, PASSTHROUGH):
            return [mod] if keep and isinstance(mod, keep) else []
        raise not_mlp(f"{article(type(mod).__name__)} layer at '{node.target}'")
    if node.op == "call_function":
        act = _act_from_function(node)
        if act is not None:
            return [act]
        if node.target in _FN_SKIP:  # F.dropout(input, p=0.5, training=True, inplace=False)
            p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
            return [nn.Dropout(p if isinstance(p, float) else 0.5)] if keep and issubclass(nn.Dropout, keep) else []
        if node.target in _FN_RESHAPE:
            start = node.kwargs.get("start_dim", node.args[1] if len(node.args) > 1 else 0)
            return [] if node.target is torch.flatten and start == 1 else [OutputReshape()]
        name = getattr(node.target, "__name__", str(node.target))
        if node.target in (operator.add, operator.mul, torch.add, torch.cat):
            raise not_mlp(f"'{name}' at node '{node.name}'")
        raise not_mlp(f"the function '{name}' at node '{node.name}'")
    if node.op == "call_method":
        if node.target in _METHOD_ACT:
            return [_METHOD_ACT[node.target]()]
        if node.target in _METHOD_RESHAPE:
            rest = tuple(node.args[1:])
            if node.target == "flatten" and rest in ((1,),) or node.target in ("view", "reshape") \
                    and rest not in ((-1,),):
                if node.target == "flatten":
                    return []
                raise not_mlp(f"a {node.target}{rest} at node '{node.name}' (only a final view(-1) or "
                              "reshape(-1) of a one-output model is understood)")
            return [OutputReshape()]
    raise not_mlp(f"operation '{node.op} {node.target}' at node '{node.name}'")


def flatten_sequential(module: nn.Module, keep: tuple[type, ...] = ()) -> list[nn.Module]:
    """The modules of (nested) ``nn.Sequential`` containers, pass-through layers dropped (but those in ``keep``)."""
    out: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, nn.Sequential):
            out.extend(flatten_sequential(child, keep))
        elif isinstance(child, KNOWN):
            out.append(child)
        elif isinstance(child, tuple(_OUTPUT_MODULES)) and child is list(module.children())[-1]:
            raise output_activation_refusal(_OUTPUT_MODULES[type(child)])
        elif not isinstance(child, PASSTHROUGH):
            raise not_mlp(f"{article(type(child).__name__)} layer")
        elif keep and isinstance(child, keep):
            out.append(child)
    return out
