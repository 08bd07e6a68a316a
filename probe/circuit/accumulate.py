"""Streaming per-group sums for the sign circuit: memory O(units), not O(samples).

Samples fall into two groups by the sign of the prediction of output ``K``:
``negative`` (``f_K(x) < 0``) and ``positive`` (``f_K(x) >= 0``). Layers are
numbered as in the circuit graph: ``0`` the inputs, ``1..L`` the hidden
activations, ``L + 1`` the outputs. Per group and layer the accumulator keeps
per-unit sums only: of ``max(a, 0)``, ``max(-a, 0)``, ``[a > 0]``, of the
attribution and its absolute value, and (for layers ``>= 1``) of
``|z - bias|``, the absolute pre-activation net of the bias. Every circuit
statistic is a function of these sums and the weights.

For the logit-margin target (:mod:`probe.circuit.target`) the groups follow
the sign of the margin, output K's slot holds the margin, and the last hidden
layer's ``max(+-a, 0)`` sums are also kept per runner-up class, so that the
final block's routes can use each sample's effective row ``W[K] - W[j*(x)]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from probe.diagnostics.sign import negative_prediction
from probe.models.mlp import MLP, is_norm

NEGATIVE, POSITIVE = 0, 1


@dataclass(frozen=True)
class GroupSums:
    """Finished sums of one group, one float64 array per layer ``0..L+1``.

    Attributes:
        samples: Samples in the group.
        pos: Sum over samples of ``max(a, 0)``.
        neg: Sum over samples of ``max(-a, 0)``.
        active: Count of ``a > 0``.
        attr: Sum of attributions (outputs: of ``f(x) - f(baseline)``).
        attr_abs: Sum of absolute attributions.
        net_abs: Sum of ``|z - bias|`` (layer 0: zeros, it has no pre-activation).
        runner_pos, runner_neg: Margin target only: per runner-up class, the sums of
            ``max(h, 0)`` and ``max(-h, 0)`` of the last hidden layer, ``[classes, units]``.
        runner_counts: Margin target only: samples per runner-up class.
    """

    samples: int
    pos: tuple[np.ndarray, ...]
    neg: tuple[np.ndarray, ...]
    active: tuple[np.ndarray, ...]
    attr: tuple[np.ndarray, ...]
    attr_abs: tuple[np.ndarray, ...]
    net_abs: tuple[np.ndarray, ...]
    runner_pos: np.ndarray | None = None
    runner_neg: np.ndarray | None = None
    runner_counts: np.ndarray | None = None

    def mean(self, name: str, layer: int) -> np.ndarray:
        """``sum / samples`` of one field (zeros for an empty group)."""
        total = getattr(self, name)[layer]
        return total / self.samples if self.samples else np.zeros_like(total)

    def mean_activation(self, layer: int) -> np.ndarray:
        return self.mean("pos", layer) - self.mean("neg", layer)


class CircuitSums:
    """Accumulates :class:`GroupSums` for both groups and the completeness errors.

    Args:
        widths: Units per layer, ``[inputs, hidden..., outputs]``.
        output: The output index ``K`` that defines the groups.
        margin: Keep the per-runner-up sums of the margin target.
    """

    def __init__(self, widths: list[int], output: int, margin: bool = False) -> None:
        self.widths = list(widths)
        self.output = output
        n_layers = len(widths)
        zeros = [torch.zeros(2, w, dtype=torch.float64) for w in widths]
        self.fields = {name: [z.clone() for z in zeros]
                       for name in ("pos", "neg", "active", "attr", "attr_abs", "net_abs")}
        self.counts = torch.zeros(2, dtype=torch.float64)
        # Completeness: per attributed layer (0..L) the largest |delta| and the sum of |delta|.
        self.delta_max = torch.zeros(n_layers - 1, dtype=torch.float64)
        self.delta_abs = torch.zeros(n_layers - 1, dtype=torch.float64)
        self.change_abs = 0.0  # sum over samples of |f_K(x) - f_K(b)|
        self.samples = 0
        self.runner = None
        if margin:  # [group, class, unit] sums of the last hidden layer, and [group, class] counts
            shape = (2, widths[-1], widths[-2])
            self.runner = {"pos": torch.zeros(shape, dtype=torch.float64),
                           "neg": torch.zeros(shape, dtype=torch.float64),
                           "count": torch.zeros(2, widths[-1], dtype=torch.float64)}

    def update(self, acts: list[torch.Tensor], net_abs: list[torch.Tensor], attrs: list[torch.Tensor],
               deltas: list[torch.Tensor], change: torch.Tensor, runner_up: torch.Tensor | None = None) -> None:
        """Feed one batch (CPU tensors).

        Args:
            acts: Activations per layer ``0..L+1``, ``[batch, units]`` (inputs first,
                outputs last).
            net_abs: ``|z - bias|`` per layer ``1..L+1``.
            attrs: Attributions of output ``K`` per layer ``0..L``.
            deltas: Completeness errors per layer ``0..L``, ``[batch]``.
            change: ``f(x) - f(baseline)`` for every output, ``[batch, outputs]``
                (column K: the traced quantity's change).
            runner_up: Margin target: each row's runner-up class ``[batch]``.
        """
        acts = [a.double() for a in acts]
        negative = negative_prediction(acts[-1][:, self.output]).double()
        masks = torch.stack([negative, 1.0 - negative])  # [2, batch]
        if self.runner is not None and runner_up is not None:
            onehot = torch.nn.functional.one_hot(runner_up, self.widths[-1]).double()  # [batch, classes]
            by_class = masks[:, :, None] * onehot[None]  # [2, batch, classes]
            h = acts[-2]
            self.runner["pos"] += torch.einsum("gbc,bu->gcu", by_class, h.clamp(min=0))
            self.runner["neg"] += torch.einsum("gbc,bu->gcu", by_class, (-h).clamp(min=0))
            self.runner["count"] += by_class.sum(1)
        f = self.fields
        for layer, a in enumerate(acts):
            f["pos"][layer] += masks @ a.clamp(min=0)
            f["neg"][layer] += masks @ (-a).clamp(min=0)
            f["active"][layer] += masks @ torch.gt(a, 0, out=torch.empty_like(a))  # float 0/1: no bool pass
        for layer, z_abs in enumerate(net_abs, start=1):
            f["net_abs"][layer] += masks @ z_abs.double()
        for layer, attr in enumerate([*attrs, change]):
            attr = attr.double()
            f["attr"][layer] += masks @ attr
            f["attr_abs"][layer] += masks @ attr.abs()
        for layer, delta in enumerate(deltas):
            d = delta.double().abs()
            self.delta_max[layer] = torch.maximum(self.delta_max[layer], d.max())
            self.delta_abs[layer] += d.sum()
        self.change_abs += float(change[:, self.output].double().abs().sum())
        self.counts += masks.sum(1)
        self.samples += acts[0].shape[0]

    def group(self, index: int) -> GroupSums:
        """The finished sums of group ``NEGATIVE`` or ``POSITIVE``."""
        pick = {name: tuple(t[index].numpy().copy() for t in ts) for name, ts in self.fields.items()}
        if self.runner is not None:
            pick.update(runner_pos=self.runner["pos"][index].numpy().copy(),
                        runner_neg=self.runner["neg"][index].numpy().copy(),
                        runner_counts=self.runner["count"][index].numpy().copy())
        return GroupSums(samples=int(self.counts[index]), **pick)


def forward_layers(mlp: MLP, xb: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Activations of every layer (inputs, hidden, outputs) and ``|z - bias|`` of layers ``1..L+1``.

    ``z`` is each Linear's output: with a LayerNorm/RMSNorm after it, the layer
    routes describe how the Linear builds its output before the norm.

    ``z - bias`` is taken before the activation runs (the private model has no
    in-place activations, but this keeps the order explicit).
    """
    acts, net_abs = [xb], []
    h = xb
    for module in mlp:
        h = module(h)
        if isinstance(module, torch.nn.Linear):
            net = h if module.bias is None else h - module.bias
            net_abs.append(net.abs())
        elif not is_norm(module):  # a LayerNorm/RMSNorm output is no layer of the circuit: its activation is
            acts.append(h)
    acts.append(h)
    return acts, net_abs
