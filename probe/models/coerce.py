"""Whatever the user calls a model (a path, an ``nn.Module``, a loaded model) as a :class:`LoadedModel`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from probe.core.errors import ModelLoadError
from probe.core.variants import Variant, parse_variant
from probe.models.convert import module_to_mlp
from probe.models.loading import LoadedModel, _order_ignored, from_object, load_mlp
from probe.models.sklearn_mlp import is_sklearn
from probe.models.torchscript import script_to_mlp
from probe.models.mlp import MLP


def as_model(model: object, activation: str | Variant | None = None, *, trust: bool = False,
             layer_order: Sequence[str] | str | None = None, **load_options) -> LoadedModel:
    """A :class:`LoadedModel` from a model file path, an in-memory model or a ``LoadedModel``.

    Args:
        model: A path (any format :func:`probe.models.load_mlp` reads), a
            chain-shaped ``nn.Module`` (converted and checked, never modified;
            DataParallel and torch.compile wrappers are seen through), a loaded
            TorchScript module (``torch.jit.load``), a fitted scikit-learn
            ``MLPRegressor``/``MLPClassifier``, a state_dict (a dict of names to
            tensors, or a training checkpoint dict holding one), a probe ``MLP``
            or a ``LoadedModel``.
        activation: Variant spec for a state_dict (a file or a dict); overrides
            a TorchScript model's functional activation.
        trust: Allow files that carry code (see :func:`probe.models.load_mlp`).
        layer_order: A state_dict's Linear layers in the order ``forward`` calls
            them (see :func:`probe.models.load_mlp`).
        **load_options: Further options of :func:`probe.models.load_mlp` (paths only).

    Raises:
        ModelLoadError: Not a model, or not an MLP probe can analyse.
    """
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        return load_mlp(model, activation, trust=trust, layer_order=layer_order, **load_options)
    variant = parse_variant(activation) if isinstance(activation, str) else activation
    if isinstance(model, torch.jit.ScriptModule):  # already loaded: its code has run, no trust question left
        mlp = script_to_mlp(model, variant, max_memory=load_options.get("max_memory"))
        return LoadedModel(mlp.eval(), None, "torchscript", warnings=_order_ignored(layer_order))
    if isinstance(model, nn.Module):
        mlp = model if isinstance(model, MLP) else module_to_mlp(model)
        return LoadedModel(mlp, None, "module", warnings=_order_ignored(layer_order))  # no file: path null
    if is_sklearn(model) or isinstance(model, dict):
        if isinstance(layer_order, str):
            layer_order = [name for name in layer_order.split(",") if name.strip()]
        loaded = from_object(model, Path(f"the {type(model).__name__} passed"), variant,
                             load_options.get("max_memory"), layer_order)
        return replace(loaded, path=None)
    raise ModelLoadError("This is not a model", expected="a model file path, an nn.Module, a loaded TorchScript "
                                                         "module, a scikit-learn MLP, a state_dict or a probe "
                                                         "LoadedModel",
                         found=type(model).__name__, fix="pass the trained torch.nn.Module or its file")
