"""probe: mechanistic diagnostics for PyTorch MLPs.

Everything the CLI does is one import away, and ``import probe`` itself is
cheap and touches no global state: the names below are imported on first use.

    >>> import probe
    >>> result = probe.analyze(model, X, y)                    # doctest: +SKIP
    >>> result.diagnostics.layers[0].gradient.grad_ratio       # doctest: +SKIP
    >>> runs = probe.compare_variants(["relu", "leaky"], "signed_regression", seeds=10)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

from probe.core.version import __version__

# public name -> module that defines it (the layers are in probe.layers)
_EXPORTS = {
    "ProbeError": "probe.core.errors",
    "Dataset": "probe.core.data",
    "load_data": "probe.core.data",
    "as_dataset": "probe.core.checks",
    "Variant": "probe.core.variants",
    "parse_variant": "probe.core.variants",
    "MLP": "probe.models.mlp",
    "LoadedModel": "probe.models.loading",
    "load_mlp": "probe.models.loading",
    "save_checkpoint": "probe.models.loading",
    "as_model": "probe.models.coerce",
    "NetworkDiagnostics": "probe.diagnostics.results",
    "AnalysisResult": "probe.engines.analysis",
    "diagnose": "probe.engines.analysis",
    "track": "probe.engines.track",
    "CircuitResult": "probe.circuit.result",
    "trace_circuit": "probe.circuit.core",
    "trace_circuits": "probe.circuit.batched",
    "Scenario": "probe.experiment.scenarios",
    "list_scenarios": "probe.experiment.scenarios",
    "load_scenario": "probe.experiment.scenarios",
    "make_datasets": "probe.experiment.datasets",
    "analyze": "probe.experiment.workflows",
    "CompareResult": "probe.compare.results",
    "compare_variants": "probe.compare.run",
    "plot_loss_curves": "probe.report.compare_plots",
    "plot_steps_to_target": "probe.report.compare_plots",
    "plot_grad_ratio": "probe.report.diagnostic_plots",
    "plot_circuit": "probe.report.circuit_figure",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__
