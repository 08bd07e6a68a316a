"""Checks on what a model file produced, made before probe copies, traces or runs any of it.

A loaded object is hostile until checked: a tensor can declare far more data
than it holds (a stride-0 view), be of a kind probe cannot analyse (meta,
sparse, quantized, complex), and a module tree can nest deep enough to break
any recursive walk. Everything here walks iteratively, reads declared sizes
only, and refuses with a :class:`~probe.core.errors.ModelLoadError`.

Limits (besides those of :mod:`probe.core.limits`):

``MAX_MODULE_DEPTH``
    Modules nested inside one another (``nn.Sequential`` in ``nn.Sequential``...).
``MAX_MODULES``
    Modules in one model, containers and pass-through layers included.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from probe.core.errors import ModelLoadError, ProbeError, article
from probe.core.limits import MAX_HIDDEN_LAYERS, MAX_MODULE_DEPTH, MAX_MODULES, check_bytes


#: Hook tables a module's ``__call__`` consults; they are emptied while probe runs a user's model.
_HOOK_TABLES = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")

_RESAVE = "torch.save(model.state_dict(), 'model_state.pt') and load that with --activation"
QUANTIZED_FIX = ("dequantize before saving: torch.save({k: v.dequantize() if v.is_quantized else v "
                 "for k, v in model.state_dict().items()}, 'model_state.pt')")


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, for messages quoting hostile input."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails is itself a sign of a broken object
        text = f"<{type(value).__name__}>"
    return clip(text, limit)


def too_many_layers(hidden: int) -> ModelLoadError:
    return ModelLoadError(
        f"This model has {hidden} hidden layers, more than probe analyses",
        expected=f"at most {MAX_HIDDEN_LAYERS} hidden layers (the limit MAX_HIDDEN_LAYERS in "
                 "probe.core.limits: every diagnostic walks the layers one by one)",
        found=f"{hidden} hidden layers ({hidden + 1} Linear layers)",
        fix="analyse a shallower model, or export the part of the network you want to study on its own")


def check_layer_count(linears: int) -> None:
    """Refuse a chain of ``linears`` Linear layers with more than ``MAX_HIDDEN_LAYERS`` hidden ones."""
    if linears - 1 > MAX_HIDDEN_LAYERS:
        raise too_many_layers(linears - 1)


def check_widths(widths: list[int]) -> None:
    """Refuse a layer of width 0 (input, hidden or output): it computes nothing."""
    if any(w <= 0 for w in widths):
        where = next(i for i, w in enumerate(widths) if w <= 0)
        name = "the input" if where == 0 else ("the output" if where == len(widths) - 1
                                              else f"hidden layer {where}")
        shown = widths if len(widths) <= 12 else widths[:12] + ["..."]
        raise ModelLoadError(f"Layer widths must be positive, but {name} has width {widths[where]}",
                             expected="at least one unit in every layer",
                             found="widths " + "-".join(map(str, shown)),
                             fix="re-save the model; a layer without units computes nothing")


def tensor_problem(t: torch.Tensor) -> tuple[str, str] | None:
    """``(what it is, how to fix it)`` for a tensor probe cannot analyse, else ``None``.

    Only metadata is read (layout, device, dtype): never the values.
    """
    try:
        if isinstance(t, nn.parameter.UninitializedTensorMixin):
            return ("an uninitialised lazy parameter (no shape, no values)",
                    "run one forward pass through the model before saving it, so lazy layers get their shapes")
        if t.is_meta:
            return ("a tensor on the meta device, which has a shape but no values",
                    "save the model after its weights are loaded or initialised, not a meta-device skeleton")
        if t.is_quantized:
            return "a quantized tensor", QUANTIZED_FIX
        if t.is_nested:
            return "a nested tensor", _RESAVE
        if t.layout != torch.strided:
            return (f"a {str(t.layout).replace('torch.', '')} tensor (sparse)",
                    "save dense weights: torch.save({k: v.to_dense() for k, v in "
                    "model.state_dict().items()}, 'model_state.pt')")
        if t.is_complex():
            return ("a complex tensor (probe would have to drop its imaginary part)",
                    "probe analyses real-valued MLPs; save real weights (complex ones are refused, "
                    "never cast to real)")
        t.numel()  # raises for tensors without a readable shape
    except Exception as exc:  # a tensor subclass whose metadata cannot even be read
        return f"a tensor whose shape cannot be read ({type(exc).__name__})", _RESAVE
    return None


def declared_bytes(t: torch.Tensor) -> int:
    """Bytes probe allocates to copy ``t`` as float32: its declared shape, not its storage."""
    return t.numel() * max(t.element_size(), 4)


def check_tensors(named: Iterable[tuple[str, torch.Tensor]], where: str,
                  max_memory: int | None = None) -> None:
    """Refuse any tensor probe cannot analyse, then tensors declaring more than ``max_memory`` bytes.

    Args:
        named: ``(name, tensor)`` pairs; non-tensors are skipped.
        where: ``"the model file m.pt"``: how messages name the source.
        max_memory: Byte budget (``None``: probe.core.limits.DEFAULT_MAX_MEMORY).
    """
    total = 0
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            continue
        problem = tensor_problem(t)
        if problem is not None:
            found, fix = problem
            raise ModelLoadError(f"{_capital(where)} holds a tensor probe cannot analyse",
                                 expected="dense real floating-point tensors (float16/32/64, bfloat16)",
                                 found=f"{found} at {short(name)}", fix=fix)
        total += declared_bytes(t)
    budget(total, f"{_capital(where)} (its tensors at their declared shapes)", max_memory)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def budget(nbytes: float, what: str, max_memory: int | None) -> None:
    """:func:`probe.core.limits.check_bytes`, raising a ModelLoadError with the same paragraph."""
    try:
        check_bytes(nbytes, what, max_memory)
    except ModelLoadError:
        raise
    except ProbeError as exc:
        raise ModelLoadError(exc.what, expected=exc.expected, found=exc.found, fix=exc.fix) from None


def _children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """A module's direct children, read from its ``_modules`` table without ``__getattr__``."""
    if isinstance(module, torch.jit.ScriptModule):
        return list(module.named_children())
    table = vars(module).get("_modules")
    if not isinstance(table, dict):
        raise ModelLoadError("A module in this model is broken",
                             expected="nn.Module objects with their table of submodules",
                             found=f"{article(type(module).__name__)} whose submodule table is {short(table, 40)}",
                             fix=f"re-save the model: {_RESAVE}")
    for key, child in table.items():
        if child is not None and not isinstance(child, nn.Module):
            raise ModelLoadError("A module in this model is broken",
                                 expected="submodules that are nn.Module objects",
                                 found=f"{short(child, 40)} registered as submodule {short(key, 40)}",
                                 fix=f"re-save the model: {_RESAVE}")
    return [(str(k), c) for k, c in table.items() if c is not None]


