"""Load every supported model file into a canonical MLP, never running untrusted code.

Formats, told apart before anything is loaded (:mod:`probe.models.archive`):

1. TorchScript (``torch.jit.save``): recognised by its archive layout. It
   carries code that runs while it loads, so it needs ``trust=True``.
2. probe's checkpoint: a dict with ``format == "probe-mlp/1"``.
3. A bare ``state_dict`` (needs an activation spec).
4. A pickled ``nn.Module`` made of ``torch.nn`` classes only (an allow-list);
   anything else needs ``trust=True``.

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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from probe.core.errors import ModelLoadError, ProbeError, article
from probe.core.io import atomic_write_bytes
from probe.core.variants import Variant, parse_variant
from probe.models.archive import TORCHSCRIPT, corrupt, inspect_file, torchscript_refused
from probe.models.convert import linears_from_state, module_to_mlp
from probe.models.torchscript import script_to_mlp
from probe.models.guards import check_tensors, check_widths, clip, short
from probe.models.mlp import CHECKPOINT_FORMAT, MLP, norm_spec, to_checkpoint

#: Classes a pickled model may consist of without ``--trust``: torch.nn modules only.
SAFE_MODULE_CLASSES = tuple(
    obj for obj in vars(nn).values() if isinstance(obj, type) and issubclass(obj, nn.Module)
)


@dataclass(frozen=True)
class LoadedModel:
    """A model file loaded into a canonical MLP.

    Attributes:
        mlp: The canonical MLP (eval mode).
        path: Where it came from.
        format: ``probe-checkpoint``, ``state_dict``, ``torchscript`` or ``pickled-module``.
        meta: Extra checkpoint fields (``scenario``, ``seed``, ...).
    """

    mlp: MLP
    path: str
    format: str
    meta: dict = field(default_factory=dict)

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
             trust: bool = False, max_memory: int | None = None) -> LoadedModel:
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

    Raises:
        ModelLoadError: Missing, corrupt, untrusted, over a limit or non-MLP model.
        VariantError: ``activation`` is not a variant spec.
    """
    path = Path(path)
    variant = parse_variant(activation) if isinstance(activation, str) else activation
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} does not exist" if not path.exists()
                             else f"{path} is not a model file",
                             expected="a path to a .pt/.pth file",
                             found="nothing at that path" if not path.exists() else "a folder",
                             fix="check the path (probe compare --save-dir writes probe checkpoints, one file each: "
                                 "pass one of them)")
    try:
        return _load(path, variant, trust, max_memory)
    except ProbeError:
        raise
    except Exception as exc:  # a file no check foresaw: still one paragraph, never a traceback
        raise ModelLoadError(
            f"Could not turn {path} into an MLP",
            expected="a probe checkpoint, a state_dict, TorchScript or an nn.Module of an MLP",
            found=f"a file that breaks the conversion ({type(exc).__name__}: {clip(str(exc), 160)})",
            fix="save model.state_dict() with torch.save and load it with --activation") from None


def _load(path: Path, variant: Variant | None, trust: bool, max_memory: int | None) -> LoadedModel:
    kind = inspect_file(path, max_memory=max_memory, trust=trust)
    if kind == TORCHSCRIPT:
        if not trust:
            raise torchscript_refused(path)
        try:
            script = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise _corrupt(path, exc) from None
        mlp = script_to_mlp(script, variant, max_memory=max_memory)
        return LoadedModel(mlp.eval(), str(path), "torchscript")
    obj = _torch_load(path, trust)
    return _from_object(obj, path, variant, max_memory)


def _torch_load(path: Path, trust: bool) -> object:
    if trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except (ModuleNotFoundError, AttributeError) as exc:
            if "__main__" in str(exc):  # defined in the training script itself: no path can import it
                fix = ("the class was defined in the script that saved the model (its __main__), which no "
                       "other program can import; in that script, save the weights instead: "
                       "torch.save(model.state_dict(), 'model.pt') and pass --activation, or "
                       "probe.save_checkpoint(probe.as_model(model).mlp, 'model.pt')")
            else:
                fix = ("run with PYTHONPATH set to the folder of the module that defines the class "
                       "(e.g. PYTHONPATH=. probe ...), or save model.state_dict() instead")
            raise ModelLoadError(
                f"The model class pickled in {path} cannot be imported here",
                expected="the module that defines the model's class to be importable",
                found=f"{type(exc).__name__}: {clip(str(exc), 160)}", fix=fix) from None
        except Exception as exc:
            raise _corrupt(path, exc) from None
    try:
        with torch.serialization.safe_globals(list(SAFE_MODULE_CLASSES)):
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
        raise ModelLoadError(
            f"Refusing to unpickle {path}: it needs code outside torch.nn to load",
            expected="a probe checkpoint, a state_dict, or a model of torch.nn classes",
            found="pickled references to " + ", ".join(short(g, 80) for g in unsafe[:5]),
            fix="pass --trust only if you trust where the file came from, or save "
                "model.state_dict() instead (and load it with --activation)",
        ) from None
    except Exception as exc:
        raise _corrupt(path, exc) from None


