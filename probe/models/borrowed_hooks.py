"""Forward hooks that probe attaches to a user's modules, inert in a copy or a pickle.

A hook registered with ``module.register_forward_hook`` lives in the module's
hook table for as long as it is attached; for ``probe.track`` that is the
user's whole training loop. Meanwhile the user's own code may:

* ``torch.save(model)``: pickling the module pickles its hooks, and a closure
  cannot be pickled, so the user's checkpointing would fail;
* ``copy.deepcopy(model)`` (an EMA, a teacher): the copy's table gets the hooks
  too, and they would feed the copy's batches into the record.

So each hook is wrapped in a :class:`BorrowedHook`: a deep copy of it, or a
pickle of it, is an :class:`InertHook` that does nothing. The copy (or the
saved model) carries that no-op in its table, not probe's state; loading such
a pickle needs probe importable, as for any pickled object of a package
(``torch.save(model.state_dict())`` carries no hook at all).

Hooks stay per module, attached when a step is armed, so they run after the
hooks the user registered before (and see the output those hooks made, which
is what flows on), and a model that is not tracked is not slowed at all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _transforming() -> bool:
    """Whether a ``torch.func`` transform (vmap, grad, jvp, ...) is running."""
    try:
        return torch._C._functorch.maybe_current_level() is not None
    except AttributeError:  # a torch without functorch's level: no transform to stand aside for
        return False


def _exporting() -> bool:
    """Whether ``torch.export`` is tracing (False on a torch without the query)."""
    query = getattr(getattr(torch, "compiler", None), "is_exporting", None)
    return bool(query()) if query is not None else False


class InertHook:
    """A forward (pre-)hook that does nothing: what a copied or pickled :class:`BorrowedHook` becomes."""

    __slots__ = ()

    def __call__(self, *args: object) -> None:
        return None

    def __repr__(self) -> str:
        return "InertHook()"


class BorrowedHook:
    """``fn`` as a hook of ``module`` (its return value dropped: the output is never replaced), inert when copied.

    It runs for ``module`` itself only: a shallow copy of the module
    (``copy.copy``) shares its hook table, and its passes are not the tracked
    module's. It does nothing while ``torch.jit.trace`` or ``torch.export`` runs the module
    (a traced pass is not one to measure, and the tracer would record the hook's
    own operations into its graph, and hand it traced sizes and fake tensors),
    nor inside a ``torch.func`` transform (``vmap(grad(...))`` for per-sample
    gradients, say: not the training pass, and its batched tensors refuse the
    hook's ``out=`` operations).
    """

    __slots__ = ("module", "fn")

    def __init__(self, module: nn.Module, fn: Callable[..., object]) -> None:
        self.module, self.fn = module, fn

    def __call__(self, module: nn.Module, *args: object) -> None:
        if module is self.module and not torch.jit.is_tracing() and not _exporting() and not _transforming():
            self.fn(module, *args)

    def __deepcopy__(self, memo: dict) -> InertHook:
        return InertHook()

    def __copy__(self) -> InertHook:
        return InertHook()

    def __reduce__(self) -> tuple:
        return InertHook, ()


def attach_forward(module: nn.Module, fn: Callable[[nn.Module, tuple, object], object]):
    """Register ``fn(module, inputs, output)`` as a forward hook of ``module``; returns the handle."""
    return module.register_forward_hook(BorrowedHook(module, fn))


def attach_pre(module: nn.Module, fn: Callable[[nn.Module, tuple], object]):
    """Register ``fn(module, inputs)`` as a forward pre-hook of ``module``; returns the handle."""
    return module.register_forward_pre_hook(BorrowedHook(module, fn))
