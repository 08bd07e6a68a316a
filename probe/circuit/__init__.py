"""Sign circuits: how the whole network builds a negative (or positive) output.

``circuit(mlp, data, output=K)`` splits the samples by the sign of the
prediction of output K, attributes K to the inputs and every hidden unit with
captum, and returns a :class:`CircuitResult`: per group, the 90% circuit per
layer, the sign routes layer by layer, the strongest paths, and a layered
``networkx.DiGraph`` (``result.graph("negative")``) for export with
:func:`write_graphml` or :func:`draw_circuit`.
"""

from probe.circuit.core import circuit, smallest_cover
from probe.circuit.draw import draw_circuit
from probe.circuit.graph import build_graph, write_graphml
from probe.circuit.paths import CircuitPath, node_id, top_paths
from probe.circuit.result import (CircuitResult, Completeness, Driver, GroupCircuit, LayerCircuit,
                                  summarize_for_compare)
from probe.circuit.routes import LayerRoutes
from probe.circuit.validate import CircuitError

__all__ = [
    "CircuitError", "CircuitPath", "CircuitResult", "Completeness", "Driver", "GroupCircuit",
    "LayerCircuit", "LayerRoutes", "build_graph", "circuit", "draw_circuit", "node_id",
    "smallest_cover", "summarize_for_compare", "top_paths", "write_graphml",
]
