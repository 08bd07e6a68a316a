"""TorchScript models (``torch.jit.save``) as canonical MLPs: only with ``trust``, since their code runs.

The Linear submodules are read in the order the scripted ``forward`` calls
them (followed through its graph, into containers; registration order when
``forward`` has control flow), the activations from activation modules or from
a functional ``relu``/``leaky_relu`` in the scripted ``forward`` (the slope
read from the code text, or the ``--activation`` spec), and the conversion is
checked by running both on random inputs. Scripted norms (LayerNorm, RMSNorm,
a BatchNorm1d to fold) and smooth activations are rebuilt as fresh modules from
their attributes and read like any module chain (:mod:`probe.models.chain`).
A refusal names its cause: a residual add, a layer order that could not be
followed, or the activation.
"""

from __future__ import annotations

import torch
from torch import nn

from probe.core.errors import ModelLoadError
from probe.core.limits import MAX_MODULE_DEPTH
from probe.core.variants import GRAMMAR, Variant
from probe.models.chain import fresh_linear as _fresh_linear
from probe.models.chain import read_chain
from probe.models.convert import PASSTHROUGH_NAMES, assemble, not_mlp, verify_same_function
from probe.models.guards import check_layer_count, check_tensors, clip, module_tensors, walk_modules
from probe.models.mlp import MLP, NORMS
from probe.models.script_modules import EPS_CANDIDATES, copy_scripted, norm_eps
from probe.models.script_text import script_candidates
from probe.models.trace import ACTIVATIONS, output_activation_refusal


_OUTPUT_ACTS = {"aten::sigmoid": "sigmoid", "aten::sigmoid_": "sigmoid", "aten::softmax": "softmax",
                "aten::log_softmax": "log_softmax"}
_OUTPUT_MODULES = {"Sigmoid": "sigmoid", "Softmax": "softmax", "LogSoftmax": "log_softmax"}


def _output_activation(script: torch.jit.ScriptModule) -> str | None:
    """A sigmoid/softmax/log_softmax the top-level forward applies after its last layer call, if any."""
    try:
        nodes = list(script.graph.nodes())
    except Exception:
        return None
    last_call = max((i for i, n in enumerate(nodes) if n.kind() in ("prim::CallMethod", "aten::linear")),
                    default=-1)
    for node in nodes[last_call + 1:]:
        if node.kind() in _OUTPUT_ACTS:
            return _OUTPUT_ACTS[node.kind()]
        if node.kind() == "prim::CallFunction":
            text = str(node)
            for fn in ("log_softmax", "softmax", "sigmoid"):
                if f"functional.{fn}" in text or f".{fn}\"" in text:
                    return fn
    return None


#: Graph operations that combine two tensors: a residual or skip connection in a forward().
_COMBINE = {"aten::add", "aten::add_", "aten::sub", "aten::mul", "aten::div", "aten::cat", "aten::stack",
            "aten::hstack", "aten::concat"}
_LEAVES = {"Linear", "BatchNorm1d"} | {cls.__name__ for cls in ACTIVATIONS + NORMS}


def _kind(module: object) -> str:
    kind = getattr(module, "original_name", None)
    return kind if isinstance(kind, str) else type(module).__name__


def call_order(script: torch.jit.ScriptModule) -> list[str] | None:
    """The submodules ``forward`` calls, in call order (containers followed), or ``None`` when unknown.

    Unknown: control flow (``if``/loops) in a ``forward``, a call probe cannot
    resolve to a submodule, or nesting deeper than ``MAX_MODULE_DEPTH``.
    """
    named = dict(script.named_modules())
    order: list[str] = []

    def visit(module: torch.jit.ScriptModule, prefix: str, depth: int) -> bool:
        try:
            graph = module.graph
        except Exception:
            return False
        inputs = list(graph.inputs())
        if depth > MAX_MODULE_DEPTH or not inputs:
            return False
        paths = {inputs[0].unique(): prefix}
        for node in graph.nodes():
            if list(node.blocks()):
                return False
            if node.kind() == "prim::GetAttr" and node.inputsAt(0).unique() in paths:
                base = paths[node.inputsAt(0).unique()]
                paths[node.output().unique()] = f"{base}.{node.s('name')}" if base else node.s("name")
            elif node.kind() == "prim::CallMethod":
                path = paths.get(node.inputsAt(0).unique())
                sub = named.get(path) if path is not None else None
                if sub is None or node.s("name") != "forward":
                    return False
                if _kind(sub) in _LEAVES or not any(True for _ in sub.children()):
                    order.append(path)
                elif not visit(sub, path, depth + 1):
                    return False
        return True

    try:
        return order if visit(script, "", 0) else None
    except Exception:  # a graph of a shape this reader does not know: fall back to registration order
        return None


