"""Sign circuits: how the whole network builds a negative (or positive) output.

``trace_circuit(mlp, data, output=K)`` takes a seeded sample of at most 2,000
rows stratified by the sign of the prediction of output K (or of class K's
logit margin, ``target="margin"``), splits it by that sign, attributes the
target to the inputs and every hidden unit (DeepLift in closed form for
ReLU/leaky chains, else captum), and returns a :class:`CircuitResult`: per group, the 90% circuit per
layer, the sign routes layer by layer, the strongest paths, and a layered
``networkx.DiGraph`` (``result.graph("negative")``) for export with
:func:`write_graphml` or :func:`probe.report.circuit_figure.draw_circuit`.
``trace_circuits(models, data)`` traces many same-shaped models at once (one
batched closed-form DeepLift for ReLU-family chains; ``compare`` uses it).

Names are imported on first use, so that code needing only the result types
does not load captum.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "smallest_cover": "probe.circuit.core", "trace_circuit": "probe.circuit.core",
    "trace_circuits": "probe.circuit.batched",
    "write_graphml": "probe.circuit.graph",
    "CircuitPath": "probe.circuit.paths", "node_id": "probe.circuit.paths", "top_paths": "probe.circuit.paths",
    "CircuitResult": "probe.circuit.result", "Completeness": "probe.circuit.result",
    "Driver": "probe.circuit.result", "GroupCircuit": "probe.circuit.result",
    "LayerCircuit": "probe.circuit.result", "build_graph": "probe.circuit.result",
    "summarize_for_compare": "probe.circuit.result",
    "LayerRoutes": "probe.circuit.routes",
    "CircuitError": "probe.circuit.validate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'probe.circuit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
