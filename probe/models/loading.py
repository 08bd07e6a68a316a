"""Load every supported model file into a canonical MLP, never running untrusted code.

Formats, told apart before anything is loaded (:mod:`probe.models.archive`):

1. TorchScript (``torch.jit.save``): recognised by its archive layout. It
   carries code that runs while it loads, so it needs ``trust=True``.
2. probe's checkpoint: a dict with ``format == "probe-mlp/1"``.
3. A bare ``state_dict`` (needs an activation spec), alone, inside a
   training checkpoint (:mod:`probe.models.layouts`) or in a ``.safetensors``
   file (:mod:`probe.models.safetensors_file`); its layers are ordered by
   names and shapes (:mod:`probe.models.state`).
4. A pickled ``nn.Module`` made of ``torch.nn`` classes only (an allow-list);
   anything else needs ``trust=True``.
5. A scikit-learn MLP from a ``.skops`` file, or from a joblib/pickle file
   with ``trust=True`` (:mod:`probe.models.sklearn_mlp`).

What probe could not verify (a state_dict's layer order and activation, a
classifier's dropped output activation) is listed in ``LoadedModel.warnings``.

Everything but trusted files is read with ``torch.load(weights_only=True)``,
after the sizes the file declares are checked against the memory budget
(``max_memory``) and its pickles are checked for constructors that allocate
what they are told; every tensor's declared size is checked again before it is
copied (:mod:`probe.models.guards`). Whatever goes wrong with a file ends as
one :class:`~probe.core.errors.ModelLoadError`, never a traceback.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from probe.core.errors import ModelLoadError, ProbeError, article
from probe.core.io import atomic_write_bytes
from probe.core.variants import GRAMMAR, Variant, parse_variant
from probe.models.archive import (PICKLE, SAFETENSORS, SKOPS, TORCHSCRIPT, corrupt, inspect_file,
                                  torchscript_refused)
from probe.models.borrowed_hooks import InertHook
from probe.models.checkpoint import _keys, read_checkpoint
from probe.models.convert import module_to_mlp
from probe.models.guards import clip, short
from probe.models.layouts import describe, find_model, is_state_dict, strip_prefixes, training_state_globals
from probe.models.mlp import CHECKPOINT_FORMAT, MLP, norm_spec, to_checkpoint
from probe.models.safetensors_file import load_safetensors
from probe.models.sklearn_mlp import is_sklearn, joblib_refused, load_joblib, load_skops, sklearn_to_mlp
from probe.models.state import read_state
from probe.models.torchscript import script_to_mlp

#: Classes a pickled model may consist of without ``--trust``: torch.nn modules only.
SAFE_MODULE_CLASSES = tuple(
    obj for obj in vars(nn).values() if isinstance(obj, type) and issubclass(obj, nn.Module)
)
#: Besides those classes, what a model pickled in a loop that ``probe.track`` records holds: the no-op
#: that its hooks pickle as (built with no arguments; calling it does nothing).
SAFE_HOOK_CLASSES = (InertHook,)


@dataclass(frozen=True)
class LoadedModel:
    """A model file loaded into a canonical MLP.

    Attributes:
        mlp: The canonical MLP (eval mode).
        path: Where it came from.
        format: What the file held: ``probe-checkpoint``, ``state_dict``, ``torchscript``,
            ``pickled-module`` or ``sklearn MLPRegressor``/``sklearn MLPClassifier``, followed by
            the layout in parentheses when there was one, e.g. ``state_dict (lightning
            checkpoint)``, ``state_dict (safetensors)``, ``sklearn MLPClassifier (skops)``.
        meta: Extra checkpoint fields (``scenario``, ``seed``, ...; ``stripped_prefix`` when
            wrapper prefixes such as ``module.`` were removed from a state_dict's keys).
        warnings: What probe could not verify about the conversion, one sentence each.
    """

    mlp: MLP
    path: str
    format: str
    meta: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"path": self.path, "format": self.format, "architecture": self.mlp.describe(),
                "widths": self.mlp.widths, "activation": self.mlp.activation_spec,
                "norms": [norm_spec(n) for n in self.mlp.norms], "conversions": list(self.mlp.notes),
                **{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float))}}


def _corrupt(path: Path, exc: BaseException) -> ModelLoadError:
    if isinstance(exc, MemoryError):
        return ModelLoadError(f"Ran out of memory while loading {path}",
                              expected="a model that fits in memory", found="MemoryError",
                              fix="check the file, or free memory; a file that declares more than "
                                  "--max-memory is refused before it is loaded")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "Weights only load failed" in text or not text:
        detail = "not a file that torch.load can read"
    else:
        detail = clip(text, 160)
    return corrupt(path, f"{type(exc).__name__}: {detail}")


def load_mlp(path: str | Path, activation: str | Variant | None = None, *,
             trust: bool = False, max_memory: int | None = None,
             layer_order: Sequence[str] | str | None = None) -> LoadedModel:
    """Load a model file into a canonical :class:`MLP`.

    Args:
        path: The model file.
        activation: Variant spec; required for a bare state_dict, overrides the
            activation of a TorchScript model with a functional activation.
        trust: Allow executing code from the file: pickled custom classes, and
            TorchScript (which runs code while loading). Only for files you trust.
        max_memory: Bytes of tensors the file may declare (compressed records
            counted inflated, views counted at their full shape); ``None``: the
            default of ``probe.core.limits.DEFAULT_MAX_MEMORY`` (4 GiB).
        layer_order: A state_dict's Linear layers (module names such as
            ``fc1``, or one comma-separated string) in the order ``forward``
            calls them; by default the order is read from the names and shapes,
            with a warning when they leave it open.

    Raises:
        ModelLoadError: Missing, corrupt, untrusted, over a limit or non-MLP model.
        VariantError: ``activation`` is not a variant spec.
    """
    path = Path(path)
    variant = parse_variant(activation) if isinstance(activation, str) else activation
    if isinstance(layer_order, str):
        layer_order = [name for name in layer_order.split(",") if name.strip()]
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} does not exist" if not path.exists()
                             else f"{path} is not a model file",
                             expected="a path to a model file (.pt, .pth, .ckpt, .safetensors, .skops, ...)",
                             found="nothing at that path" if not path.exists() else "a folder",
                             fix="check the path (probe compare --save-dir writes probe checkpoints, one file each: "
                                 "pass one of them)")
    try:
        return _load(path, variant, trust, max_memory, layer_order)
    except ProbeError:
        raise
    except Exception as exc:  # a file no check foresaw: still one paragraph, never a traceback
        raise ModelLoadError(
            f"Could not turn {path} into an MLP",
            expected="a probe checkpoint, a state_dict, TorchScript or an nn.Module of an MLP",
            found=f"a file that breaks the conversion ({type(exc).__name__}: {clip(str(exc), 160)})",
            fix="save model.state_dict() with torch.save and load it with --activation") from None


def _load(path: Path, variant: Variant | None, trust: bool, max_memory: int | None,
          layer_order: Sequence[str] | None) -> LoadedModel:
    kind = inspect_file(path, max_memory=max_memory, trust=trust)
    if kind == SAFETENSORS:
        return _from_state(load_safetensors(path, max_memory), path, variant, max_memory, layer_order,
                           "safetensors")
    if kind == TORCHSCRIPT:
        if not trust:
            raise torchscript_refused(path)
        try:
            script = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise _corrupt(path, exc) from None
        mlp = script_to_mlp(script, variant, max_memory=max_memory)
        return LoadedModel(mlp.eval(), str(path), "torchscript", warnings=_order_ignored(layer_order))
    if kind == SKOPS:
        return _from_sklearn(load_skops(path), path, "skops", max_memory, layer_order)
    if kind == PICKLE:
        if not trust:
            raise joblib_refused(path)
        return _from_object(_joblib_load(path), path, variant, max_memory, layer_order, "joblib")
    obj = _torch_load(path, trust)
    return _from_object(obj, path, variant, max_memory, layer_order)


def _order_ignored(layer_order: Sequence[str] | None) -> tuple[str, ...]:
    if layer_order is None:
        return ()
    return ("The layer order given (--layer-order) was not used: it is for state_dicts, and this model's "
            "own forward gives the order.",)


def _from_sklearn(obj: object, path: Path, layout: str, max_memory: int | None,
                  layer_order: Sequence[str] | None) -> LoadedModel:
    mlp, name, warnings = sklearn_to_mlp(obj, max_memory=max_memory)
    return LoadedModel(mlp.eval(), str(path), describe(f"sklearn {name}", layout),
                       warnings=warnings + _order_ignored(layer_order))


def _unimportable(path: Path, exc: BaseException) -> ModelLoadError:
    if "__main__" in str(exc):  # defined in the training script itself: no path can import it
        fix = ("the class was defined in the script that saved the model (its __main__), which no "
               "other program can import; in that script, save the weights instead: "
               "torch.save(model.state_dict(), 'model.pt') and pass --activation, or "
               "probe.save_checkpoint(probe.as_model(model).mlp, 'model.pt')")
    else:
        fix = ("run with PYTHONPATH set to the folder of the module that defines the class "
               "(e.g. PYTHONPATH=. probe ...), install the library it comes from, or save "
               "model.state_dict() instead")
    return ModelLoadError(f"The model class pickled in {path} cannot be imported here",
                          expected="the module that defines the model's class to be importable",
                          found=f"{type(exc).__name__}: {clip(str(exc), 160)}", fix=fix)


def _joblib_load(path: Path) -> object:
    try:
        return load_joblib(path)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise _unimportable(path, exc) from None


#: Keys of training checkpoints, as pickled strings (protocol 2+: a length byte or four before the text).
_TRAINING_KEYS = tuple(
    prefix + key for key in (b"state_dict", b"model_state_dict", b"optimizer_state_dict", b"optimizer",
                             b"optimizer_states", b"hyper_parameters", b"epoch", b"lr_schedulers")
    for prefix in (b"\x8c" + bytes([len(key)]), b"X" + len(key).to_bytes(4, "little")))


def _training_checkpoint(path: Path, unsafe: list[str]) -> bool:
    """Whether a refused pickle looks like a training checkpoint (its keys, its classes), read without unpickling."""
    if any(word in g.lower() for g in unsafe for word in ("lightning", "optim", "callback", "scheduler", "trainer")):
        return True
    try:
        with zipfile.ZipFile(path) as zf:
            name = next((i for i in zf.infolist() if i.filename.endswith("data.pkl")), None)
            if name is None or name.file_size > 16 * 2**20:
                return False
            data = zf.read(name)
    except Exception:
        return False
    return any(key in data for key in _TRAINING_KEYS)


def _torch_load(path: Path, trust: bool) -> object:
    if trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except (ModuleNotFoundError, AttributeError) as exc:
            raise _unimportable(path, exc) from None
        except Exception as exc:
            raise _corrupt(path, exc) from None
    try:
        with torch.serialization.safe_globals([*SAFE_MODULE_CLASSES, *SAFE_HOOK_CLASSES,
                                               *training_state_globals()]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise _corrupt(path, exc) from None
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:
            unsafe = []
        unsafe = [g for g in unsafe if not g.startswith("torch.nn.modules.")]
        if not unsafe:  # not a loadable pickle at all: a corrupt file, not a trust question
            raise _corrupt(path, exc) from None
        training = _training_checkpoint(path, unsafe)
        raise ModelLoadError(
            f"Refusing to unpickle {path}: it needs code outside torch.nn to load",
            expected="a probe checkpoint, a state_dict, or a model of torch.nn classes",
            found="pickled references to " + ", ".join(short(g, 80) for g in unsafe[:5]),
            fix="pass --trust only if you trust where the file came from, or save "
                "model.state_dict() instead (and load it with --activation)" + (
                    "; for a training checkpoint, save its weights alone: "
                    "torch.save(ckpt['state_dict'], 'model_state.pt')" if training else ""),
        ) from None
    except Exception as exc:
        raise _corrupt(path, exc) from None


def _from_object(obj: object, path: Path, variant: Variant | None, max_memory: int | None,
                 layer_order: Sequence[str] | None, layout: str = "") -> LoadedModel:
    if is_sklearn(obj):
        return _from_sklearn(obj, path, layout, max_memory, layer_order)
    if isinstance(obj, nn.Module):
        return LoadedModel(module_to_mlp(obj, max_memory=max_memory).eval(), str(path),
                           describe("pickled-module", layout), warnings=_order_ignored(layer_order))
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if isinstance(fmt, str) and fmt == CHECKPOINT_FORMAT:
        mlp, meta = read_checkpoint(obj, path, variant, max_memory)
        loaded = LoadedModel(mlp.eval(), str(path), "probe-checkpoint", meta)
        return replace(loaded, warnings=_order_ignored(layer_order)) if layer_order is not None else loaded
    if isinstance(fmt, str) and fmt.startswith("probe-mlp/"):
        raise ModelLoadError(f"{path} is a probe checkpoint of a format this probe does not read",
                             expected=f"format '{CHECKPOINT_FORMAT}'", found=f"format {short(fmt, 40)}",
                             fix="upgrade probe, or re-save the model with this version")
    if is_state_dict(obj):
        return _from_state(obj, path, variant, max_memory, layer_order, layout)
    found = find_model(obj)
    if found is not None:
        return _from_object(found.model, path, variant, max_memory, layer_order,
                            f"{layout}: {found.layout}" if layout else found.layout)
    keys = f" with keys {_keys(obj)}" if isinstance(obj, dict) else ""
    raise ModelLoadError(f"{path} holds no model probe recognises",
                         expected="a probe checkpoint, a state_dict (alone or under 'model_state_dict', "
                                  "'state_dict', 'model' or 'net'), TorchScript or an nn.Module",
                         found=f"{article(type(obj).__name__)}{keys}",
                         fix="save model.state_dict() or the model itself with torch.save")


def from_object(obj: object, where: Path, variant: Variant | None, max_memory: int | None,
                layer_order: Sequence[str] | None) -> LoadedModel:
    """An in-memory object (a state_dict, a checkpoint dict, a scikit-learn MLP) read like a loaded file.

    ``where`` names it in messages (``the dict passed``).
    """
    try:
        return _from_object(obj, where, variant, max_memory, layer_order)
    except ProbeError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"Could not turn {where} into an MLP",
                             expected="a state_dict, a checkpoint dict holding one, or a scikit-learn MLP",
                             found=f"{type(exc).__name__}: {clip(str(exc), 160)}",
                             fix="pass the trained torch.nn.Module itself") from None


def _from_state(state: dict, path: Path, variant: Variant | None, max_memory: int | None,
                layer_order: Sequence[str] | None, layout: str) -> LoadedModel:
    """A state_dict (bare, unwrapped from a checkpoint, or from safetensors) as a LoadedModel."""
    what = describe("state_dict", layout)
    if not all(isinstance(k, str) for k in state):
        bad = next(k for k in state if not isinstance(k, str))
        raise ModelLoadError(f"{path} looks like a state_dict but its keys are not all names",
                             expected="a dict of parameter names (str) to tensors",
                             found=f"the key {short(bad, 40)} of type {type(bad).__name__} among keys "
                                   f"{_keys(state)}",
                             fix="save model.state_dict() with torch.save")
    if variant is None:
        raise ModelLoadError(
            f"{path} holds a bare {what}, which does not say which activation was used",
            expected="an activation spec for a state_dict",
            found=f"{len(state)} tensors and no activation",
            fix=f"pass --activation with the one the model was trained with ({GRAMMAR}), or load the pickled "
                "model or TorchScript, which record it")
    state, prefix = strip_prefixes(state)
    read = read_state(state, variant, max_memory=max_memory, layer_order=layer_order)
    activation = () if len(read.order) < 2 else (
        f"Activation not verified: a state_dict does not record its activation, so probe used "
        f"'{variant.spec}' as given (--activation). With another activation the analysed network is a "
        "different function: compare the loss probe reports with yours.",)
    meta = {"stripped_prefix": prefix} if prefix else {}
    return LoadedModel(read.mlp.eval(), str(path), what, meta, read.warnings + activation)


def save_checkpoint(mlp: MLP, path: str | Path, **meta: object) -> Path:
    """Write a probe checkpoint atomically (temporary file, then rename)."""
    buf = io.BytesIO()
    torch.save(to_checkpoint(mlp, **meta), buf)
    return atomic_write_bytes(path, buf.getvalue())
