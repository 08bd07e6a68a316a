"""probe: mechanistic diagnostics for PyTorch MLPs.

Everything the CLI does is one import away::

    from probe import load_mlp, load_data, analyze
    result = analyze(load_mlp("model.pt"), load_data("eval.npz"))
"""

from probe.analysis import AnalysisResult, analyze, diagnose
from probe.data import Dataset, load_data
from probe.errors import ProbeError
from probe.models import MLP, LoadedModel, load_mlp, save_checkpoint
from probe.variants import Variant, parse_variant

__version__ = "0.1.0"

__all__ = [
    "MLP", "AnalysisResult", "Dataset", "LoadedModel", "ProbeError", "Variant", "__version__",
    "analyze", "diagnose", "load_data", "load_mlp", "parse_variant", "save_checkpoint",
]