def _combines_tensors(script: torch.jit.ScriptModule) -> str | None:
    """The first graph operation that combines two tensors (a residual add), if any."""
    for _, module in script.named_modules():
        try:
            nodes = list(module.graph.nodes())
        except Exception:
            continue
        for node in nodes:
            if node.kind() not in _COMBINE:
                continue
            tensors = [v for v in node.inputs() if v.type().kind() == "TensorType"]
            lists = [v for v in node.inputs() if v.type().kind() == "ListType"]
            if len(tensors) >= 2 or lists:
                return node.kind().replace("aten::", "")
    return None


def _failure_cause(script: torch.jit.ScriptModule, order: list[str] | None, followed: bool,
                   variant: Variant | None) -> tuple[str, str]:
    """(what was found, the fix) for a TorchScript model whose conversion computes something else."""
    combine = _combines_tensors(script)
    if combine is not None:
        return (f"a TorchScript model whose forward() combines two tensors ('{combine}'): a residual or skip "
                "connection, which a Linear/activation chain cannot express",
                "export the plain MLP part of the model on its own")
    if not followed:
        why = ("has control flow (if/for) or calls probe could not resolve" if order is None
               else "calls a layer more than once")
        return (f"a TorchScript model whose forward() {why}, so probe could not follow the order it calls "
                "its Linear layers in, and their registration order computes something else",
                "save the state_dict and load it with --activation and --layer-order (names in forward order), "
                "or script a forward() without control flow")
    if variant is not None:
        return ("a TorchScript model whose outputs differ from those of its Linear layers (in forward order) "
                f"with the --activation given ({variant.spec})",
                "check that --activation matches the model (e.g. leaky:0.2), and that forward() has no "
                "normalisation or other operation between the layers")
    return ("a TorchScript model that no chain of its Linear layers (in forward order) with the activation read "
            "from its code reproduces",
            f"pass the right --activation (one of: {GRAMMAR}), or check that forward() has no normalisation or "
            "other operation between the layers")


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
        if kind in _OUTPUT_MODULES:
            raise output_activation_refusal(_OUTPUT_MODULES[kind])
        if kind in _LEAVES:
            layers.append((name, kind, sub))
        elif any(True for _ in sub.children()):
            continue  # a container of other modules
        else:
            raise not_mlp(f"a {clip(kind, 40)} layer at '{clip(name, 60)}' in the TorchScript model")
    output_act = _output_activation(script)
    if output_act is not None:
        raise output_activation_refusal(output_act)
    order = call_order(script)
    followed = order is not None and all(order.count(name) == 1 for name, _, _ in layers)
    if followed:
        layers.sort(key=lambda layer: order.index(layer[0]))
    check_layer_count(sum(kind == "Linear" for _, kind, _ in layers))
    check_tensors(module_tensors(nodes), "this TorchScript model", max_memory)
    norm_kinds = {"BatchNorm1d"} | {c.__name__ for c in NORMS}
    unread = [name for name, kind, sub in layers if kind in norm_kinds and not norm_eps(kind, sub)[0]]
    if unread:  # a traced norm records no eps: try the likely ones, keep the one that reproduces the model
        return _with_eps_candidates(script, layers, unread, variant, order, followed)
    chain = read_chain([copy_scripted(kind, sub, f"a TorchScript {kind} at '{clip(name, 60)}'")
                        for name, kind, sub in layers]) if any(k != "Linear" for _, k, _ in layers) else None
    linears = chain.linears if chain else [_fresh_linear(sub, f"a TorchScript Linear at '{clip(name, 60)}'")
                                           for name, _, sub in layers]
    acts = chain.acts if chain else []
    norms = chain.norms if chain else None
    if variant is not None:
        acts = [variant.make_module() for _ in range(len(linears) - 1)]
    elif not acts:
        code = str(script.code) + "".join(str(m.code) for _, m in script.named_modules() if hasattr(m, "code"))
        candidates = script_candidates(code)
        if not candidates:
            raise ModelLoadError(
                "Could not tell which activation this TorchScript model uses",
                expected="activation modules, or a functional activation in forward() (relu, leaky_relu, gelu, "
                         "elu, celu, selu, silu, mish, softplus or tanh)",
                found="neither", fix=f"pass --activation with one of: {GRAMMAR}")
        for _, make in candidates:
            acts = [make() for _ in range(len(linears) - 1)]
            mlp = assemble(linears, acts)
            try:
                verify_same_function(script, mlp)
                mlp.notes = _reshape_note(script)
                return mlp
            except ModelLoadError:
                continue
        functions = list(dict.fromkeys(name for name, _ in candidates))
        if len(functions) > 1 and len(linears) > 2:
            raise not_mlp(f"a TorchScript model whose forward() applies different activations in different "
                          f"layers ({', '.join(functions)}), which one --activation cannot express",
                          fix="save the pickled model (torch.save(model)), whose layers probe reads one by one")
        raise not_mlp(*_failure_cause(script, order, followed, None))
    mlp = assemble(linears, acts, norms)
    mlp.notes = (chain.notes if chain else []) + _reshape_note(script)
    try:
        verify_same_function(script, mlp)
    except ModelLoadError as exc:
        if "outputs differ" not in str(exc):
            raise
        raise not_mlp(*_failure_cause(script, order, followed, variant)) from None
    return mlp


