"""Load every supported model file into a canonical MLP, never running untrusted pickles.

Formats, tried in this order:

1. TorchScript (``torch.jit.save``): recognised by its archive layout.
2. probe's checkpoint: a dict with ``format == "probe-mlp/1"``.
3. A bare ``state_dict`` (needs an activation spec).
4. A pickled ``nn.Module`` made of ``torch.nn`` classes only (an allow-list);
   anything else needs ``trust=True``.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from probe.core.errors import ModelLoadError
from probe.models.convert import linears_from_state, module_to_mlp, script_to_mlp
from probe.core.io import atomic_write_bytes
from probe.models.mlp import CHECKPOINT_FORMAT, MLP, to_checkpoint
from probe.core.variants import Variant, parse_variant

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
                **{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float))}}


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.split("/", 1)[-1].startswith(("constants.pkl", "code/")) for n in zf.namelist())


def _corrupt(path: Path, exc: BaseException) -> ModelLoadError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "Weights only load failed" in text or not text:
        detail = "not a file that torch.load can read"
    else:
        detail = text if len(text) <= 160 else text[:157].rsplit(" ", 1)[0] + "..."
    return ModelLoadError(
        f"Could not read the model file {path}",
        expected="a file written by torch.save or torch.jit.save",
        found=f"a truncated or corrupt file ({type(exc).__name__}: {detail})",
        fix="re-save the model, or check that the copy was complete",
    )


def load_mlp(path: str | Path, activation: str | Variant | None = None, *,
             trust: bool = False) -> LoadedModel:
    """Load a model file into a canonical :class:`MLP`.

    Args:
        path: The model file.
        activation: Variant spec; required for a bare state_dict, overrides the
            activation of a TorchScript model with a functional activation.
        trust: Allow executing arbitrary pickled code (only for files you trust).

    Raises:
        ModelLoadError: Missing, corrupt, untrusted or non-MLP model.
    """
    path = Path(path)
    variant = parse_variant(activation) if isinstance(activation, str) else activation
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} does not exist",
                             expected="a path to a .pt/.pth file", found="nothing at that path",
                             fix="check the path (probe compare --save-dir writes probe checkpoints)")
    if _is_torchscript(path):
        try:
            script = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise _corrupt(path, exc) from None
        return LoadedModel(script_to_mlp(script, variant).eval(), str(path), "torchscript")
    obj = _torch_load(path, trust)
    return _from_object(obj, path, variant)


def _torch_load(path: Path, trust: bool) -> object:
    if trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except (ModuleNotFoundError, AttributeError) as exc:
            raise ModelLoadError(
                f"The model class pickled in {path} cannot be imported here",
                expected="the module that defines the model's class to be importable",
                found=f"{type(exc).__name__}: {exc}",
                fix="run with PYTHONPATH set to the folder of that module (e.g. PYTHONPATH=. probe ...), "
                    "or save model.state_dict() or torch.jit.script(model) instead") from None
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
            expected="a probe checkpoint, a state_dict, TorchScript, or a model of torch.nn classes",
            found="pickled references to " + ", ".join(unsafe[:5]),
            fix="pass --trust only if you trust where the file came from, or save "
                "model.state_dict() / torch.jit.script(model) instead",
        ) from None
    except Exception as exc:
        raise _corrupt(path, exc) from None


def _from_object(obj: object, path: Path, variant: Variant | None) -> LoadedModel:
    if isinstance(obj, nn.Module):
        return LoadedModel(module_to_mlp(obj).eval(), str(path), "pickled-module")
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        spec = obj.get("activation")
        if not isinstance(spec, str) or "state_dict" not in obj:
            raise ModelLoadError(f"The probe checkpoint {path} is incomplete",
                                 expected="keys 'state_dict' and 'activation'",
                                 found=f"keys {sorted(obj)}", fix="re-save it with probe")
        mlp = linears_from_state(obj["state_dict"], variant or parse_variant(spec))
        meta = {k: v for k, v in obj.items() if k not in ("state_dict", "format")}
        return LoadedModel(mlp.eval(), str(path), "probe-checkpoint", meta)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if variant is None:
            raise ModelLoadError(
                f"{path} is a bare state_dict, which does not say which activation was used",
                expected="an activation spec for a state_dict",
                found=f"{len(obj)} tensors and no activation",
                fix="pass --activation relu, leaky, leaky:0.2 or prelu")
        return LoadedModel(linears_from_state(obj, variant).eval(), str(path), "state_dict")
    raise ModelLoadError(f"{path} holds no model probe recognises",
                         expected="a probe checkpoint, a state_dict, TorchScript or an nn.Module",
                         found=f"a {type(obj).__name__}" + (f" with keys {sorted(obj)[:8]}" if isinstance(obj, dict) else ""),
                         fix="save model.state_dict() or the model itself with torch.save")


def save_checkpoint(mlp: MLP, path: str | Path, **meta: object) -> Path:
    """Write a probe checkpoint atomically (temporary file, then rename)."""
    buf = io.BytesIO()
    torch.save(to_checkpoint(mlp, **meta), buf)
    return atomic_write_bytes(path, buf.getvalue())
