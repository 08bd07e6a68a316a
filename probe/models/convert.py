"""Turn a state_dict, an ``nn.Module`` or a TorchScript module into a canonical MLP.

Every conversion ends with :func:`verify_same_function`: the canonical MLP must
compute what the original computes on random inputs, so a model that only
*looks* like an MLP (a residual add, a hidden normalisation) is refused rather
than analysed wrongly.

The canonical MLP is always built from fresh modules with copied weights, never
deep copies: whatever else a source module carries (hooks a user registered,
extra attributes) stays behind. Before any copy, the source's tensors are
checked (:mod:`probe.models.guards`): kind, declared size against the memory
budget, number of layers and nesting depth.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from probe.core.errors import ModelLoadError, article
from probe.models.guards import (check_layer_count, check_tensors, check_widths, clip, finite_number,
                                 module_tensors, plain_eval, short, walk_modules)
from probe.models.mlp import MLP

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
    check_layer_count(len(linears))
    if len(acts) != len(linears) - 1:
        raise not_mlp(f"{len(linears)} Linear layers but {len(acts)} activations between them")
    for a, b in zip(linears, linears[1:]):
        if a.out_features != b.in_features:
            raise not_mlp(f"a Linear with {a.out_features} outputs feeding one with {b.in_features} inputs")
    check_widths([linears[0].in_features] + [lin.out_features for lin in linears])
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


def _float_copy(t: torch.Tensor) -> torch.Tensor:
    """A dense float32 copy on the same device (a stride-0 view becomes real memory: check first)."""
    out = torch.empty(tuple(t.shape), dtype=torch.float32, device=t.device)
    with torch.no_grad():
        out.copy_(t.detach())
    return out


def new_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A fresh ``nn.Linear`` holding float32 copies of ``weight`` (out x in) and ``bias``."""
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    lin.weight = nn.Parameter(_float_copy(weight))
    if bias is not None:
        lin.bias = nn.Parameter(_float_copy(bias))
    return lin


def new_prelu(weight: torch.Tensor) -> nn.PReLU:
    """A fresh ``nn.PReLU`` holding a float32 copy of the slopes ``weight``."""
    act = nn.PReLU(num_parameters=max(weight.numel(), 1))
    act.weight = nn.Parameter(_float_copy(weight.reshape(-1)))
    return act


def _module_sequence(module: nn.Module) -> list[nn.Module]:
    """The modules a plain chain model applies, in order, via ``torch.fx``."""
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception as exc:  # tracing fails on data-dependent control flow
        if isinstance(module, nn.Sequential):
            return _flatten_sequential(module)
        raise not_mlp(f"{article(type(module).__name__)} whose forward could not be traced "
                      f"({type(exc).__name__}: {clip(str(exc), 160)})") from None
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
        raise not_mlp(f"{article(type(mod).__name__)} layer at '{node.target}'")
    if node.op == "call_function":
        if node.target in _FN_RELU:
            return [nn.ReLU()]
        if node.target in _FN_LEAKY:
            slope = finite_number(node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01))
            if slope is None:
                raise not_mlp(f"a leaky_relu at node '{node.name}' whose slope is not a number")
            return [nn.LeakyReLU(slope)]
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
            raise not_mlp(f"{article(type(child).__name__)} layer")
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
                raise not_mlp(f"{article(type(mod).__name__)} that does not follow a Linear layer "
                              "(two activations in a row, or one before the first Linear)")
            acts.append(mod)
    if len(acts) == len(linears) and linears:
        raise not_mlp(f"an activation ({type(acts[-1]).__name__}) after the output layer")
    return linears, acts


def _tensor_attr(module: nn.Module, attr: str, dims: int, where: str) -> torch.Tensor:
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


def _fresh_linear(module: nn.Module, where: str) -> nn.Linear:
    weight = _tensor_attr(module, "weight", 2, where)
    try:
        bias = getattr(module, "bias")
    except Exception:
        bias = None
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (weight.shape[0],)):
        raise not_mlp(f"{where} whose bias {short(bias, 40)} does not match its {weight.shape[0]} outputs")
    return new_linear(weight, bias)


def _fresh_activation(kind: str, module: nn.Module, where: str) -> nn.Module:
    inplace = getattr(module, "inplace", False) is True
    if kind == "ReLU":
        return nn.ReLU(inplace=inplace)
    if kind == "LeakyReLU":
        slope = finite_number(getattr(module, "negative_slope", None))
        if slope is None:
            raise not_mlp(f"{where} whose negative_slope is {short(getattr(module, 'negative_slope', None), 40)}, "
                          "not a finite number")
        return nn.LeakyReLU(slope, inplace=inplace)
    return new_prelu(_tensor_attr(module, "weight", 1, where))


def _fresh(module: nn.Module) -> nn.Module:
    """A new module computing what ``module`` computes, with copied weights and nothing else.

    Hooks a user registered on ``module`` (and any other attribute) do not come along.
    """
    where = f"{article(type(module).__name__)}"
    if isinstance(module, nn.Linear):
        return _fresh_linear(module, where)
    kind = next(k.__name__ for k in ACTIVATIONS if isinstance(module, k))
    return _fresh_activation(kind, module, where)


def module_to_mlp(module: nn.Module, *, max_memory: int | None = None) -> MLP:
    """Convert any chain-shaped ``nn.Module`` into an independent canonical MLP.

    The original is left untouched: the MLP is made of new modules holding float32
    copies of its weights, so hooks registered on the original do not come along.
    Before anything is copied or traced, the module tree's depth and size, its
    number of Linear layers and its tensors (kind and declared bytes, against
    ``max_memory``) are checked.

    Raises:
        ModelLoadError: Not a chain-shaped MLP, or over one of those limits.
    """
    nodes = walk_modules(module)
    check_layer_count(sum(isinstance(m, nn.Linear) for _, m in nodes))
    check_tensors(module_tensors(nodes), "this model", max_memory)
    linears, acts = _split(_module_sequence(module))
    # float32 throughout probe; a float64 model is converted (and checked against the original)
    mlp = assemble([_fresh(m) for m in linears], [_fresh(a) for a in acts])
    verify_same_function(module, mlp)
    return mlp


@torch.no_grad()
def verify_same_function(original: nn.Module, mlp: MLP, hint: str = "") -> None:
    """Refuse a conversion whose result computes something else than the original.

    The original runs in eval mode without the hooks its user registered
    (:func:`probe.models.guards.plain_eval`); both are restored afterwards.
    """
    width = mlp.linears[0].in_features
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, width, generator=gen) * 3
    dtype = next((p.dtype for p in original.parameters() if p.is_floating_point()), torch.float32)
    with plain_eval(original):
        try:
            want = original(x.clone().to(dtype))
        except Exception as exc:
            raise not_mlp(f"a model that fails on a batch of width {width}: "
                          f"{type(exc).__name__}: {clip(str(exc), 160)}") from None
    got = mlp.eval()(x.clone())
    if not isinstance(want, torch.Tensor) or want.shape != got.shape or \
            not torch.allclose(want.float(), got, rtol=1e-4, atol=1e-5):
        raise not_mlp("a model whose outputs differ from those of the Linear/activation chain "
                      "read from it (a hidden residual, normalisation or different activation)",
                      fix=hint or None)