def _with_eps_candidates(script: torch.jit.ScriptModule, layers: list[tuple[str, str, nn.Module]],
                         unread: list[str], variant: Variant | None, order: list[str] | None,
                         followed: bool) -> MLP:
    """The conversion with the first candidate eps (for the norms whose eps is unread) that reproduces the model."""
    tried = []
    for eps in (None,) + EPS_CANDIDATES:  # None: each module's default first
        chain = read_chain([copy_scripted(kind, sub, f"a TorchScript {kind} at '{clip(name, 60)}'", eps)
                            for name, kind, sub in layers])
        acts = [variant.make_module() for _ in range(len(chain.linears) - 1)] if variant is not None else chain.acts
        mlp = assemble(chain.linears, acts, chain.norms)
        mlp.notes = chain.notes + [f"the eps of the traced norm(s) {', '.join(repr(n) for n in unread[:4])} is "
                                   "not recorded in the file; probe used the one that reproduces the model's "
                                   f"outputs ({'the default' if eps is None else eps})"]
        try:
            verify_same_function(script, mlp)
            return mlp
        except ModelLoadError as exc:
            if "outputs differ" not in str(exc):
                raise
            tried.append("default" if eps is None else f"{eps:g}")
    combine = _combines_tensors(script)
    if combine is not None or not followed:
        raise not_mlp(*_failure_cause(script, order, followed, variant))
    raise not_mlp(f"a traced TorchScript model with norm layers ({', '.join(repr(n) for n in unread[:4])}) whose "
                  "eps could not be read from the traced file, and no usual eps (tried "
                  f"{', '.join(tried)}) reproduces its outputs",
                  fix="script the model (torch.jit.script records the eps), or save the pickled model "
                      "(torch.save(model))")


#: The numeric arguments (after the input) of a traced activation's call, by name, in order.

_RESHAPE_NOTE = "the output's final reshape to [N] was dropped (same values, shape [N, 1])"


def _reshape_note(script: torch.jit.ScriptModule) -> list[str]:
    """The note of a final squeeze/view/flatten/reshape of the output, which the conversion drops."""
    try:
        nodes = list(script.graph.nodes())
    except Exception:
        return []
    last_call = max((i for i, n in enumerate(nodes) if n.kind() in ("prim::CallMethod", "aten::linear")),
                    default=-1)
    reshapes = {"aten::squeeze", "aten::view", "aten::flatten", "aten::reshape", "aten::squeeze_"}
    if any(n.kind() in reshapes for n in nodes[last_call + 1:]):
        return [_RESHAPE_NOTE]
    if any("flatten" in str(n) or "squeeze" in str(n) for n in nodes[last_call + 1:]
           if n.kind() == "prim::CallFunction"):
        return [_RESHAPE_NOTE]
    return []
