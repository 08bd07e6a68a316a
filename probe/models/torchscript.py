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

import re

import torch
from torch import nn

from probe.core.errors import ModelLoadError
from probe.core.limits import MAX_MODULE_DEPTH
from probe.core.variants import GRAMMAR, Variant
from probe.models.chain import fresh_activation as _fresh_activation
from probe.models.chain import fresh_linear as _fresh_linear
from probe.models.chain import read_chain, tensor_attr
from probe.models.convert import PASSTHROUGH_NAMES, assemble, not_mlp, verify_same_function
from probe.models.guards import check_layer_count, check_tensors, clip, finite_number, module_tensors, walk_modules
from probe.models.mlp import MLP, NORMS
from probe.models.trace import ACTIVATIONS, output_activation_refusal


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


def _script_candidates(code: str) -> list[tuple[str, object]]:
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
_PARAMS = ("negative_slope", "alpha", "beta", "threshold", "lower", "upper", "approximate")


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
    chain = read_chain([_copy(kind, sub, f"a TorchScript {kind} at '{clip(name, 60)}'")
                        for name, kind, sub in layers]) if any(k != "Linear" for _, k, _ in layers) else None
    linears = chain.linears if chain else [_fresh_linear(sub, f"a TorchScript Linear at '{clip(name, 60)}'")
                                           for name, _, sub in layers]
    acts = chain.acts if chain else []
    norms = chain.norms if chain else None
    if variant is not None:
        acts = [variant.make_module() for _ in range(len(linears) - 1)]
    elif not acts:
        code = str(script.code) + "".join(str(m.code) for _, m in script.named_modules() if hasattr(m, "code"))
        candidates = _script_candidates(code)
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
        chain = read_chain([_copy(kind, sub, f"a TorchScript {kind} at '{clip(name, 60)}'", eps)
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


def _copy(kind: str, sub: object, where: str, eps_guess: float | None = None) -> nn.Module:
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
