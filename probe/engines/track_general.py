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

from collections.abc import Callable

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
            linear_hook, act_hook = block_hooks(self.collector, i, lin, act, autograd_only=True,
                                                on_forward=self._seen(i))
            handles.append(attach_forward(lin, linear_hook))
            handles.append(attach_pre(act, act_hook))
        handles.append(attach_forward(self.final, self._final_hook))
        return handles

    def _seen(self, layer: int) -> Callable[[torch.Tensor], None]:
        """What a recorded ``z`` of ``layer`` tells beyond its sums: whether it takes gradients, and (the first
        layer's) whether its pass is a recomputation inside the backward."""
        def seen(z: torch.Tensor) -> None:
            self.wants_grad[layer] |= z.requires_grad
            if layer == 0 and in_backward():
                self.recomputed_rows += z.numel() // z.shape[-1]
        return seen

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
    def saw_forward(self) -> bool:
        """Whether a forward pass with autograd reached the model during this (unfinished) step."""
        return any(a.samples for a in self.collector.activity)

    def untrained_rows(self) -> int:
        """As :meth:`probe.engines.track_state.FastStep.untrained_rows`, by count: the first layer's forward
        samples (less those recomputed inside a backward pass) less the most samples a layer's gradient
        sums cover (a batch backpropagated twice can hide another)."""
        covered = [int(g.neg_count[0] + g.pos_count[0]) // lin.out_features
                   for g, lin in zip(self.collector.gradients, self.hidden) if g.neg_count is not None]
        seen = self.collector.activity[0].samples - self.recomputed_rows
        return max(seen - max(covered), 0) if covered else 0

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
