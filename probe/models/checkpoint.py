"""probe's own checkpoint (``format == "probe-mlp/1"``): its metadata checked field by field.

A checkpoint without norms is read like any state_dict (:mod:`probe.models.state`);
one whose hidden layers have LayerNorm/RMSNorm records them under ``norms`` and
is rebuilt from that layout (:meth:`probe.models.mlp.MLP.from_state`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from probe.core.errors import ModelLoadError, ProbeError
from probe.core.variants import GRAMMAR, Variant, parse_variant
from probe.models.guards import check_tensors, check_widths, clip, short
from probe.models.mlp import MLP
from probe.models.state import read_state


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


def read_checkpoint(obj: dict, path: Path, variant: Variant | None, max_memory: int | None) -> tuple[MLP, dict]:
    """The MLP and the metadata of a probe checkpoint (``format == "probe-mlp/1"``)."""
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
                             f"'activation' to be a variant spec ({GRAMMAR})") from None
    state = obj["state_dict"]
    if not isinstance(state, dict):
        raise _malformed(path, f"'state_dict' is a {type(state).__name__} ({short(state, 60)})",
                         "'state_dict' to be a dict of parameter names (str) to tensors")
    if obj.get("norms") is not None:
        mlp = _with_norms(state, obj, meta, variant, path, max_memory)
    else:
        mlp = read_state(state, variant, max_memory=max_memory, names_trusted=True).mlp
    if "widths" in meta and meta["widths"] != mlp.widths:
        raise _malformed(path, f"recorded widths {short(meta['widths'], 60)} but weights of widths "
                               f"{short(mlp.widths, 60)}", "the recorded widths to match the weights")
    return mlp, meta


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


