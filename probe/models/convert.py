"""Turn a state_dict, an ``nn.Module`` or a TorchScript module into a canonical MLP.

Every conversion ends with :func:`verify_same_function`: the canonical MLP must
compute what the original computes on random inputs, so a model that only
*looks* like an MLP (a residual add, a hidden normalisation) is refused rather
than analysed wrongly.
"""

from __future__ import annotations

import copy
import operator
import re

import torch
import torch.nn.functional as F
from torch import fx, nn

from probe.core.errors import ModelLoadError
from probe.models.mlp import MLP
from probe.core.variants import Variant, parse_variant

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.PReLU)
PASSTHROUGH = (nn.Dropout, nn.Identity, nn.Flatten, nn.AlphaDropout)
PASSTHROUGH_NAMES = {"Dropout", "Identity", "Flatten", "AlphaDropout", "Sequential", "ModuleList"}
_FN_RELU = {F.relu, torch.relu, torch.relu_, F.relu_}
_FN_LEAKY = {F.leaky_relu, torch._C._nn.leaky_relu}
_FN_SKIP = {F.dropout, torch.flatten}
_METHOD_ACT = {"relu": 0.0, "relu_": 0.0}


def not_mlp(found: str, fix: str = "") -> ModelLoadError:
    return ModelLoadError(
        "This model is not an MLP that probe can analyse",
        expected="a chain Linear -> activation -> Linear -> ... -> Linear with ReLU, LeakyReLU "
        "or PReLU activations (Dropout, Identity and Flatten are ignored)",
        found=found,
        fix=fix or "export the MLP part of your model on its own, or rebuild it as an nn.Sequential",
    )


def assemble(linears: list[nn.Linear], acts: list[nn.Module]) -> MLP:
    """Interleave Linear layers and activations into a canonical :class:`MLP`."""
    if not linears:
        raise not_mlp("no Linear layer at all")
    if len(acts) != len(linears) - 1:
        raise not_mlp(f"{len(linears)} Linear layers but {len(acts)} activations between them")
    for a, b in zip(linears, linears[1:]):
        if a.out_features != b.in_features:
            raise not_mlp(f"a Linear with {a.out_features} outputs feeding one with {b.in_features} inputs")
    for i, lin in enumerate(linears):
        if not all(torch.isfinite(p).all() for p in lin.parameters()):
            raise ModelLoadError(
                f"Linear layer {i + 1} of this model has NaN or infinite weights",
                expected="finite weights and biases", found="NaN/inf values (a diverged training run?)",
                fix="analyse a checkpoint saved before the run diverged")
    layers: list[nn.Module] = []
    for i, lin in enumerate(linears):
        layers.append(lin)
        if i < len(acts):
            layers.append(acts[i])
    return MLP(*layers)


