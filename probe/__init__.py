"""probe: mechanistic diagnostics for PyTorch MLPs.

Everything the CLI does is one import away::

    from probe import load_mlp, load_data, analyze
    result = analyze(load_mlp("model.pt"), load_data("eval.npz"))
"""

from probe.engines.analysis import AnalysisResult, analyze, diagnose
from probe.experiment.workflows import analyze_file, circuit_file
from probe.circuit import CircuitResult, circuit
from probe.compare.run import CompareResult, compare
from probe.core.data import Dataset, load_data
from probe.core.errors import ProbeError
from probe.models import MLP, LoadedModel, load_mlp, save_checkpoint
from probe.experiment.scenarios import Scenario, list_scenarios, load_scenario, make_datasets
from probe.core.variants import Variant, parse_variant

__version__ = "0.1.0"

__all__ = [
    "MLP", "AnalysisResult", "CircuitResult", "CompareResult", "Dataset", "LoadedModel", "ProbeError", "Scenario",
    "Variant", "__version__", "analyze", "analyze_file", "circuit", "circuit_file", "compare", "diagnose",
    "list_scenarios", "load_data", "load_mlp", "load_scenario", "make_datasets", "parse_variant",
    "save_checkpoint",
]
