"""How results render themselves (``__rich__``) without a lower layer importing the report layer.

Result classes live in the layers that compute them; their terminal views live
in ``probe.report``. A result's ``__rich__`` asks :func:`rich_view`, which finds
the view registered for its class by module name and imports it only then: the
dependency stays a name resolved at display time, never an import, so the layer
rule (imports only go down) holds and ``import probe`` stays light.
"""

from __future__ import annotations

import importlib

#: result class name -> "module:function" returning a rich renderable
VIEWS = {
    "AnalysisResult": "probe.report.analyze_view:analysis_renderable",
    "CompareResult": "probe.report.compare_view:compare_renderable",
    "CircuitResult": "probe.report.circuit_view:circuit_renderable",
}


def rich_view(result: object):
    """The rich renderable of ``result`` (tables, verdicts), as the terminal shows it."""
    target = VIEWS.get(type(result).__name__)
    if target is None:
        return repr(result)
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)(result)
