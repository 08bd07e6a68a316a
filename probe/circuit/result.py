"""Frozen results of the sign-circuit analysis; ``to_dict()`` is JSON-ready (no tensors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import numpy as np

from probe.circuit.paths import CircuitPath, node_id
from probe.circuit.routes import LayerRoutes, pooled_share
from probe.circuit.sample import SampleInfo
from probe.circuit.validate import GROUPS, check_group

if TYPE_CHECKING:
    import networkx as nx


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class LayerCircuit:
    """One layer of one group's circuit (layer 0 the inputs, L + 1 the outputs).

    Attributes:
        layer: Layer number in the graph.
        kind: ``input``, ``hidden`` or ``output``.
        mean_activation: Mean value per unit over the group (inputs: the feature).
        active_fraction: Fraction of the group's samples with value > 0.
        mean_attribution: Mean attribution of output K per unit (outputs: mean
            ``f(x) - f(baseline)``).
        mean_abs_attribution: Mean absolute attribution per unit.
        circuit_units: The smallest set of units whose mean absolute attribution
            reaches the coverage (90%) of the layer's total, largest first
            (outputs: just K).
    """

    layer: int
    kind: str
    mean_activation: tuple[float, ...]
    active_fraction: tuple[float, ...]
    mean_attribution: tuple[float, ...]
    mean_abs_attribution: tuple[float, ...]
    circuit_units: tuple[int, ...]

    @property
    def units(self) -> int:
        return len(self.mean_activation)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "kind": self.kind, "units": self.units,
                "circuit_size": len(self.circuit_units), "circuit_units": list(self.circuit_units),
                "mean_activation": list(self.mean_activation), "active_fraction": list(self.active_fraction),
                "mean_attribution": list(self.mean_attribution),
                "mean_abs_attribution": list(self.mean_abs_attribution)}


@dataclass(frozen=True)
class GroupCircuit:
    """The circuit of the samples whose prediction of output K has one sign.

    Attributes:
        name: ``negative`` (``f_K(x) < 0``) or ``positive`` (``f_K(x) >= 0``).
        samples: Samples in the group (a group may be empty: all its statistics are 0).
        mean_prediction: Mean ``f_K(x)`` over the group.
        layers: Per layer ``0..L+1``.
        routes: Sign routes into layers ``1..L+1`` (see :mod:`probe.circuit.routes`).
        paths: The strongest input-to-output paths (see :mod:`probe.circuit.paths`).
        output_row: Margin target only: the group's mean effective final row
            ``W[K] - W[j*(x)]`` (the graph's ``param`` on edges into K).
        output_contribution: Margin target only: the group's mean of
            ``(W[K, j] - W[j*(x), j]) * h_j`` per last hidden unit ``j`` (the
            edge weights into K, for the graph and the paths).
    """

    name: str
    samples: int
    mean_prediction: float
    layers: tuple[LayerCircuit, ...]
    routes: tuple[LayerRoutes, ...]
    paths: tuple[CircuitPath, ...]
    output_row: tuple[float, ...] | None = None
    output_contribution: tuple[float, ...] | None = None

    @property
    def hidden(self) -> tuple[LayerCircuit, ...]:
        return self.layers[1:-1]

    @property
    def circuit_size(self) -> int:
        """Units in the circuit over all hidden layers (the union of the per-layer sets)."""
        return sum(len(lay.circuit_units) for lay in self.hidden)

    @property
    def circuit_fraction(self) -> float:
        return self.circuit_size / sum(lay.units for lay in self.hidden)

    def to_dict(self) -> dict:
        hidden_share, hidden_cancel = pooled_share(self.routes[1:])
        return {
            "samples": self.samples, "mean_prediction": self.mean_prediction,
            "circuit_size": {"total": self.circuit_size, "fraction": self.circuit_fraction,
                             "inputs": len(self.layers[0].circuit_units),
                             "per_layer": [len(lay.circuit_units) for lay in self.hidden]},
            "routes": [r.to_dict() for r in self.routes],
            "routes_after_inputs": {"activation_route_share": hidden_share, "cancellation": hidden_cancel},
            "input_routes": {"negative_input_share": self.routes[0].negative_input_share,
                             "cancellation": self.routes[0].cancellation} if self.routes else None,
            "top_paths": [p.to_dict() for p in self.paths],
            "layers": [lay.to_dict() for lay in self.layers],
        }


@dataclass(frozen=True)
class Driver:
    """A hidden unit that pushes output K one way, with its mean attribution in that group."""

    layer: int
    unit: int
    mean_attribution: float
    selectivity: float | None

    def to_dict(self) -> dict:
        return {"layer": self.layer, "unit": self.unit, "node": node_id(self.layer, self.unit),
                "mean_attribution": self.mean_attribution, "selectivity": self.selectivity}


COMPLETENESS_TOLERANCE = 0.05  # largest error, relative to the mean |f(x) - f(baseline)|, taken as exact enough


@dataclass(frozen=True)
class Completeness:
    """How far attributions are from summing to ``f_K(x) - f_K(baseline)``.

    Above :data:`COMPLETENESS_TOLERANCE` (5% of the mean change of the output) the
    attributions are approximate: every report says so and suggests more
    integration steps (``n_steps``) or DeepLift.

    Attributes:
        max_abs_error: Per attributed layer (0 inputs, 1..L hidden), the largest
            ``|sum_j A[i, j] - (f_K(x_i) - f_K(b))|`` over samples.
        mean_abs_error: Per layer, the mean of that error over samples.
        scale: Mean over samples of ``|f_K(x) - f_K(b)|``.
    """

    max_abs_error: tuple[float, ...]
    mean_abs_error: tuple[float, ...]
    scale: float

    @property
    def max_rel_error(self) -> float:
        """The largest error of any sample and layer divided by :attr:`scale`."""
        worst = max(self.max_abs_error)
        return worst / self.scale if self.scale > 0 else (0.0 if worst == 0 else float("inf"))

    @property
    def within_tolerance(self) -> bool:
        """The largest relative error is at most :data:`COMPLETENESS_TOLERANCE`."""
        return self.max_rel_error <= COMPLETENESS_TOLERANCE

    def to_dict(self) -> dict:
        return {"max_abs_error": max(self.max_abs_error), "max_rel_error": self.max_rel_error,
                "tolerance": COMPLETENESS_TOLERANCE, "within_tolerance": self.within_tolerance,
                "scale": self.scale,
                "per_layer": [{"layer": i, "max_abs_error": m, "mean_abs_error": a}
                              for i, (m, a) in enumerate(zip(self.max_abs_error, self.mean_abs_error))]}


@dataclass(frozen=True)
class CircuitResult:
    """The sign circuit of one output: both groups, attribution quality and unit selectivity.

    Attributes:
        output: The output index K.
        method: ``ig`` (LayerIntegratedGradients) or ``deeplift``.
        n_steps: Integration points (``ig`` only).
        baseline: ``mean`` (mean evaluation input), ``zeros`` or ``custom``.
        baseline_prediction: ``f_K(baseline)``.
        samples: Evaluation samples.
        widths: ``[inputs, hidden..., outputs]``.
        activation: The model's activation spec.
        coverage: The share of absolute attribution a circuit must carry (0.9).
        completeness: Attribution error.
        selectivity: Per layer ``0..L`` and unit, the sign-selectivity
            ``(d_pos - d_neg) / (d_pos + d_neg)`` in [-1, 1], where
            ``d_neg = max(-m_neg, 0)`` is how hard the unit pushes output K
            down in the negative group and ``d_pos = max(m_pos, 0)`` how hard
            it pushes it up in the positive group (``m_g`` the unit's mean
            attribution in group g): -1 drives negative outputs only, +1
            positive outputs only, 0 both equally (or neither). None when
            either group is empty.
        drivers_negative: Hidden units with the most negative mean attribution
            in the negative group, strongest first.
        drivers_positive: Hidden units with the most positive mean attribution
            in the positive group, strongest first.
        groups: The ``negative`` and ``positive`` group circuits.
        weights: The Linear weights, ``[receivers, senders]`` each (for the graphs).
        target: ``logit`` (``f_K``) or ``margin`` (``f_K - max_{j != K} f_j``, see
            :mod:`probe.circuit.target`); the groups follow the sign of the target.
        sample: Which evaluation rows were traced (:mod:`probe.circuit.sample`).
    """

    output: int
    method: str
    n_steps: int | None
    baseline: str
    baseline_prediction: float
    samples: int
    widths: tuple[int, ...]
    activation: str
    coverage: float
    completeness: Completeness
    selectivity: tuple[tuple[float, ...], ...] | None
    drivers_negative: tuple[Driver, ...]
    drivers_positive: tuple[Driver, ...]
    groups: tuple[GroupCircuit, GroupCircuit]
    weights: tuple[np.ndarray, ...] = field(repr=False, compare=False)
    target: str = "logit"
    sample: SampleInfo | None = None

    def group(self, name: str) -> GroupCircuit:
        """The ``negative`` or ``positive`` group circuit."""
        return self.groups[GROUPS.index(check_group(name))]

    def graph(self, group: str = "negative") -> nx.DiGraph:
        """A fresh layered ``networkx.DiGraph`` of one group (see :func:`build_graph`)."""
        return build_graph(self, self.group(group))

    def __rich__(self):
        from probe.core.display import rich_view

        return rich_view(self)

    def to_dict(self) -> dict:
        return {
            "output": self.output, "target": self.target, "method": self.method, "n_steps": self.n_steps,
            "baseline": {"kind": self.baseline, "prediction": self.baseline_prediction},
            "samples": (self.sample or SampleInfo(self.samples, self.samples, None)).to_dict(),
            "widths": list(self.widths), "activation": self.activation,
            "coverage": self.coverage, "completeness": self.completeness.to_dict(),
            "selectivity": None if self.selectivity is None else [list(s) for s in self.selectivity],
            "drivers": {"negative": [d.to_dict() for d in self.drivers_negative],
                        "positive": [d.to_dict() for d in self.drivers_positive]},
            "groups": {g.name: g.to_dict() for g in self.groups},
        }


def summarize_for_compare(result: CircuitResult) -> dict:
    """Flat per-model numbers for ``probe compare``'s per-variant medians across seeds.

    Keys (``None`` where undefined, e.g. an empty group):
        ``circuit_size_negative`` / ``circuit_size_positive``: hidden units in
        each group's 90% circuit; ``circuit_fraction_negative``: that over all
        hidden units; ``activation_route_share_output`` / ``cancellation_output``:
        negative group, into output K; ``activation_route_share_hidden`` /
        ``cancellation_hidden``: negative group, pooled over the layers fed by
        hidden units (2..L+1); ``negative_samples``; ``completeness_rel_error``.
    """
    neg, pos = result.groups
    share_hidden, cancel_hidden = pooled_share(neg.routes[1:])
    return {
        "circuit_size_negative": neg.circuit_size if neg.samples else None,
        "circuit_size_positive": pos.circuit_size if pos.samples else None,
        "circuit_fraction_negative": neg.circuit_fraction if neg.samples else None,
        "activation_route_share_output": neg.routes[-1].activation_route_share,
        "cancellation_output": neg.routes[-1].cancellation,
        "activation_route_share_hidden": share_hidden,
        "cancellation_hidden": cancel_hidden,
        "negative_samples": neg.samples,
        "completeness_rel_error": result.completeness.max_rel_error,
    }


def contributions(weights: tuple[np.ndarray, ...], group: GroupCircuit) -> list[np.ndarray]:
    """Group-mean edge contributions ``W[k, j] * mean(a_j)`` per Linear layer.

    For the margin target, the row into output K is the group's mean of the
    per-sample effective contributions (:attr:`GroupCircuit.output_contribution`).
    """
    out = [w * np.asarray(group.layers[i].mean_activation)[None, :] for i, w in enumerate(weights)]
    if group.output_contribution is not None:
        k = group.layers[-1].circuit_units[0]
        out[-1] = out[-1].copy()
        out[-1][k] = np.asarray(group.output_contribution)
    return out


def build_graph(result: CircuitResult, group: GroupCircuit) -> nx.DiGraph:
    """The layered circuit graph of one sample group (GraphML export: :mod:`probe.circuit.graph`).

    Nodes are named ``"layer:unit"`` (:func:`probe.circuit.paths.node_id`), one
    per input feature (layer 0), hidden unit (layers 1..L) and output (layer
    L + 1). Node attributes:

    * ``layer``, ``unit`` (int), ``kind`` (``input`` | ``hidden`` | ``output``);
    * ``mean_activation``, ``active_fraction``, ``attribution`` (mean attribution
      of output K; for outputs the mean of ``f(x) - f(baseline)``),
      ``abs_attribution`` (mean absolute attribution) over the group (float);
    * ``in_circuit`` (bool): the unit is in its layer's 90% set (output K only
      among the outputs);
    * ``selectivity`` (float, inputs and hidden units, when both groups have samples).

    One edge per connection ``j -> k`` between consecutive layers, with
    ``weight = W[k, j] * mean over the group of a_j`` (j's signed contribution to
    k's pre-activation; ``a`` is the input feature for the first layer) and
    ``param = W[k, j]`` (margin target: into output K, the group's mean
    effective row and mean effective contribution, see :class:`GroupCircuit`).
    Graph attributes: ``group``, ``output``, ``target``, ``samples``,
    ``method``, ``baseline``, ``activation``.
    """
    import networkx as nx  # loaded only when a graph is built

    g = nx.DiGraph(group=group.name, output=result.output, target=result.target, samples=group.samples,
                   method=result.method, baseline=result.baseline, activation=result.activation)
    last = len(group.layers) - 1
    for lay in group.layers:
        members = set(lay.circuit_units)
        for u in range(lay.units):
            attrs = {"layer": lay.layer, "unit": u, "kind": lay.kind,
                     "mean_activation": lay.mean_activation[u], "active_fraction": lay.active_fraction[u],
                     "attribution": lay.mean_attribution[u], "abs_attribution": lay.mean_abs_attribution[u],
                     "in_circuit": u in members}
            if lay.layer < last and result.selectivity is not None:
                attrs["selectivity"] = result.selectivity[lay.layer][u]
            g.add_node(node_id(lay.layer, u), **attrs)
    for i, (w, c) in enumerate(zip(result.weights, contributions(result.weights, group))):
        if i == len(result.weights) - 1 and group.output_row is not None:
            w = w.copy()
            w[result.output] = np.asarray(group.output_row)
        rows, cols = w.shape
        g.add_edges_from(
            (node_id(i, j), node_id(i + 1, k), {"weight": float(c[k, j]), "param": float(w[k, j])})
            for k in range(rows) for j in range(cols))
    return g
