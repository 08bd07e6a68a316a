"""HookSession: borrow a trained MLP's forward and backward passes to feed a Collector.

Hooks are borrowed state: they are attached on entry, always removed on exit
(also when the body raises), ``model.training`` is restored, and no hook
returns a value (so none can change what the model computes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from probe.core.variants import slope_tensor, variant_of_module
from probe.diagnostics import Collector
from probe.engines.track_graph import batched, trains, weight_branch
from probe.engines.track_notices import check_slope
from probe.models.mlp import MLP


def block_hooks(collector: Collector, layer: int, linear: nn.Linear, act: nn.Module, *,
                autograd_only: bool = False, on_forward: Callable[[torch.Tensor], object] | None = None):
    """``(linear_hook, act_pre_hook)`` that feed ``collector`` for one hidden block ``Linear -> [norm] -> act``.

    The Linear's forward hook keeps its input ``x`` and output ``u``; the
    activation's forward *pre*-hook reads its input ``z`` right away (an
    in-place activation overwrites it next) and registers tensor hooks for
    ``dL/dz`` and, when a norm sits between them, ``dL/du``. Without a norm,
    ``u`` is ``z``. The one implementation for ``probe analyze``
    (:class:`HookSession`) and ``probe.track``'s general path.

    Args:
        collector: Where the tensors go (one member).
        layer: The hidden layer's index.
        linear, act: The block's modules (the user's own, or a canonical MLP's).
        autograd_only: Skip forward passes without autograd (evaluation inside
            a tracked training step); analyze records every forward pass.
        on_forward: Called with each ``z`` recorded (``probe.track``: which layers
            take gradients, which passes are recomputed by checkpointing).
    """
    width, fan_in, seen = linear.out_features, linear.in_features, {}
    # slopes an optimiser or a schedule moves: read at every forward pass
    sloped = isinstance(act, (nn.PReLU, nn.LeakyReLU)) or slope_tensor(act) is not None
    fn = None if sloped else variant_of_module(act).function()

    def rows(t: torch.Tensor, w: int) -> torch.Tensor:
        return t.detach().reshape(1, -1, w).float()

    def linear_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not autograd_only or torch.is_grad_enabled() and output.numel():  # probe.track: an empty batch
            seen["x"], seen["u"] = inputs[0], output  # adds nothing to a step (and alone makes none)

    def act_pre_hook(module: nn.Module, inputs: tuple) -> None:
        z = inputs[0]
        if "u" not in seen or (autograd_only and not torch.is_grad_enabled()):
            seen.clear()
            return
        x, u = seen.pop("x"), seen.pop("u")
        slope = slope_tensor(act) if sloped else None
        if slope is not None:  # per-channel slopes on a 3-D batch are refused (only probe.track sees one)
            slope = check_slope(slope, z).to(z.device, torch.float32).reshape(1, 1, -1)
        pending = collector.forward(layer, rows(x, fan_in), rows(z, width), slope, fn=fn)
        if on_forward is not None:
            on_forward(z)
        if not z.requires_grad:
            return
        # probe.track: a backward pass that computes no gradient for the weight (a gradient
        # penalty's torch.autograd.grad), or a batch of them (a Jacobian's), does not train the
        # layer, and is left out
        branch = weight_branch(u) if autograd_only else None

        def training(g: torch.Tensor) -> bool:
            return trains(branch) and not batched(g)

        if u is z:
            z.register_hook(lambda g: collector.backward(pending, rows(g, width)) if training(g) else None)
        else:  # a norm between: dL/dz for the ratios, dL/du for the weight split
            z.register_hook(lambda g: collector.backward_z(pending, rows(g, width)) if training(g) else None)
            if u.requires_grad:  # else the Linear is frozen and first: its weight has no gradient to split
                u.register_hook(lambda g: collector.backward_u(pending, rows(g, width)) if training(g) else None)

    return linear_hook, act_pre_hook


class HookSession:
    """Feeds a :class:`Collector` from hooks on an MLP's hidden blocks (:func:`block_hooks`).

    Args:
        model: A canonical :class:`MLP`.
        collector: Where the tensors go (one member).
    """

    def __init__(self, model: MLP, collector: Collector) -> None:
        self.model = model
        self.collector = collector
        self.handles: list[RemovableHandle] = []

    @contextmanager
    def attached(self) -> Iterator[HookSession]:
        """Attach the hooks for the duration of a ``with`` block; eval mode inside."""
        was_training = self.model.training
        try:
            self.model.eval()
            for i, (lin, _norm, act) in enumerate(self.model.blocks):
                linear_hook, act_pre_hook = block_hooks(self.collector, i, lin, act)
                self.handles.append(lin.register_forward_hook(linear_hook))
                self.handles.append(act.register_forward_pre_hook(act_pre_hook))
            yield self
        finally:
            for handle in self.handles:
                handle.remove()
            self.handles.clear()
            self.model.train(was_training)


@contextmanager
def hook_session(model: MLP, collector: Collector) -> Iterator[HookSession]:
    """``with hook_session(mlp, collector): ...`` — attach, feed, always detach."""
    with HookSession(model, collector).attached() as session:
        yield session
