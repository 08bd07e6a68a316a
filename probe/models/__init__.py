"""The canonical MLP and loading every checkpoint format into it."""

from probe.models.convert import module_to_mlp
from probe.models.state import linears_from_state
from probe.models.torchscript import script_to_mlp
from probe.models.loading import LoadedModel, load_mlp, save_checkpoint
from probe.models.mlp import CHECKPOINT_FORMAT, MLP, to_checkpoint

__all__ = ["CHECKPOINT_FORMAT", "LoadedModel", "MLP", "linears_from_state", "load_mlp",
           "module_to_mlp", "save_checkpoint", "script_to_mlp", "to_checkpoint"]