def linears_from_state(state: dict[str, torch.Tensor], variant: Variant | str) -> MLP:
    """Build an MLP from a bare state_dict whose Linear weights appear in forward order.

    A 2-D tensor starts a Linear layer; a 1-D tensor right after it of matching
    length is its bias; a 1-D tensor between Linear layers is a PReLU slope
    (used when ``variant`` is ``prelu``). Anything else is refused.
    """
    variant = parse_variant(variant) if isinstance(variant, str) else variant
    linears: list[nn.Linear] = []
    slopes: dict[int, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise not_mlp(f"a non-tensor entry '{key}' in the state_dict")
        if value.dim() == 2:
            lin = nn.Linear(value.shape[1], value.shape[0], bias=False)
            lin.weight = nn.Parameter(value.detach().clone().float())
            linears.append(lin)
        elif value.dim() == 1 and linears and key.endswith("bias") and linears[-1].bias is None \
                and value.numel() == linears[-1].out_features:
            linears[-1].bias = nn.Parameter(value.detach().clone().float())
        elif value.dim() == 1 and linears and key.endswith("weight") and variant.learnable:
            slopes[len(linears) - 1] = value.detach().clone().float()
        else:
            raise not_mlp(f"state_dict entry '{key}' of shape {tuple(value.shape)}, which is neither "
                          "a Linear weight nor its bias")
    if variant.learnable and len(linears) > 1 and not slopes:
        raise ModelLoadError(
            "This state_dict has no PReLU slope tensors, so it cannot be a PReLU model",
            expected="1-D '*.weight' tensors between the Linear layers for --activation prelu",
            found=f"{len(linears)} Linear layers and no slopes",
            fix="pass the activation the model was trained with (relu, leaky or leaky:SLOPE)")
    acts = []
    for i in range(len(linears) - 1):
        act = variant.make_module()
        if isinstance(act, nn.PReLU) and i in slopes:
            act = nn.PReLU(num_parameters=slopes[i].numel())
            act.weight = nn.Parameter(slopes[i])
        acts.append(act)
    return assemble(linears, acts)


def _module_sequence(module: nn.Module) -> list[nn.Module]:
    """The modules a plain chain model applies, in order, via ``torch.fx``."""
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception as exc:  # tracing fails on data-dependent control flow
        if isinstance(module, nn.Sequential):
            return _flatten_sequential(module)
        raise not_mlp(f"a {type(module).__name__} whose forward could not be traced ({exc})") from None
    named = dict(module.named_modules())
    seq: list[nn.Module] = []
    prev = None
    for node in graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                raise not_mlp("a forward() with more than one input")
            prev = node
            continue
        if node.op == "output":
            if node.args[0] is not prev:
                raise not_mlp("an output that is not the last layer's result")
            break
        tensor_args = [a for a in node.all_input_nodes]
        if tensor_args != [prev]:
            what = node.target.__name__ if callable(node.target) else str(node.target)
            raise not_mlp(f"'{what}' combining several tensors at node '{node.name}' "
                          "(a residual or skip connection)")
        seq.extend(_node_module(node, named))
        prev = node
    return seq


def _node_module(node: fx.Node, named: dict[str, nn.Module]) -> list[nn.Module]:
    """Translate one traced node into zero or one canonical module."""
    if node.op == "call_module":
        mod = named[node.target]
        if isinstance(mod, (nn.Linear,) + ACTIVATIONS):
            return [mod]
        if isinstance(mod, PASSTHROUGH):
            return []
        raise not_mlp(f"a {type(mod).__name__} layer at '{node.target}'")
    if node.op == "call_function":
        if node.target in _FN_RELU:
            return [nn.ReLU()]
        if node.target in _FN_LEAKY:
            slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
            return [nn.LeakyReLU(float(slope))]
        if node.target in _FN_SKIP:
            return []
        name = getattr(node.target, "__name__", str(node.target))
        if node.target in (operator.add, operator.mul, torch.add, torch.cat):
            raise not_mlp(f"'{name}' at node '{node.name}'")
        raise not_mlp(f"the function '{name}' at node '{node.name}'")
    if node.op == "call_method" and node.target in _METHOD_ACT:
        return [nn.ReLU()]
    raise not_mlp(f"operation '{node.op} {node.target}' at node '{node.name}'")


def _flatten_sequential(module: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, nn.Sequential):
            out.extend(_flatten_sequential(child))
        elif isinstance(child, (nn.Linear,) + ACTIVATIONS):
            out.append(child)
        elif not isinstance(child, PASSTHROUGH):
            raise not_mlp(f"a {type(child).__name__} layer")
    return out


def _split(seq: list[nn.Module]) -> tuple[list[nn.Linear], list[nn.Module]]:
    linears, acts = [], []
    for i, mod in enumerate(seq):
        if isinstance(mod, nn.Linear):
            if linears and len(acts) != len(linears):
                raise not_mlp("two Linear layers with no activation between them")
            linears.append(mod)
        else:
            if len(acts) != len(linears) - 1 or not linears:
                raise not_mlp(f"a {type(mod).__name__} that does not follow a Linear layer "
                              "(two activations in a row, or one before the first Linear)")
            acts.append(mod)
    if len(acts) == len(linears) and linears:
        raise not_mlp(f"an activation ({type(acts[-1]).__name__}) after the output layer")
    return linears, acts


def module_to_mlp(module: nn.Module) -> MLP:
    """Convert any chain-shaped ``nn.Module`` into an independent canonical MLP.

    The original is left untouched: its layers are deep-copied.
    """
    if isinstance(module, MLP):
        return copy.deepcopy(module)
    linears, acts = _split(_module_sequence(module))
    # float32 throughout probe; a float64 model is converted (and checked against the original)
    mlp = assemble([copy.deepcopy(m) for m in linears], [copy.deepcopy(a) for a in acts]).float()
    verify_same_function(module, mlp)
    return mlp


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


def script_to_mlp(script: torch.jit.ScriptModule, variant: Variant | None) -> MLP:
    """Convert a TorchScript MLP; ``variant`` overrides the activation found in its code."""
    linears: list[nn.Linear] = []
    acts: list[nn.Module] = []
    for name, sub in script.named_modules():
        kind = getattr(sub, "original_name", type(sub).__name__)
        if not name or kind in PASSTHROUGH_NAMES:
            continue
        if kind == "Linear":
            lin = nn.Linear(sub.weight.shape[1], sub.weight.shape[0], bias=sub.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(sub.weight)
                if sub.bias is not None:
                    lin.bias.copy_(sub.bias)
            linears.append(lin)
        elif kind in ("ReLU", "LeakyReLU", "PReLU"):
            if kind == "PReLU":
                act = nn.PReLU(num_parameters=sub.weight.numel())
                act.weight = nn.Parameter(sub.weight.detach().clone())
            elif kind == "LeakyReLU":
                act = nn.LeakyReLU(float(sub.negative_slope))
            else:
                act = nn.ReLU()
            acts.append(act)
        elif any(True for _ in sub.children()):
            continue  # a container of other modules
        else:
            raise not_mlp(f"a {kind} layer at '{name}' in the TorchScript model")
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


@torch.no_grad()
def verify_same_function(original: nn.Module, mlp: MLP, hint: str = "") -> None:
    """Refuse a conversion whose result computes something else than the original."""
    width = mlp.linears[0].in_features
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, width, generator=gen) * 3
    was_training = original.training
    original.eval()
    dtype = next((p.dtype for p in original.parameters() if p.is_floating_point()), torch.float32)
    try:
        want = original(x.clone().to(dtype))
    except Exception as exc:
        raise not_mlp(f"a model that fails on a batch of width {width}: {exc}") from None
    finally:
        original.train(was_training)
    got = mlp.eval()(x.clone())
    if not isinstance(want, torch.Tensor) or want.shape != got.shape or \
            not torch.allclose(want.float(), got, rtol=1e-4, atol=1e-5):
        raise not_mlp("a model whose outputs differ from those of the Linear/activation chain "
                      "read from it (a hidden residual, normalisation or different activation)",
                      fix=hint or None)
