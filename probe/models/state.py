"""Bare state_dicts as canonical MLPs: layers grouped by module name, ordered by names and shapes.

A state_dict records weights, not the order ``forward`` uses them in, and its
dict order means nothing (safetensors returns keys sorted, so
``layers.10.weight`` comes before ``layers.2.weight``). Entries are grouped by
module prefix (``fc1.weight`` and ``fc1.bias`` make the module ``fc1``), and
the Linear layers are put in order:

1. by ``layer_order`` when the caller gives it (checked against the names and
   the shapes);
2. else by the shape chain (each layer's outputs feed the next one's inputs)
   when only one order of all the layers fits it;
3. else by the names with natural sort (``fc2 < fc10``, ``layers.2 <
   layers.10``), with a warning that the order could not be verified and how
   to give it; no warning when the names are the numeric indices of one
   ``nn.Sequential`` (``0, 2, 4`` or ``net.0, net.2``), which number its
   modules in the order it calls them.

A 1-D ``weight`` with no bias is a PReLU slope; it belongs to the Linear layer
whose name comes just before it. Not so for a norm: a 1-D ``weight`` with a
``bias`` of the same length (LayerNorm, BatchNorm), or, with numeric
``nn.Sequential`` keys, a 1-D weight at index k whose next Linear is at k+2 or
later (an RMSNorm followed by a parameter-free activation; a PReLU at k is
followed by the Linear at k+1) is refused as a norm, which a state_dict cannot
place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Sequence

import torch
from torch import nn

from probe.core.errors import ModelLoadError, article
from probe.core.variants import Variant, parse_variant
from probe.models.convert import assemble, new_linear, new_prelu, not_mlp
from probe.models.guards import check_layer_count, check_tensors, check_widths, short
from probe.models.mlp import MLP

#: Depth-first steps spent looking for a second order of the layers before calling the order ambiguous.
_SEARCH_STEPS = 100_000


@dataclass(frozen=True)
class StateMLP:
    """A state_dict read into a canonical MLP.

    Attributes:
        mlp: The canonical MLP.
        order: The module names of its Linear layers, in the order used.
        warnings: What probe could not verify about the order.
    """

    mlp: MLP
    order: tuple[str, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Linear:
    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None

    @property
    def fan_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def fan_out(self) -> int:
        return int(self.weight.shape[0])


def natural_key(name: str) -> tuple:
    """Sort key that compares the digit runs of ``name`` as numbers: ``fc2 < fc10``."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def state_problem(state: object) -> str | None:
    """What is wrong with a would-be state_dict, or ``None``: a dict of str keys to tensors."""
    if not isinstance(state, dict):
        return f"{article(type(state).__name__)} ({short(state, 60)})"
    for key, value in state.items():
        if not isinstance(key, str):
            return f"a dict with the key {short(key, 40)} of type {type(key).__name__}"
        if not isinstance(value, torch.Tensor):
            return f"a non-tensor entry {short(key, 60)} ({type(value).__name__})"
    return None


