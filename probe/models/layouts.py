"""Checkpoint layouts: find the model inside the dicts training code saves, and name what was found.

Training code rarely saves a bare ``state_dict``. probe unwraps:

- the PyTorch tutorial dict ``{"model_state_dict", "optimizer_state_dict", "epoch", "loss"}``;
- Lightning's ``.ckpt`` (``state_dict`` next to ``optimizer_states``,
  ``lr_schedulers``, ``hyper_parameters``, ``loops``, ``callbacks``, ...);
- any dict holding the model under ``state_dict``, ``model`` or ``net``
  (a state_dict, or a pickled ``nn.Module``).

Optimizer and training state are ignored. The prefixes wrappers add to every
key are stripped, repeatedly (``module._orig_mod.fc1.weight`` is ``fc1.weight``):
``module.`` (DataParallel, DistributedDataParallel), ``_orig_mod.``
(torch.compile) and ``model.`` (Lightning modules holding ``self.model``).

The ``format`` of the loaded model says what was found: the kind of model
(``state_dict``, ``pickled-module``) and, in parentheses, the layout around it,
e.g. ``state_dict (lightning checkpoint)`` or ``state_dict (training
checkpoint, 'model_state_dict')``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: Keys that hold the model in a checkpoint dict, most specific first.
MODEL_KEYS = ("model_state_dict", "state_dict", "model", "net")
#: Keys by which a dict is recognised as a Lightning checkpoint (besides ``state_dict``).
LIGHTNING_KEYS = ("pytorch-lightning_version", "optimizer_states", "lr_schedulers", "hyper_parameters", "loops")
#: Prefixes that wrappers add to every key of a state_dict.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")

_MAX_DEPTH = 2  # {"model": {"state_dict": ...}} at most
_NUMERIC_DTYPES = ("Bool", "Float16", "Float32", "Float64", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16",
                   "UInt32", "UInt64")


def training_state_globals() -> list[object]:
    """Classes training checkpoints pickle besides tensors, each building a plain value and nothing else.

    numpy scalars and dtypes (``"loss": np.float32(0.3)``), paths and
    ``argparse.Namespace`` (in ``hyper_parameters``): allowed for
    ``torch.load(weights_only=True)``, since none of them runs code or
    touches the file system when built.
    """
    import argparse
    import pathlib

    import numpy as np

    core = getattr(np, "_core", None) or np.core
    allowed: list[object] = [np.dtype, core.multiarray.scalar, argparse.Namespace, pathlib.Path,
                             pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, f"{name}DType") for name in _NUMERIC_DTYPES if hasattr(dtypes, f"{name}DType")]
    return allowed


@dataclass(frozen=True)
class Found:
    """The model found inside a checkpoint dict.

    Attributes:
        model: A state_dict (a dict of names to tensors) or an ``nn.Module``.
        layout: How it was wrapped, for ``LoadedModel.format``: ``lightning checkpoint`` etc.
        ignored: The other top-level keys (optimizer and training state), ignored.
    """

    model: object
    layout: str
    ignored: tuple[str, ...] = ()


def is_state_dict(obj: object) -> bool:
    """A non-empty dict whose values are all tensors (keys are checked later, with a clear message)."""
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _layout(obj: dict, key: str) -> str:
    if key == "state_dict" and any(k in obj for k in LIGHTNING_KEYS):
        return "lightning checkpoint"
    if key == "model_state_dict":
        return "training checkpoint, 'model_state_dict'"
    return f"checkpoint dict, '{key}'"


def find_model(obj: object, depth: int = 0) -> Found | None:
    """The state_dict or module inside a checkpoint dict, or ``None`` when ``obj`` is none of these layouts."""
    if not isinstance(obj, dict) or depth >= _MAX_DEPTH:
        return None
    for key in MODEL_KEYS:
        if key not in obj:
            continue
        inner = obj[key]
        ignored = tuple(str(k) for k in obj if k != key)
        if is_state_dict(inner) or isinstance(inner, nn.Module):
            return Found(inner, _layout(obj, key), ignored)
        nested = find_model(inner, depth + 1)
        if nested is not None:
            return Found(nested.model, f"{_layout(obj, key)} > {nested.layout}", ignored)
    return None


def strip_prefixes(state: dict) -> tuple[dict, str]:
    """``state`` without the wrapper prefixes every key shares, and the prefix removed ('' if none).

    A prefix is removed only while every key starts with it and something is
    left of each key afterwards.
    """
    removed = ""
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES
                       if all(isinstance(k, str) and k.startswith(p) and len(k) > len(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
        removed += prefix
    return state, removed


def describe(kind: str, layout: str) -> str:
    """``kind`` with its layout in parentheses: ``state_dict (lightning checkpoint)``."""
    return f"{kind} ({layout})" if layout else kind