#: Fields probe writes into its checkpoints, and the types a reader may rely on.
_META_TYPES: dict[str, type] = {"activation": str, "scenario": str, "scenario_path": str, "variant": str,
                                "seed": int}
_MAX_META_TEXT = 4096  # characters in a recorded name or path


def _keys(obj: dict, limit: int = 8) -> str:
    """A dict's keys for a message: any key types, at most ``limit`` of them, each cut short."""
    keys = [short(k, 40) for k in list(obj)[:limit]]
    return "[" + ", ".join(keys) + (", ..." if len(obj) > limit else "") + "]"


def _malformed(path: Path, found: str, expected: str) -> ModelLoadError:
    return ModelLoadError(f"The probe checkpoint {path} is malformed", expected=expected, found=found,
                          fix="re-save it with probe (probe compare --save-dir, or probe.save_checkpoint)")


def _checkpoint_meta(obj: dict, path: Path) -> dict:
    """The checkpoint's metadata, each field probe reads checked for its type.

    Unknown fields are kept when they are plain values (str, int, float, bool,
    None, or a flat list of those) and dropped otherwise.
    """
    meta: dict = {}
    for key, value in obj.items():
        if key in ("state_dict", "format"):
            continue
        want = _META_TYPES.get(key)
        if want is not None:
            if not isinstance(value, want) or isinstance(value, bool):
                raise _malformed(path, f"'{key}' = {short(value, 60)} ({type(value).__name__})",
                                 f"'{key}' to be {'an integer' if want is int else 'a string'}")
            if isinstance(value, str) and (len(value) > _MAX_META_TEXT or "\x00" in value):
                raise _malformed(path, f"'{key}' = {short(value, 60)} ({len(value)} characters)",
                                 f"'{key}' to be a name or path of at most {_MAX_META_TEXT} characters")
        elif key == "widths":
            if not isinstance(value, (list, tuple)) or not all(
                    isinstance(w, int) and not isinstance(w, bool) for w in value):
                raise _malformed(path, f"'widths' = {short(value, 60)}", "'widths' to be a list of integers")
            value = list(value)
        elif not isinstance(key, str) or not _plain(value):
            continue
        meta[key] = value
    return meta


def _plain(value: object) -> bool:
    scalar = (str, int, float, bool, type(None))
    return isinstance(value, scalar) or (isinstance(value, (list, tuple)) and all(isinstance(v, scalar) for v in value))


def _from_checkpoint(obj: dict, path: Path, variant: Variant | None, max_memory: int | None) -> LoadedModel:
    if "state_dict" not in obj or "activation" not in obj:
        raise ModelLoadError(f"The probe checkpoint {path} is incomplete",
                             expected="keys 'state_dict' and 'activation'",
                             found=f"keys {_keys(obj)}", fix="re-save it with probe")
    spec = obj["activation"]
    if not isinstance(spec, str):
        raise _malformed(path, f"'activation' = {short(spec, 60)} ({type(spec).__name__})",
                         "'activation' to be a variant spec such as 'relu' or 'leaky:0.1'")
    meta = _checkpoint_meta(obj, path)
    if variant is not None and variant.spec != spec.strip().lower() and not (
            variant.learnable and spec == "prelu"):
        raise ModelLoadError(f"--activation {variant.spec} contradicts the probe checkpoint {path}",
                             expected=f"no --activation (the checkpoint records '{short(spec, 40)}')",
                             found=f"--activation {variant.spec}",
                             fix="drop --activation: a probe checkpoint says which activation it was trained with")
    if variant is None:
        try:
            variant = parse_variant(spec)
        except ProbeError:
            raise _malformed(path, f"'activation' = {short(spec, 60)}",
                             "'activation' to be relu, leaky, leaky:SLOPE or prelu") from None
    state = obj["state_dict"]
    if not isinstance(state, dict):
        raise _malformed(path, f"'state_dict' is a {type(state).__name__} ({short(state, 60)})",
                         "'state_dict' to be a dict of parameter names (str) to tensors")
    if obj.get("norms") is not None:
        mlp = _with_norms(state, obj, meta, variant, path, max_memory)
    else:
        mlp = linears_from_state(state, variant, max_memory=max_memory)
    if "widths" in meta and meta["widths"] != mlp.widths:
        raise _malformed(path, f"recorded widths {short(meta['widths'], 60)} but weights of widths "
                               f"{short(mlp.widths, 60)}", "the recorded widths to match the weights")
    return LoadedModel(mlp.eval(), str(path), "probe-checkpoint", meta)


