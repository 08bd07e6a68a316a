"""HookSession: borrow a trained MLP's forward and backward passes to feed a Collector.

Hooks are borrowed state: they are attached on entry, always removed on exit
(also when the body raises), ``model.training`` is restored, and no hook
returns a value (so none can change what the model computes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from probe.core.variants import slope_tensor, variant_of_module
from probe.diagnostics import Collector
from probe.models.mlp import MLP


class HookSession:
    """Feeds a :class:`Collector` from hooks on an MLP's hidden blocks ``Linear -> [norm] -> act``.

    Per hidden layer, the Linear's forward hook keeps its input ``x`` and output
    ``u``; the activation's forward *pre*-hook reads its input ``z`` right away
    (an in-place activation overwrites it next) and registers tensor hooks that
    receive ``dL/dz`` (and, when a norm sits between them, ``dL/du``) during
    backward. Without a norm, ``u`` is ``z``.

    Args:
        model: A canonical :class:`MLP`.
        collector: Where the tensors go (one member).
    """

    def __init__(self, model: MLP, collector: Collector) -> None:
        self.model = model
        self.collector = collector
        self.handles: list[RemovableHandle] = []

    def _hooks(self, layer: int, linear: nn.Linear, act: nn.Module):
        collector = self.collector
        slope = slope_tensor(act)
        shaped = None if slope is None else slope.reshape(1, 1, -1)
        fn = None if slope is not None else variant_of_module(act).function()
        width = linear.out_features
        seen: dict[str, torch.Tensor] = {}

        def linear_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            seen["x"], seen["u"] = inputs[0], output

        def act_pre_hook(module: nn.Module, inputs: tuple) -> None:
            z, x, u = inputs[0], seen.pop("x"), seen.pop("u")
            pending = collector.forward(layer, x.reshape(1, -1, linear.in_features), z.reshape(1, -1, width),
                                        shaped, fn=fn)
            if not z.requires_grad:
                return
            if u is z:
                z.register_hook(lambda g: collector.backward(pending, g.reshape(1, -1, width)))
            else:  # a norm between: dL/dz for the ratios, dL/du for the weight split
                z.register_hook(lambda g: collector.backward_z(pending, g.reshape(1, -1, width)))
                u.register_hook(lambda g: collector.backward_u(pending, g.reshape(1, -1, width)))

        return linear_hook, act_pre_hook

    @contextmanager
    def attached(self) -> Iterator[HookSession]:
        """Attach the hooks for the duration of a ``with`` block; eval mode inside."""
        was_training = self.model.training
        try:
            self.model.eval()
            for i, (lin, _norm, act) in enumerate(self.model.blocks):
                linear_hook, act_pre_hook = self._hooks(i, lin, act)
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
