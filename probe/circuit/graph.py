"""The layered circuit graph of one sample group, and its GraphML export.

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
``param = W[k, j]``. Graph attributes: ``group``, ``output``, ``samples``,
``method``, ``baseline``, ``activation``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from probe.circuit.paths import node_id
from probe.core.io import atomic_write_text

if TYPE_CHECKING:
    from probe.circuit.result import CircuitResult, GroupCircuit


def contributions(weights: tuple[np.ndarray, ...], group: GroupCircuit) -> list[np.ndarray]:
    """Group-mean edge contributions ``W[k, j] * mean(a_j)`` per Linear layer."""
    return [w * np.asarray(group.layers[i].mean_activation)[None, :] for i, w in enumerate(weights)]


def build_graph(result: CircuitResult, group: GroupCircuit) -> nx.DiGraph:
    """The layered DiGraph of ``group`` (attributes as in the module docstring)."""
    g = nx.DiGraph(group=group.name, output=result.output, samples=group.samples,
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
        rows, cols = w.shape
        g.add_edges_from(
            (node_id(i, j), node_id(i + 1, k), {"weight": float(c[k, j]), "param": float(w[k, j])})
            for k in range(rows) for j in range(cols))
    return g


def write_graphml(result_or_graph: CircuitResult | nx.DiGraph, path: str | Path,
                  group: str = "negative") -> Path:
    """Write a circuit graph as GraphML, atomically.

    Args:
        result_or_graph: A :class:`CircuitResult` (its ``group`` graph is written)
            or a graph from :meth:`CircuitResult.graph`.
        path: Destination file.
        group: ``negative`` or ``positive`` (ignored for a graph).

    Returns:
        The path written. ``networkx.read_graphml(path)`` gives the graph back
        with the documented attribute names and types.
    """
    graph = result_or_graph if isinstance(result_or_graph, nx.Graph) else result_or_graph.graph(group)
    text = "\n".join(nx.generate_graphml(graph)) + "\n"
    return atomic_write_text(path, text)
