"""Layer-by-layer sign routes: how the downward push into each layer is delivered.

For the Linear layer that feeds layer ``l >= 1`` (weights ``W`` ``[units_l,
units_{l-1}]``, incoming values ``a`` of layer ``l - 1``), every contribution
``c[i, k, j] = W[k, j] * a[i, j]`` to the pre-activation of unit ``k`` falls
into one of the four masses of :mod:`probe.diagnostics.sign`, summed as
absolute values over the group's samples ``i``, the senders ``j`` and the
receivers ``k``:

* ``pos_pos`` ``W > 0, a > 0`` and ``neg_neg`` ``W < 0, a < 0`` push up;
* ``neg_pos`` ``W < 0, a > 0``: down through a negative *weight* (with a
  negative bias, ReLU's only routes after the first layer);
* ``pos_neg`` ``W > 0, a < 0``: down through a negative *sender*.

**Who sends.** Into hidden layer 1 the senders are the *input features*
(``sender: "inputs"``), not activations: a negative input is data, not a
unit's output, so that block's ``pos_neg`` is reported as the
``negative_input_share`` and as ``downward_shares.negative_inputs``, and its
``activation_route_share`` is null. Into layers ``2..L+1`` the senders are
hidden activations (``sender: "hidden"``): ``pos_neg`` is the route through
negative *activations*, which a ReLU network never has (its hidden outputs are
``>= 0``), and it is reported as ``activation_route_share`` and
``downward_shares.negative_activations``.

Each receiver's bias adds ``|b_k|`` per sample to ``bias_pos`` or ``bias_neg``
(a negative bias is a downward route of its own; see ``downward_shares``).

Aggregation over receivers is a plain sum of masses, so a layer's share
``pos_neg / (neg_pos + pos_neg)`` is the fraction of all the downward push
delivered in that layer that arrives through negative senders. Into the
outputs only output ``K`` counts, so for the logit target the last entry is
exactly :class:`probe.diagnostics.sign.SignRoutes`' result for output ``K``
restricted to the same samples. For the margin target
(:mod:`probe.circuit.target`) the final block's receiver is the margin: each
sample's row is ``W[K] - W[j*(x)]`` (bias ``b[K] - b[j*(x)]``), summed per
runner-up class. ``cancellation = (sum of the four masses) / sum_i sum_k
|z[i, k] - bias[k]|``: 1 when no contribution fights another.

Because the sign of ``W[k, j]`` is fixed, each mass is ``|W|`` restricted to a
weight sign times the per-unit sums of ``max(+-a, 0)``: no per-sample storage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.circuit.accumulate import GroupSums
from probe.diagnostics.sign import RouteMasses, route_masses

SENDERS = ("inputs", "hidden")


@dataclass(frozen=True)
class LayerRoutes:
    """The route masses into one layer for one group.

    Attributes:
        layer: The receiving layer (1..L for hidden layers, L + 1 for output K).
        masses: The four masses, the share of the negative-sender route and the cancellation.
        sender: ``inputs`` (the block into hidden layer 1) or ``hidden``.
    """

    layer: int
    masses: RouteMasses
    sender: str = "hidden"

    @property
    def activation_route_share(self) -> float | None:
        """Share of the downward mass through negative hidden activations (None for the input block)."""
        return self.masses.activation_route_share if self.sender == "hidden" else None

    @property
    def negative_input_share(self) -> float | None:
        """Share of the downward mass through negative input features (input block only)."""
        return self.masses.activation_route_share if self.sender == "inputs" else None

    @property
    def negative_sender_share(self) -> float | None:
        """``pos_neg / (neg_pos + pos_neg)``, whoever the senders are."""
        return self.masses.activation_route_share

    @property
    def cancellation(self) -> float | None:
        return self.masses.cancellation

    def downward_shares(self) -> dict[str, float] | None:
        """Shares of the downward mass, the negative-sender route named after its senders."""
        shares = self.masses.downward_shares
        if shares is None:
            return None
        name = "negative_inputs" if self.sender == "inputs" else "negative_activations"
        return {"negative_weights": shares["negative_weights"], name: shares["negative_activations"],
                "bias": shares["bias"]}

    def to_dict(self) -> dict:
        m = self.masses.to_dict()
        del m["activation_route_share"], m["downward_shares"]
        share = ({"negative_input_share": self.negative_input_share} if self.sender == "inputs"
                 else {"activation_route_share": self.activation_route_share})
        return {"layer": self.layer, "sender": self.sender, **m, **share,
                "downward_shares": self.downward_shares()}


def _margin_masses(weight: np.ndarray, bias: np.ndarray | None, sums: GroupSums, output: int,
                   net_abs: float) -> RouteMasses:
    """Final-block masses of the margin: each runner-up class ``c`` with its row ``W[K] - W[c]``."""
    total = RouteMasses.of(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for c in range(weight.shape[0]):
        n_c = int(round(float(sums.runner_counts[c])))
        if c == output or n_c == 0:
            continue
        row = (weight[output] - weight[c])[None]
        b = None if bias is None else np.array([bias[output] - bias[c]])
        total = total + route_masses(row, sums.runner_pos[c], sums.runner_neg[c], 0.0, n_c, b)
    return RouteMasses.of(sums.samples, total.pos_pos, total.neg_pos, total.pos_neg, total.neg_neg,
                          net_abs, total.bias_pos, total.bias_neg)


def layer_routes(weights: list[np.ndarray], sums: GroupSums, output: int,
                 biases: list[np.ndarray | None] | None = None) -> tuple[LayerRoutes, ...]:
    """Routes into every layer ``1..L+1`` for one group (the last into output ``K`` only).

    ``biases`` (one per Linear, None for a layer without) adds each receiver's
    bias as ``bias_pos``/``bias_neg``, the same way the final layer's sign
    routes count it. With the margin target's per-runner-up sums in ``sums``,
    the final block uses each sample's effective row (see the module docstring).
    """
    routes = []
    last = len(weights) - 1
    for i, w in enumerate(weights):
        sender = "inputs" if i == 0 else "hidden"
        receivers = slice(output, output + 1) if i == last else slice(None)
        net_abs = float(sums.net_abs[i + 1][receivers].sum())
        full_bias = None if biases is None else biases[i]
        if i == last and sums.runner_counts is not None:
            masses = _margin_masses(w, full_bias, sums, output, net_abs)
        else:
            bias = None if full_bias is None else full_bias[receivers]
            masses = route_masses(w[receivers], sums.pos[i], sums.neg[i], net_abs, sums.samples, bias)
        routes.append(LayerRoutes(i + 1, masses, sender))
    return tuple(routes)


def pooled_share(routes: tuple[LayerRoutes, ...]) -> tuple[float | None, float | None]:
    """Negative-activation share and cancellation pooled over hidden-sender layers' masses.

    Routes fed by the inputs are left out: their negative senders are input features.
    """
    routes = tuple(r for r in routes if r.sender == "hidden")
    if not routes:
        return None, None
    pooled = routes[0].masses
    for r in routes[1:]:
        pooled = pooled + r.masses
    return pooled.activation_route_share, pooled.cancellation
