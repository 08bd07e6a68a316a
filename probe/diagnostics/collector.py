"""One collector per network (or ensemble) that feeds every accumulator.

Both sources of tensors feed this class: :class:`probe.engines.hooks.HookSession` on a
trained ``nn.Module`` (one member) and the ensemble trainer (many members,
leading member dimension). Every tensor argument is ``[members, batch, ...]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probe.core.activations import value_and_derivative
from probe.core.variants import leaky_relu
from probe.diagnostics.activity import ActivityStats, negative_mask
from probe.diagnostics.gradients import GradientStats
from probe.diagnostics.results import LayerDiagnostics, NetworkDiagnostics
from probe.diagnostics.margin import MarginRoutes
from probe.diagnostics.sign import SignRoutes


@dataclass
class PendingBackward:
    """What the backward pass of one layer needs from its forward pass (one batch).

    ``x`` is the layer's input, kept without a copy (autograd keeps it too, for the
    weight gradient); ``x_version`` is its version counter at forward time, so that
    an in-place change before the backward is detected instead of silently used.
    """

    layer: int
    neg: torch.Tensor
    x: torch.Tensor | None
    x_version: int = 0

    def checked_x(self) -> torch.Tensor | None:
        """The layer input, refusing one that an in-place operation has changed since."""
        if self.x is not None and self.x._version != self.x_version:
            raise RuntimeError(
                f"The input of hidden layer {self.layer + 1} was modified in place between the forward "
                "and the backward pass, so its weight-gradient split would be wrong. Use out-of-place "
                "operations after the Linear layers (probe's canonical MLP never does this).")
        return self.x


class Collector:
    """Accumulates activity, gradient and sign diagnostics for every hidden layer.

    Args:
        n_layers: Number of hidden layers.
        final_weight: Final Linear weight ``[members, outputs, units]``, or None to
            skip the sign diagnostics.
        final_bias: Final Linear bias ``[members, outputs]``.
        gradients: Collect gradient diagnostics (needs a backward pass).
        weight_grads: Also split the weight gradient (``neg_grad_share``).
        pos_from_total: See :class:`GradientStats`; then call :meth:`set_weight_grads`.
        near_dead_threshold: See :class:`ActivityStats`.
        dormant_tau: See :class:`ActivityStats`.
        margin: Sign routes of each class's logit margin (:class:`MarginRoutes`, a
            classifier under cross-entropy) instead of each output's logit.
    """

    def __init__(self, n_layers: int, final_weight: torch.Tensor | None = None,
                 final_bias: torch.Tensor | None = None, *, gradients: bool = True,
                 weight_grads: bool = True, pos_from_total: bool = False,
                 near_dead_threshold: float = 0.01, dormant_tau: float = 0.025, margin: bool = False) -> None:
        self.activity = [ActivityStats(near_dead_threshold, dormant_tau) for _ in range(n_layers)]
        self.gradients = ([GradientStats(weight_grads, pos_from_total) for _ in range(n_layers)]
                          if gradients else None)
        self.weight_grads = weight_grads
        self.sign = None
        if final_weight is not None:
            if final_bias is None:
                final_bias = torch.zeros(final_weight.shape[:2], device=final_weight.device)
            self.sign = (MarginRoutes if margin else SignRoutes)(final_weight, final_bias)
        self.slopes: list[torch.Tensor | None] = [None] * n_layers

    def forward(self, layer: int, x: torch.Tensor, z: torch.Tensor,
                slope: torch.Tensor | None, fn=None) -> PendingBackward:
        """Feed one layer's forward tensors; returns what its backward needs.

        ``z`` must be read here, before an in-place activation overwrites it: the
        returned state holds the mask ``z <= 0`` (0/1 floats), computed now, and the layer input
        guarded by its version counter (see :class:`PendingBackward`).

        Args:
            layer: Hidden layer index.
            x: The layer's input ``[members, batch, fan_in]``.
            z: The activation's input ``[members, batch, units]``.
            slope: The ReLU-family negative slope (broadcastable to ``z``), or None
                for a smooth activation, given as ``fn``.
            fn: The elementwise activation when ``slope`` is None.
        """
        z = z.detach()
        neg = negative_mask(z)
        if slope is not None:
            slope = slope.detach()  # a learnable PReLU slope must not pull in its graph
            self.slopes[layer] = slope
            self.activity[layer].update(z, slope, neg)
            h = leaky_relu(z, slope) if self.sign is not None and layer == len(self.activity) - 1 else None
        else:
            h, deriv = value_and_derivative(fn, z)
            self.activity[layer].update_general(z, h, deriv, neg)
        if self.sign is not None and layer == len(self.activity) - 1:
            self.sign.update(h)
        keep_x = x.detach() if self.gradients is not None and self.weight_grads else None
        return PendingBackward(layer, neg, keep_x, 0 if keep_x is None else keep_x._version)

    def backward(self, pending: PendingBackward, g: torch.Tensor) -> None:
        """Feed ``g = dL/dz`` for the batch whose forward produced ``pending`` (no norm: ``u = z``)."""
        if self.gradients is not None:
            self.gradients[pending.layer].update(pending.neg, g, pending.checked_x())

    def backward_z(self, pending: PendingBackward, g_z: torch.Tensor) -> None:
        """With a norm between the Linear and the activation: ``dL/dz`` (for the gradient ratios)."""
        if self.gradients is not None:
            self.gradients[pending.layer].update_ratio(pending.neg, g_z)

    def backward_u(self, pending: PendingBackward, g_u: torch.Tensor) -> None:
        """With a norm between: ``dL/du`` at the Linear's output (for the weight-gradient split)."""
        if self.gradients is not None and self.weight_grads:
            self.gradients[pending.layer].update_weights(pending.neg, g_u, pending.checked_x())

    def set_weight_grads(self, totals: list[torch.Tensor]) -> None:
        """Full weight gradients per hidden layer, ``[members, fan_in, units]`` each."""
        if self.gradients is not None:
            for stats, total in zip(self.gradients, totals):
                stats.set_total(total)

    def cpu(self) -> Collector:
        """Move every accumulated tensor to the CPU, in place (returns self).

        Fed on a GPU, the sums are read back once here rather than entry by
        entry in :meth:`result` (each read of a GPU tensor waits for the GPU).
        """
        _to_cpu(self)
        return self

    def result(self, member: int = 0) -> NetworkDiagnostics:
        """Frozen diagnostics of one member (:meth:`results` gives every member's at once)."""
        return self.results(members=[member])[0]

    def results(self, members: list[int] | None = None) -> list[NetworkDiagnostics]:
        """Frozen diagnostics of ``members`` (default: every member), each layer's computed for all at once."""
        chosen = members
        columns = []  # per layer: ((nominal, spread) per chosen member, activity results, gradient results)
        for i, act in enumerate(self.activity):
            every = act.results()
            if chosen is None:
                chosen = range(len(every))
            nominals = [nominal_slope(self.slopes[i], m) for m in chosen]
            grads = None
            if self.gradients is not None:
                slopes = [0.0] * len(every)
                for m, (nominal, _) in zip(chosen, nominals):
                    slopes[m] = nominal or 0.0
                all_grads = self.gradients[i].results(slopes)
                grads = [all_grads[m] for m in chosen]
            columns.append((nominals, [every[m] for m in chosen], grads))
        if chosen is None:  # no hidden layer: the sign routes alone say how many members there are
            chosen = range(self.sign.weight.shape[0] if self.sign is not None else 1)
        out = []
        for k, m in enumerate(chosen):
            layers = tuple(LayerDiagnostics(i, nominals[k][0], acts[k], None if grads is None else grads[k],
                                            nominals[k][1]) for i, (nominals, acts, grads) in enumerate(columns))
            out.append(NetworkDiagnostics(layers, tuple(self.sign.result(m)) if self.sign is not None else ()))
        return out


