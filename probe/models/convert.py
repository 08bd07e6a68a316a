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

import sys

import torch
from torch import nn

from probe.core.errors import ModelLoadError
from probe.models.chain import read_chain
from probe.models.fresh import new_linear, new_prelu
from probe.models.guards import (check_layer_count, check_tensors, check_widths, clip, module_tensors,
                                 plain_eval, walk_modules)
from probe.models.mlp import MLP
from probe.models.trace import ACTIVATIONS, PASSTHROUGH, PASSTHROUGH_NAMES, module_sequence, not_mlp

__all__ = ["ACTIVATIONS", "PASSTHROUGH", "PASSTHROUGH_NAMES", "assemble", "module_to_mlp", "new_linear",
           "new_prelu", "not_mlp", "verify_same_function"]


def assemble(linears: list[nn.Linear], acts: list[nn.Module],
             norms: list[nn.Module | None] | None = None) -> MLP:
    """Interleave Linear layers, norms and activations into a canonical :class:`MLP`."""
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
            if norms is not None and norms[i] is not None:
                layers.append(norms[i])
            layers.append(acts[i])
    return MLP(*layers)


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
    module, unwrapped = unwrap(module)
    nodes = walk_modules(module)
    check_layer_count(sum(isinstance(m, nn.Linear) for _, m in nodes))
    check_tensors(module_tensors(nodes), "this model", max_memory)
    # float32 throughout probe; a float64 model is converted (and checked against the original)
    chain = read_chain(module_sequence(module))
    mlp = assemble(chain.linears, chain.acts, chain.norms)
    mlp.notes = unwrapped + chain.notes
    verify_same_function(module, mlp)
    return mlp


def _wrapper_classes() -> tuple[tuple[type, str, str], ...]:
    """(class, attribute holding the model, name) of the wrappers probe sees through, by isinstance only.

    torch.compile's ``OptimizedModule`` is looked up only when its module is
    already imported (unpickling one imports it): no import for plain models.
    """
    wrappers = [(nn.DataParallel, "module", "DataParallel"),
                (nn.parallel.DistributedDataParallel, "module", "DistributedDataParallel")]
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    compiled = getattr(eval_frame, "OptimizedModule", None)
    if isinstance(compiled, type):
        wrappers.append((compiled, "_orig_mod", "torch.compile OptimizedModule"))
    return tuple(wrappers)


def unwrap(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """The model inside DataParallel / DistributedDataParallel / torch.compile wrappers, and a note per wrapper.

    Only isinstance checks and the wrapper's registered submodule: no code of the model runs.
    """
    notes: list[str] = []
    for _ in range(8):
        found = next(((attr, name) for cls, attr, name in _wrapper_classes() if isinstance(module, cls)), None)
        if found is None:
            break
        inner = module._modules.get(found[0])
        if not isinstance(inner, nn.Module):
            break
        notes.append(f"the {found[1]} wrapper was unwrapped: the model it holds (its .{found[0]}) is analysed")
        module = inner
    return module, notes


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
    if isinstance(want, torch.Tensor) and got.shape[-1] == 1 and want.shape == got.shape[:-1]:
        want = want.reshape(got.shape)  # a final squeeze/view(-1), dropped by the conversion
    if not isinstance(want, torch.Tensor) or want.shape != got.shape or \
            not torch.allclose(want.float(), got, rtol=1e-4, atol=1e-5):
        raise not_mlp("a model whose outputs differ from those of the Linear/activation chain "
                      "read from it (a hidden residual, an unusual normalisation or a different activation)",
                      fix=hint or None)