def walk_modules(root: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module under ``root`` (itself first) in definition order, like ``named_modules``.

    Iterative, so a deep tree cannot exhaust the interpreter's stack; refuses
    nesting deeper than ``MAX_MODULE_DEPTH``, more than ``MAX_MODULES`` modules
    and a module that contains itself. A module shared by several parents is
    listed once.
    """
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module, tuple[int, ...]]] = [("", root, ())]
    while stack:
        name, module, path = stack.pop()
        if id(module) in path:
            raise ModelLoadError("This model contains itself",
                                 expected="a tree of modules", found=f"module '{name}' nested inside itself",
                                 fix=f"re-save the model: {_RESAVE}")
        if len(path) > MAX_MODULE_DEPTH:
            raise ModelLoadError(
                "This model's modules are nested too deeply",
                expected=f"at most {MAX_MODULE_DEPTH} levels of modules inside modules "
                         "(MAX_MODULE_DEPTH in probe.core.limits)",
                found=f"more than {MAX_MODULE_DEPTH} levels (e.g. nn.Sequential inside nn.Sequential)",
                fix="flatten the model into one nn.Sequential, or save its state_dict and load that with "
                    "--activation")
        if id(module) in seen:
            continue
        seen.add(id(module))
        out.append((name, module))
        if len(out) > MAX_MODULES:
            raise ModelLoadError("This model has too many modules",
                                 expected=f"at most {MAX_MODULES} modules (MAX_MODULES in probe.models.guards)",
                                 found=f"more than {MAX_MODULES}", fix="export the MLP part of the model on its own")
        inner = path + (id(module),)
        children = _children(module)
        for child_name, child in reversed(children):
            stack.append((f"{name}.{child_name}" if name else child_name, child, inner))
    return out


def module_tensors(modules: Iterable[tuple[str, nn.Module]]) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor held by these modules: parameters, buffers and plain tensor attributes."""
    for name, module in modules:
        if isinstance(module, torch.jit.ScriptModule):
            for key, t in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
                yield (f"{name}.{key}" if name else key), t
            continue
        state = vars(module)
        tables = [state] + [state.get(k) for k in ("_parameters", "_buffers")]
        for table in tables:
            if isinstance(table, dict):
                for key, t in table.items():
                    if isinstance(t, torch.Tensor):
                        yield (f"{name}.{key}" if name else str(key)), t


@contextmanager
def plain_eval(root: nn.Module) -> Iterator[None]:
    """Run a user's model in eval mode with none of its hooks, then put everything back.

    Forward (pre-)hooks and backward hooks a user registered are instrumentation,
    not part of the function probe analyses: they are set aside for the call and
    restored afterwards, as is every submodule's own train/eval flag.
    """
    if isinstance(root, torch.jit.ScriptModule):  # hooks are compiled in; only the flags change
        flags = [(m, m.training) for _, m in root.named_modules()]
        root.eval()
        try:
            yield
        finally:
            for m, flag in flags:
                m.train(flag)
        return
    saved = []
    for _, module in walk_modules(root):
        state = vars(module)
        hooks = {k: state[k] for k in _HOOK_TABLES if k in state}
        saved.append((module, state.get("training", False), hooks))
        for k in hooks:
            state[k] = OrderedDict()
        state["training"] = False
    try:
        yield
    finally:
        for module, flag, hooks in saved:
            state = vars(module)
            state["training"] = flag
            state.update(hooks)


def finite_number(value: object) -> float | None:
    """``value`` as a finite float when it is a real number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