def _to_cpu(obj: object) -> object:
    """``obj`` with its tensors on the CPU: accumulators (probe.diagnostics objects) changed in place."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(o) for o in obj)
    if type(obj).__module__.startswith("probe.diagnostics") and hasattr(obj, "__dict__"):
        for name, value in vars(obj).items():
            setattr(obj, name, _to_cpu(value))
    return obj


def reported_slope(value: float) -> float:
    """A single negative slope as reported: 6 significant digits (float32's 0.0099999998 reads 0.01)."""
    return float(f"{value:.6g}")


def nominal_slope(slope: torch.Tensor | None, member: int) -> tuple[float | None, dict | None]:
    """``(negative_slope, prelu_slopes)`` of one member's layer.

    A single slope is reported as ``negative_slope`` (6 significant digits: a
    float32 slope of 0.01 reads 0.01, not 0.0099999998). Per-channel PReLU
    slopes are reported as a distribution, never as a signed mean (which can
    hide slopes of both signs): ``{count, mean_abs, min, max, negative}``.
    Smooth activations have no nominal slope: ``(None, None)``.
    """
    if slope is None:
        return None, None
    values = slope[member].reshape(-1).double()
    if values.numel() == 1:
        return reported_slope(float(values[0])), None
    return None, {"count": values.numel(), "mean_abs": float(values.abs().mean()), "min": float(values.min()),
                  "max": float(values.max()), "negative": int((values < 0).sum())}
