"""Sign circuits: how the whole network builds a negative (or positive) output.

``trace_circuit(mlp, data, output=K)`` splits the samples by the sign of the
prediction of output K, attributes K to the inputs and every hidden unit with
captum, and returns a :class:`CircuitResult`: per group, the 90% circuit per
layer, the sign routes layer by layer, the strongest paths, and a layered
``networkx.DiGraph`` (``result.graph("negative")``) for export with
:func:`write_graphml` or :func:`probe.report.circuit_figure.draw_circuit`.
"""

from probe.circuit.core import smallest_cover, trace_circuit
from probe.circuit.graph import write_graphml
from probe.circuit.paths import CircuitPath, node_id, top_paths
from probe.circuit.result import (CircuitResult, Completeness, Driver, GroupCircuit, LayerCircuit, build_graph,
                                  summarize_for_compare)
from probe.circuit.routes import LayerRoutes
from probe.circuit.validate import CircuitError

__all__ = [
    "CircuitError", "CircuitPath", "CircuitResult", "Completeness", "Driver", "GroupCircuit",
    "LayerCircuit", "LayerRoutes", "build_graph", "node_id",
    "smallest_cover", "summarize_for_compare", "top_paths", "trace_circuit", "write_graphml",
]
