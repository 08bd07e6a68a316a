"""Layer-by-layer sign routes: how much downward push travels through negative activations.

For the Linear layer that feeds layer ``l >= 1`` (weights ``W`` ``[units_l,
units_{l-1}]``, incoming activations ``a`` of layer ``l - 1``; the inputs for
``l = 1``), every contribution ``c[i, k, j] = W[k, j] * a[i, j]`` to the
pre-activation of unit ``k`` falls into one of the four masses of
:mod:`probe.diagnostics.sign`, summed as absolute values over the group's
samples ``i``, the incoming units ``j`` and the receiving units ``k``:

* ``pos_pos`` ``W > 0, a > 0`` and ``neg_neg`` ``W < 0, a < 0`` push up;
* ``neg_pos`` ``W < 0, a > 0``: down through a negative *weight* (with a
  negative bias, ReLU's only routes after the first layer);
* ``pos_neg`` ``W > 0, a < 0``: down through a negative *activation*.

Each receiver's bias adds ``|b_k|`` per sample to ``bias_pos`` or ``bias_neg``
(a negative bias is a downward route of its own; see ``downward_shares``).

Aggregation over receiving units is a plain sum of masses, i.e. each unit
weighs in with its own downward mass, so a layer's
``activation_route_share = pos_neg / (neg_pos + pos_neg)`` is the fraction
of all the downward push delivered in that layer that arrives through negative
activations. Into the outputs only output ``K`` counts, so the last entry is
exactly :class:`probe.diagnostics.sign.SignRoutes`' result for output ``K``
restricted to the same samples. ``cancellation = (sum of the four masses) /
sum_i sum_k |z[i, k] - bias[k]|``: 1 when no contribution fights another.

Because the sign of ``W[k, j]`` is fixed, each mass is ``|W|`` restricted to a
weight sign times the per-unit sums of ``max(+-a, 0)``: no per-sample storage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.circuit.accumulate import GroupSums
from probe.diagnostics.sign import RouteMasses, route_masses


@dataclass(frozen=True)
class LayerRoutes:
    """The route masses into one layer for one group.

    Attributes:
        layer: The receiving layer (1..L for hidden layers, L + 1 for output K).
        masses: The four masses, the activation-route share and the cancellation.
    """

    layer: int
    masses: RouteMasses

    @property
    def activation_route_share(self) -> float | None:
        return self.masses.activation_route_share

    @property
    def cancellation(self) -> float | None:
        return self.masses.cancellation

    def to_dict(self) -> dict:
        return {"layer": self.layer, **self.masses.to_dict()}


def layer_routes(weights: list[np.ndarray], sums: GroupSums, output: int,
                 biases: list[np.ndarray | None] | None = None) -> tuple[LayerRoutes, ...]:
    """Routes into every layer ``1..L+1`` for one group (the last into output ``K`` only).

    ``biases`` (one per Linear, None for a layer without) adds each receiver's
    bias as ``bias_pos``/``bias_neg``, the same way the final layer's sign routes count it.
    """
    routes = []
    last = len(weights) - 1
    for i, w in enumerate(weights):
        receivers = slice(output, output + 1) if i == last else slice(None)
        bias = None if biases is None or biases[i] is None else biases[i][receivers]
        masses = route_masses(w[receivers], sums.pos[i], sums.neg[i],
                              float(sums.net_abs[i + 1][receivers].sum()), sums.samples, bias)
        routes.append(LayerRoutes(i + 1, masses))
    return tuple(routes)


def pooled_share(routes: tuple[LayerRoutes, ...]) -> tuple[float | None, float | None]:
    """Activation-route share and cancellation pooled over several layers' masses."""
    if not routes:
        return None, None
    pooled = routes[0].masses
    for r in routes[1:]:
        pooled = pooled + r.masses
    return pooled.activation_route_share, pooled.cancellation
