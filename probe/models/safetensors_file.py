"""``.safetensors`` files: a JSON header and raw tensor bytes, safe by design (no code, no pickle).

The header (an 8-byte little-endian length, then that many bytes of JSON
naming each tensor's dtype, shape and byte range) is read and checked here
before the ``safetensors`` package loads anything: the declared sizes against
the memory budget, the dtypes against what probe analyses, the byte ranges
against the file.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch

from probe.core.errors import ModelLoadError
from probe.models.guards import budget, clip, short

#: Bytes per element of the dtypes probe analyses (floating point); others are refused.
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
#: The largest header probe reads (the safetensors package's own limit).
MAX_HEADER_BYTES = 100_000_000


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether a file's first 9 bytes (and its size) fit the safetensors layout."""
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{"


def _bad(path: Path, found: str) -> ModelLoadError:
    return ModelLoadError(f"The safetensors file {path} is malformed",
                          expected="a header naming each tensor's dtype, shape and data_offsets within the file",
                          found=found, fix="re-save it with safetensors.torch.save_file")


def read_header(path: Path) -> dict[str, dict]:
    """The tensor entries of the file's header (``__metadata__`` left out), checked against the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > min(size - 8, MAX_HEADER_BYTES):
            raise _bad(path, f"a header of {length} bytes in a file of {size}")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(path, f"a header that is not JSON ({clip(str(exc), 80)})") from None
    if not isinstance(header, dict):
        raise _bad(path, f"a header that is {type(header).__name__}, not a JSON object")
    data = size - 8 - length
    entries = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape) \
                or not isinstance(offsets, list) or len(offsets) != 2 \
                or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1] <= data:
            raise _bad(path, f"the entry {short(name, 60)} = {short(entry, 120)}")
        entries[name] = entry
    return entries


def check_header(path: Path, max_memory: int | None) -> None:
    """Refuse dtypes probe cannot analyse and more declared float32 bytes than ``max_memory``."""
    total = 0
    for name, entry in read_header(path).items():
        dtype = entry.get("dtype")
        if dtype not in FLOAT_DTYPES:
            raise ModelLoadError(f"{path} holds a tensor probe cannot analyse",
                                 expected="floating-point tensors (F16, BF16, F32, F64)",
                                 found=f"{short(name, 60)} of dtype {short(dtype, 20)}",
                                 fix="save only the model's float weights (its state_dict)")
        total += math.prod(entry["shape"]) * max(FLOAT_DTYPES[dtype], 4)
    budget(total, f"The model file {path} (its tensors at their declared shapes)", max_memory)


def load_safetensors(path: Path, max_memory: int | None) -> dict[str, torch.Tensor]:
    """The file's tensors by name, after :func:`check_header`.

    Raises:
        ModelLoadError: Malformed, over budget, a non-float tensor, or unreadable.
    """
    check_header(path, max_memory)
    try:
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover - a dependency of probe
        raise ModelLoadError("Reading .safetensors files needs the safetensors package",
                             expected="safetensors installed", found="no module named safetensors",
                             fix="pip install safetensors") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise _bad(path, f"{type(exc).__name__}: {clip(str(exc), 160)}") from None