def _with_norms(state: dict, obj: dict, meta: dict, variant: Variant, path: Path,
                max_memory: int | None) -> MLP:
    """A probe checkpoint whose hidden layers have norms: rebuilt from its recorded layout."""
    check_tensors(state.items(), "this checkpoint", max_memory)
    norms, widths = obj["norms"], meta.get("widths")
    if widths is None or not isinstance(norms, list) or not all(
            n is None or isinstance(n, dict) and n.get("kind") in ("layer", "rms") for n in norms):
        raise _malformed(path, f"'norms' = {short(norms, 60)}",
                         "'norms' to be a list of null or {kind: layer|rms, eps, affine}, with 'widths'")
    check_widths(widths)
    try:
        mlp = MLP.from_state(state, widths, variant, norms)
    except Exception as exc:
        raise _malformed(path, f"weights that do not fit the recorded layout ({clip(str(exc), 120)})",
                         "a state_dict matching 'widths', 'activation' and 'norms'") from None
    if not all(torch.isfinite(p).all() for p in mlp.parameters()):
        raise ModelLoadError(f"{path} has NaN or infinite weights", expected="finite weights",
                             found="NaN/inf values (a diverged training run?)",
                             fix="analyse a checkpoint saved before the run diverged")
    return mlp


def _from_object(obj: object, path: Path, variant: Variant | None, max_memory: int | None) -> LoadedModel:
    if isinstance(obj, nn.Module):
        return LoadedModel(module_to_mlp(obj, max_memory=max_memory).eval(), str(path), "pickled-module")
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if isinstance(fmt, str) and fmt == CHECKPOINT_FORMAT:
        return _from_checkpoint(obj, path, variant, max_memory)
    if isinstance(fmt, str) and fmt.startswith("probe-mlp/"):
        raise ModelLoadError(f"{path} is a probe checkpoint of a format this probe does not read",
                             expected=f"format '{CHECKPOINT_FORMAT}'", found=f"format {short(fmt, 40)}",
                             fix="upgrade probe, or re-save the model with this version")
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if not all(isinstance(k, str) for k in obj):
            bad = next(k for k in obj if not isinstance(k, str))
            raise ModelLoadError(f"{path} looks like a state_dict but its keys are not all names",
                                 expected="a dict of parameter names (str) to tensors",
                                 found=f"the key {short(bad, 40)} of type {type(bad).__name__} among keys "
                                       f"{_keys(obj)}",
                                 fix="save model.state_dict() with torch.save")
        if variant is None:
            raise ModelLoadError(
                f"{path} is a bare state_dict, which does not say which activation was used",
                expected="an activation spec for a state_dict",
                found=f"{len(obj)} tensors and no activation",
                fix="pass --activation relu, leaky, leaky:0.2 or prelu")
        return LoadedModel(linears_from_state(obj, variant, max_memory=max_memory).eval(), str(path),
                           "state_dict")
    keys = f" with keys {_keys(obj)}" if isinstance(obj, dict) else ""
    raise ModelLoadError(f"{path} holds no model probe recognises",
                         expected="a probe checkpoint, a state_dict, TorchScript or an nn.Module",
                         found=f"{article(type(obj).__name__)}{keys}",
                         fix="save model.state_dict() or the model itself with torch.save")


def save_checkpoint(mlp: MLP, path: str | Path, **meta: object) -> Path:
    """Write a probe checkpoint atomically (temporary file, then rename)."""
    buf = io.BytesIO()
    torch.save(to_checkpoint(mlp, **meta), buf)
    return atomic_write_bytes(path, buf.getvalue())