def _group(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{module name: {"weight": ..., "bias": ...}}``; any other entry is refused."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        prefix, _, param = key.rpartition(".")
        if param in ("running_mean", "running_var", "num_batches_tracked"):
            raise not_mlp(f"state_dict entry {short(key, 60)}: the running statistics of a BatchNorm layer, "
                          "which a bare state_dict cannot place", fix=_NORM_FIX)
        if param not in ("weight", "bias"):
            raise not_mlp(f"state_dict entry {short(key, 60)} of shape {tuple(value.shape)}, which is neither "
                          "a Linear weight nor its bias (a normalisation or other layer?)",
                          fix="load the pickled model (torch.save(model)) or its TorchScript, whose forward probe "
                              "follows, or save the state_dict of the Linear layers alone")
        modules.setdefault(prefix, {})[param] = value
    return modules


_NORM_FIX = ("save the model itself: the pickled model (torch.save(model)) or its TorchScript, whose forward "
             "probe follows, or "
             "probe.save_checkpoint(probe.as_model(model).mlp, path) from a notebook that holds the model")


def _seq_index(name: str) -> tuple[str, int] | None:
    """``('net', 4)`` for ``net.4``, ``('', 4)`` for ``4``: an ``nn.Sequential`` index, or ``None``."""
    prefix, _, last = name.rpartition(".")
    return (prefix, int(last)) if last.isdigit() else None


def _norm_refusal(name: str, weight: torch.Tensor, why: str) -> ModelLoadError:
    return not_mlp(f"state_dict entry {short(name + '.weight', 60)} of shape {tuple(weight.shape)}: {why}, "
                   "a normalisation layer (LayerNorm, RMSNorm, BatchNorm), which a bare state_dict cannot place "
                   "(it does not record the norm's kind, eps or position)", fix=_NORM_FIX)


def _norm_by_position(name: str, modules: dict[str, dict[str, torch.Tensor]]) -> bool:
    """A 1-D weight at Sequential index k whose next Linear is at k+2 or later: a norm, not a PReLU.

    (A PReLU at k is followed by the Linear at k+1; with a parameter-free
    activation between it and the next Linear, the weight is a norm's gain.)
    """
    here = _seq_index(name)
    if here is None:
        return False
    after = [idx[1] for other, params in modules.items()
             if (idx := _seq_index(other)) is not None and idx[0] == here[0] and idx[1] > here[1]
             and params.get("weight") is not None and params["weight"].dim() == 2]
    return bool(after) and min(after) >= here[1] + 2


def _split_modules(modules: dict[str, dict[str, torch.Tensor]], variant: Variant,
                   notes: list[str] | None = None) -> tuple[list[_Linear], dict[str, torch.Tensor]]:
    """The Linear layers, and the PReLU slopes keyed by the Linear they follow (by name).

    A bias-free 1-D weight two modules before the next Linear is ambiguous: a
    norm's gain then a parameter-free activation, or a PReLU then a Dropout.
    Without ``--activation prelu`` it is refused naming both; with it, it is
    read as PReLU slopes and ``notes`` gets a warning to check the sanity loss.
    """
    linears: list[_Linear] = []
    slopes: dict[str, torch.Tensor] = {}
    previous: _Linear | None = None
    for name in sorted(modules, key=natural_key):
        params = modules[name]
        weight, bias = params.get("weight"), params.get("bias")
        where = f"state_dict entries {short(name + '.*', 60)}"
        if weight is None:
            raise not_mlp(f"{where}: a bias of shape {tuple(bias.shape)} with no weight")
        if weight.dim() == 2:
            if bias is not None and tuple(bias.shape) != (weight.shape[0],):
                raise not_mlp(f"{where}: a weight of shape {tuple(weight.shape)} with a bias of shape "
                              f"{tuple(bias.shape)}, which is neither a Linear weight nor its bias")
            previous = _Linear(name, weight, bias)
            linears.append(previous)
            continue
        if weight.dim() == 1 and bias is not None and tuple(bias.shape) == tuple(weight.shape):
            raise _norm_refusal(name, weight, "a 1-D weight with a bias of the same length")
        if weight.dim() == 1 and bias is None and _norm_by_position(name, modules):
            if not variant.learnable:
                raise _norm_refusal(name, weight, "a 1-D weight whose next Linear layer is not the next module: "
                                                  "most likely a norm's gain with a parameter-free activation "
                                                  "after it (if it is a PReLU followed by a Dropout, pass "
                                                  "--activation prelu and check the sanity loss); otherwise")
            if notes is not None:
                notes.append(f"'{name}.weight' was read as PReLU slopes (--activation prelu), but its position "
                             "also fits a norm's gain followed by a parameter-free activation: if the loss of "
                             "the model as analysed is not what you trained, save the model itself instead")
        if weight.dim() == 1 and bias is None and variant.learnable and previous is not None \
                and previous.name not in slopes and weight.numel() in (1, previous.fan_out):
            slopes[previous.name] = weight
            continue
        if weight.dim() == 1 and bias is None and not variant.learnable:
            what = "a 1-D weight with no bias: a PReLU slope (then pass --activation prelu) or a norm layer"
        else:
            what = "neither a Linear weight nor its bias"
        raise not_mlp(f"state_dict entry {short(name + '.weight', 60)} of shape {tuple(weight.shape)}, "
                      f"{what}", fix="load the pickled model (or TorchScript), whose forward probe follows, "
                                     "or a state_dict of Linear layers only")
    return linears, slopes


def _chains(linears: list[_Linear], limit: int = 2) -> tuple[list[list[_Linear]], bool]:
    """Up to ``limit`` orders of all layers whose shapes chain, names in natural order tried first.

    Returns the orders found and whether the search finished (``False`` when it
    ran out of steps before finding ``limit`` orders or proving there are fewer).
    """
    found: list[list[_Linear]] = []
    steps = 0
    used = [False] * len(linears)
    path: list[_Linear] = []

    def search() -> bool:  # False: stop (enough found, or out of steps)
        nonlocal steps
        steps += 1
        if steps > _SEARCH_STEPS:
            return False
        if len(path) == len(linears):
            found.append(list(path))
            return len(found) < limit
        for i, lin in enumerate(linears):
            if used[i] or (path and path[-1].fan_out != lin.fan_in):
                continue
            used[i] = True
            path.append(lin)
            go_on = search()
            path.pop()
            used[i] = False
            if not go_on:
                return False
        return True

    finished = search() or len(found) >= limit
    return found, finished


def _chain_break(order: Sequence[_Linear]) -> str | None:
    for a, b in zip(order, order[1:]):
        if a.fan_out != b.fan_in:
            return (f"'{a.name}' ({a.fan_out} outputs) cannot feed '{b.name}' ({b.fan_in} inputs)")
    return None


def _arrow(order: Sequence[_Linear]) -> str:
    return " -> ".join(lin.name for lin in order)


def _given_order(linears: list[_Linear], layer_order: Sequence[str]) -> list[_Linear]:
    by_name = {lin.name: lin for lin in linears}
    names = [str(n).strip() for n in layer_order]
    names = [n[: -len(".weight")] if n.endswith(".weight") else n for n in names]
    if sorted(names) != sorted(by_name):
        raise ModelLoadError(
            "The layer order given does not name this state_dict's Linear layers",
            expected="each Linear layer's name exactly once: " + ", ".join(sorted(by_name, key=natural_key)),
            found="layer order " + short(",".join(names), 200),
            fix="pass layer_order (CLI --layer-order) with those names, in the order forward() calls them")
    order = [by_name[n] for n in names]
    broken = _chain_break(order)
    if broken is not None:
        raise ModelLoadError("The layer order given does not chain the layers' shapes",
                             expected="each layer's outputs to feed the next layer's inputs",
                             found=broken, fix="check the order forward() calls the layers in")
    return order


def _order_warning(chosen: list[_Linear], other: list[_Linear] | None, by_names: bool) -> str:
    how = "by their names (natural sort)" if by_names else "by the first order their shapes fit"
    also = (f"their shapes also fit {_arrow(other)}" if other is not None
            else "probe could not check every order their shapes fit")
    names = ",".join(lin.name for lin in (other if other is not None else chosen))
    return (f"Layer order not verified: the Linear layers of this state_dict were put in the order "
            f"{_arrow(chosen)} {how}, but {also}, and a state_dict does not record the order forward() "
            f"calls them in. If it is another one, pass it: layer_order=[...] (CLI --layer-order, "
            f"e.g. --layer-order {names}, with the names in forward order), or load the pickled model or "
            "TorchScript, whose forward probe follows.")


def _sequential_indices(linears: list[_Linear]) -> bool:
    """Every Linear is ``PREFIX.<index>`` with one shared prefix: an ``nn.Sequential``, in call order."""
    found = [_seq_index(lin.name) for lin in linears]
    return all(f is not None for f in found) and len({f[0] for f in found}) == 1


def order_linears(linears: list[_Linear], layer_order: Sequence[str] | None = None, *,
                  names_trusted: bool = False) -> tuple[list[_Linear], list[str]]:
    """The layers in forward order, and a warning when that order could not be verified.

    Args:
        linears: The Linear layers, names in natural order.
        layer_order: The order given by the caller (module names), if any.
        names_trusted: The names were written by probe (its checkpoints): no warning.
    """
    if layer_order is not None:
        return _given_order(linears, layer_order), []
    if len(linears) <= 1:
        return linears, []
    chains, finished = _chains(linears)
    if not chains:
        if finished:
            shapes = ", ".join(f"{lin.name} {lin.fan_in}->{lin.fan_out}" for lin in linears[:12])
            raise not_mlp(f"Linear layers whose shapes chain in no order ({shapes}"
                          f"{', ...' if len(linears) > 12 else ''})",
                          fix="save the state_dict of the MLP alone, every Linear layer in the chain")
        raise not_mlp("Linear layers whose order probe could not work out from their shapes",
                      fix="pass layer_order (CLI --layer-order) with the layers' names in forward order")
    if len(chains) == 1 and finished:
        return chains[0], []
    by_names = _chain_break(linears) is None
    if by_names and _sequential_indices(linears):
        return linears, []  # nn.Sequential indices number the modules in the order forward calls them
    chosen = linears if by_names else chains[0]
    other = next((c for c in chains if [x.name for x in c] != [x.name for x in chosen]), None)
    return chosen, ([] if names_trusted else [_order_warning(chosen, other, by_names)])


def read_state(state: dict[str, torch.Tensor], variant: Variant | str, *, max_memory: int | None = None,
               layer_order: Sequence[str] | None = None, names_trusted: bool = False) -> StateMLP:
    """Build an MLP from a bare state_dict, in the order described in this module's docstring.

    Tensors probe cannot analyse, more than ``max_memory`` bytes of declared
    weights and more than ``MAX_HIDDEN_LAYERS`` hidden layers are refused
    before any tensor is copied.

    Raises:
        ModelLoadError: Not a state_dict of a Linear chain, or over a limit.
    """
    variant = parse_variant(variant) if isinstance(variant, str) else variant
    problem = state_problem(state)
    if problem is not None:
        raise ModelLoadError("This state_dict is malformed", expected="a dict of parameter names (str) to tensors",
                             found=problem, fix="save model.state_dict() with torch.save")
    check_tensors(state.items(), "this state_dict", max_memory)
    check_layer_count(sum(v.dim() == 2 for v in state.values()))
    notes: list[str] = []
    linears, slopes = _split_modules(_group(state), variant, notes)
    if not linears:
        raise not_mlp("no Linear layer at all (no 2-D weight in the state_dict)")
    check_widths([linears[0].fan_in] + [lin.fan_out for lin in linears])
    order, warnings = order_linears(linears, layer_order, names_trusted=names_trusted)
    if order[-1].name in slopes:
        raise not_mlp(f"a PReLU slope after '{order[-1].name}', the output layer")
    if variant.learnable and len(order) > 1 and not slopes:
        raise ModelLoadError(
            "This state_dict has no PReLU slope tensors, so it cannot be a PReLU model",
            expected="1-D '*.weight' tensors between the Linear layers for --activation prelu",
            found=f"{len(order)} Linear layers and no slopes",
            fix="pass the activation the model was trained with (relu, leaky or leaky:SLOPE)")
    acts = []
    for lin in order[:-1]:
        act = variant.make_module()
        if isinstance(act, nn.PReLU) and lin.name in slopes:
            act = new_prelu(slopes[lin.name])
        acts.append(act)
    mlp = assemble([new_linear(lin.weight, lin.bias) for lin in order], acts)
    return StateMLP(mlp, tuple(lin.name for lin in order), tuple(warnings) + tuple(notes))


def linears_from_state(state: dict[str, torch.Tensor], variant: Variant | str, *,
                       max_memory: int | None = None, layer_order: Sequence[str] | None = None) -> MLP:
    """The canonical MLP of a bare state_dict (see :func:`read_state`, which also returns warnings)."""
    return read_state(state, variant, max_memory=max_memory, layer_order=layer_order).mlp
