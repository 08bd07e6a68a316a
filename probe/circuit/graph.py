"""GraphML export of a circuit graph (the graph itself: :func:`probe.circuit.result.build_graph`)."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from probe.circuit.result import CircuitResult
from probe.core.io import atomic_write_text


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
