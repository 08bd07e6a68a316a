"""``probe.track`` on any MLP ``probe analyze`` reads: norms, smooth activations, BatchNorm.

The fast path (:mod:`probe.engines.track_batch`) is specialised to plain
``Linear -> ReLU-family`` chains, where the Linear's output is the
activation's input. With a norm between them, or an activation whose negative
side is not a slope (GELU, ELU, ...), a recorded step feeds analyze's own
:class:`probe.diagnostics.Collector` instead, through hooks on the user's
modules:

* the Linear's forward hook keeps its input ``x`` and output ``u``;
* the activation's forward *pre*-hook reads its input ``z`` (before an in-place
  activation overwrites it) and registers tensor hooks for ``dL/dz`` (the
  gradient ratios) and ``dL/du`` (the weight-gradient split);
* the final Linear's forward hook feeds the sign routes from its own input and
  weights (so a BatchNorm after the last activation is accounted for).

The definitions are analyze's, so a record equals ``probe.diagnose`` on the
same batch and parameters wherever the model computes the same function in
training and in evaluation (no dropout, no BatchNorm in training mode). In
training mode a BatchNorm normalises with the batch's own statistics, and that
is what is measured.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from probe.diagnostics.collector import Collector, nominal_slope
from probe.diagnostics.results import LayerDiagnostics, NetworkDiagnostics
from probe.engines.hooks import block_hooks
from probe.engines.track_graph import in_backward
from probe.engines.track_record import layer_dict
from probe.engines.track_sign import RoutesFeed
from probe.models.borrowed_hooks import attach_forward, attach_pre


class GeneralStep:
    """One recorded step of a general model: a Collector fed by hooks, and the sign routes."""

    def __init__(self, hidden: list[nn.Linear], acts: list[nn.Module], final: nn.Linear,
                 near_dead_threshold: float, dormant_tau: float, split: bool = True, margin: bool = False) -> None:
        self.hidden, self.acts, self.final = hidden, acts, final
        self.collector = Collector(len(hidden), None, weight_grads=split, near_dead_threshold=near_dead_threshold,
                                   dormant_tau=dormant_tau)
        self.sign = RoutesFeed(margin)
        self.recomputed_rows = 0  # first-layer samples run inside a backward pass (checkpointing)
        self.wants_grad = [False] * len(hidden)  # per layer: some batch's z took gradients

    def attach(self) -> list:
        """Register the hooks on the user's modules (inert in a copy or pickle); returns their handles."""
        handles = []
        for i, (lin, act) in enumerate(zip(self.hidden, self.acts)):
            linear_hook, act_hook = block_hooks(self.collector, i, lin, act, autograd_only=True)
            handles.append(attach_forward(lin, linear_hook))
            handles.append(attach_pre(act, act_hook))
        handles.append(attach_forward(self.final, self._final_hook))
        handles.append(attach_forward(self.hidden[0], self._count_recomputed))
        for i, act in enumerate(self.acts):
            handles.append(attach_pre(act, self._wants_grad_hook(i)))
        return handles

    def _wants_grad_hook(self, layer: int):
        def hook(module: nn.Module, inputs: tuple) -> None:
            if torch.is_grad_enabled() and inputs[0].requires_grad:
                self.wants_grad[layer] = True
        return hook

    def _count_recomputed(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if torch.is_grad_enabled() and in_backward():
            self.recomputed_rows += output.numel() // module.out_features

    def _final_hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not torch.is_grad_enabled() or not output.numel():
            return
        self.sign.forward(module, inputs[0])

    @property
    def samples(self) -> int:
        """Rows through the final layer with autograd this step."""
        return self.sign.samples

    def finish(self) -> bool:
        """Whether the step can be recorded: a forward pass with autograd reached every hidden layer."""
        return self.recorded

    @property
    def missing_gradient(self) -> bool:
        """A layer whose ``z`` took gradients got no training backward pass (as the fast path's)."""
        return any(wants and g.neg_abs is None for wants, g in zip(self.wants_grad, self.collector.gradients))

    def parts(self, near_dead_threshold: float, dormant_tau: float) -> tuple[list[dict], list[dict], np.ndarray, int]:
        """As :meth:`probe.engines.track_state.FastStep.parts` (the thresholds are the Collector's already)."""
        diagnostics = self.result()
        return ([layer_dict(d) for d in diagnostics.layers], [s.to_dict() for s in diagnostics.sign],
                np.concatenate(self.active_units()), self.samples)

    def close(self) -> None:
        """Nothing kept to protect: this step's Collector is its own."""

    @property
    def recorded(self) -> bool:
        """Whether a forward pass with autograd reached every hidden layer."""
        return all(a.active is not None for a in self.collector.activity)

    @property
    def has_gradients(self) -> bool:
        """Whether a backward pass reached some hidden layer (not all need to: a frozen first layer's z has none)."""
        return any(g.neg_abs is not None for g in self.collector.gradients)

    def result(self) -> NetworkDiagnostics:
        """analyze's result objects for this step (gradient keys only where a backward pass arrived)."""
        layers = []
        for i, act in enumerate(self.collector.activity):
            nominal, spread = nominal_slope(self.collector.slopes[i], 0)
            grads = self.collector.gradients[i]
            if grads.g_neg is not None and grads.g_pos is None:
                grads.g_pos = torch.zeros_like(grads.g_neg)
            gradient = grads.result(0, nominal or 0.0) if grads.neg_abs is not None else None
            layers.append(LayerDiagnostics(i, nominal, act.result(0), gradient, spread))
        return NetworkDiagnostics(tuple(layers), self.sign.results())

    def active_units(self) -> list[torch.Tensor]:
        """Per hidden layer, which units had ``z > 0`` on some sample of the step (``[units]`` bool numpy)."""
        return [(a.active[0] > 0).cpu().numpy() for a in self.collector.activity]
