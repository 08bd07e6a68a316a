"""Whatever the user calls a model (a path, an ``nn.Module``, a loaded model) as a :class:`LoadedModel`."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from probe.core.errors import ModelLoadError
from probe.core.variants import Variant
from probe.models.convert import module_to_mlp
from probe.models.loading import LoadedModel, load_mlp
from probe.models.mlp import MLP


def as_model(model: object, activation: str | Variant | None = None, *, trust: bool = False,
             **load_options) -> LoadedModel:
    """A :class:`LoadedModel` from a model file path, an ``nn.Module`` or a ``LoadedModel``.

    Args:
        model: A path (any format :func:`probe.models.load_mlp` reads), a
            chain-shaped ``nn.Module`` (converted and checked, never modified),
            a probe ``MLP`` or a ``LoadedModel``.
        activation: Variant spec for a bare state_dict file.
        trust: Allow files that carry code (see :func:`probe.models.load_mlp`).
        **load_options: Further options of :func:`probe.models.load_mlp` (paths only).

    Raises:
        ModelLoadError: Not a model, or not an MLP probe can analyse.
    """
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        return load_mlp(model, activation, trust=trust, **load_options)
    if isinstance(model, nn.Module):
        mlp = model if isinstance(model, MLP) else module_to_mlp(model)
        return LoadedModel(mlp, None, "module")  # no file: the JSON says path null
    raise ModelLoadError("This is not a model", expected="a model file path, an nn.Module or a probe LoadedModel",
                         found=type(model).__name__, fix="pass the trained torch.nn.Module or its file")
