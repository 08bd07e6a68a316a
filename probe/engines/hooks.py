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

from probe.diagnostics import Collector
from probe.models.mlp import MLP


class HookSession:
    """Feeds a :class:`Collector` from forward hooks on an MLP's hidden Linear layers.

    The forward hook reads the pre-activation ``z`` right away (an in-place
    activation overwrites it next) and registers a tensor hook on ``z`` that
    receives ``dL/dz`` during backward.

    Args:
        model: A canonical :class:`MLP`.
        collector: Where the tensors go (one member).
    """

    def __init__(self, model: MLP, collector: Collector) -> None:
        self.model = model
        self.collector = collector
        self.handles: list[RemovableHandle] = []

    def _make_hook(self, layer: int, slope: torch.Tensor):
        collector = self.collector

        def forward_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0].reshape(1, -1, module.in_features)
            z = output.reshape(1, -1, module.out_features)
            pending = collector.forward(layer, x, z, slope)
            if output.requires_grad:
                def grad_hook(g: torch.Tensor) -> None:
                    collector.backward(pending, g.reshape(1, -1, module.out_features))
                output.register_hook(grad_hook)

        return forward_hook

    @contextmanager
    def attached(self) -> Iterator[HookSession]:
        """Attach the hooks for the duration of a ``with`` block; eval mode inside."""
        was_training = self.model.training
        try:
            self.model.eval()
            for i, (lin, slope) in enumerate(zip(self.model.hidden_linears, self.model.slopes())):
                shaped = slope.reshape(1, 1, -1)
                self.handles.append(lin.register_forward_hook(self._make_hook(i, shaped)))
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
