"""What a model file declares, read without running or materialising any of it.

``torch.save`` writes a zip archive (``<name>/data.pkl`` plus one record per
storage); ``torch.jit.save`` writes the same kind of archive with a ``code/``
folder and ``constants.pkl``; very old files are a plain sequence of pickles.
:func:`inspect_file` tells them apart from the entry names and the first bytes,
checks the sizes the file declares against the memory budget, and lists the
globals its pickles name, all before ``torch.load`` sees the file:

- TorchScript is recognised by name only (``torch.jit.load`` runs the code it
  carries while loading, so only a trusted file may reach it);
- a zip's entries are summed by their declared uncompressed size, so a small
  file of compressed records cannot inflate past the budget;
- a pickle may not name a constructor that allocates whatever size it is
  given (``bytearray``, quantized and device-tensor rebuilds), which
  ``torch.load(weights_only=True)`` would otherwise run;
- a pickle larger than ``MAX_PICKLE_BYTES`` is refused: reading it would take
  minutes, and no MLP needs one.
"""

from __future__ import annotations

import _compat_pickle
import pickletools
import zipfile
from pathlib import Path
from typing import IO

from probe.core.errors import ModelLoadError
from probe.core.limits import MAX_PICKLE_BYTES
from probe.models.guards import QUANTIZED_FIX, budget, clip
from probe.models.safetensors_file import looks_like_safetensors


TORCHSCRIPT, ZIP, LEGACY = "torchscript", "zip", "legacy"
SAFETENSORS, SKOPS, PICKLE = "safetensors", "skops", "pickle"

#: The number ``torch.save``'s legacy (pre-zip) format pickles first.
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
#: First bytes of the compressed files joblib writes (zlib, gzip, bz2, xz, lzma, lz4).
_COMPRESSED = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"\x1f\x8b", b"BZh", b"\xfd7zXZ",
               b"\x5d\x00\x00", b"\x04\x22\x4d\x18")

#: Rebuild functions ``torch.load(weights_only=True)`` allows that only make views or shapes.
_SAFE_REBUILDS = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                  "_rebuild_parameter_with_state", "_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage"}

_LEGACY_PICKLES = 5  # magic number, protocol, system info, the object, the storage keys


class _TooLarge(Exception):
    pass


class _Bounded:
    """A read-only view of a stream that refuses to read past ``limit`` bytes."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw, self.limit, self.used = raw, limit, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or self.used + n > self.limit:
            raise _TooLarge
        data = self.raw.read(n)
        self.used += len(data)
        return data

    def readline(self) -> bytes:
        data = self.raw.readline(self.limit - self.used + 1)
        self.used += len(data)
        if self.used > self.limit:
            raise _TooLarge
        return data

    def tell(self) -> int:
        return self.used


def corrupt(path: Path, detail: str) -> ModelLoadError:
    return ModelLoadError(
        f"Could not read the model file {path}",
        expected="a file written by torch.save or torch.jit.save",
        found=f"a truncated or corrupt file ({detail})",
        fix="re-save the model, or check that the copy was complete")


def _not_format(path: Path, fmt: str, found: str, fix: str) -> ModelLoadError:
    return ModelLoadError(f"Could not read the {fmt} file {path}",
                          expected=f"a {fmt} file, as its name says", found=found, fix=fix)


def _safetensors_problem(head: bytes, size: int) -> str:
    if len(head) < 9:
        return f"{size} bytes, too short for a safetensors header (8 bytes of length, then JSON)"
    length = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and length > size - 8:
        return (f"a truncated file: its header declares {length} bytes of JSON, but the file holds {size} bytes "
                "in all")
    return "no safetensors header (8 bytes of length, then JSON starting with '{')"


def torchscript_refused(path: Path) -> ModelLoadError:
    return ModelLoadError(
        f"Refusing to load {path}: it is a TorchScript archive, which carries code that runs "
        "when it is loaded (and probe would run its forward to check the conversion)",
        expected="a probe checkpoint, a state_dict or a pickled model of torch.nn classes; "
                 "TorchScript only with --trust",
        found="a TorchScript archive (a code/ folder and constants.pkl)",
        fix="pass --trust only for a file you trust, or re-save the model as a state_dict: "
            "torch.save(model.state_dict(), 'model_state.pt') and pass --activation "
            "(or save a probe checkpoint with probe.save_checkpoint)")


def _too_large_pickle(path: Path) -> ModelLoadError:
    return ModelLoadError(
        f"The pickled part of {path} is too large to read",
        expected=f"at most {MAX_PICKLE_BYTES // 2**20} MiB of pickled structure (MAX_PICKLE_BYTES in "
                 "probe.models.archive; tensor data is stored apart from it and does not count)",
        found="more than that",
        fix="save model.state_dict() with torch.save: its pickled part is a few kilobytes")


def is_torchscript(names: list[str]) -> bool:
    """Whether zip entry names are those of a TorchScript archive (names only: nothing is read)."""
    for name in names:
        parts = name.replace("\\", "/").split("/")
        if parts[-1] in ("constants.pkl", "bytecode.pkl") or "code" in parts[1:-1] or name.endswith(".py"):
            return True
    return False


def pickle_globals(raw: IO[bytes], path: Path) -> set[str]:
    """The ``module.name`` globals one pickle names, read opcode by opcode without running it.

    Names are mapped the way ``torch.load`` maps them (Python 2 names). A pickle
    that cannot be read to its end is refused as corrupt: what follows an
    unreadable opcode could be anything.
    """
    found: set[str] = set()
    try:
        for op, arg, _ in pickletools.genops(_Bounded(raw, MAX_PICKLE_BYTES)):
            # torch.load's weights-only reader names globals with GLOBAL only (no STACK_GLOBAL)
            if op.name in ("GLOBAL", "INST"):
                module, _, name = str(arg).partition(" ")
                if (module, name) in _compat_pickle.NAME_MAPPING:
                    module, name = _compat_pickle.NAME_MAPPING[(module, name)]
                elif module in _compat_pickle.IMPORT_MAPPING:
                    module = _compat_pickle.IMPORT_MAPPING[module]
                found.add(f"{module}.{name}")
    except _TooLarge:
        raise _too_large_pickle(path) from None
    except Exception as exc:
        raise corrupt(path, f"its pickled data is unreadable: {type(exc).__name__}: {clip(str(exc), 100)}") from None
    return found


def refuse_allocating_globals(found: set[str], path: Path) -> None:
    """Refuse a pickle that names a constructor allocating a size it is told, before it runs."""
    for name in sorted(found):
        if name == "builtins.bytearray":
            raise ModelLoadError(
                f"Refusing to load {path}: its pickled data builds a bytearray",
                expected="tensors and plain values (a probe checkpoint, a state_dict or torch.nn modules)",
                found="a bytearray constructor, which can declare any size without the file holding it",
                fix="re-save the model with torch.save(model.state_dict(), 'model_state.pt')")
        module, _, func = name.rpartition(".")
        if module == "torch._utils" and func.startswith("_rebuild_") and func not in _SAFE_REBUILDS:
            if func == "_rebuild_qtensor":
                what, fix = "a quantized tensor", QUANTIZED_FIX
            else:
                what = f"a tensor rebuilt by {func} (a device, nested or subclass tensor)"
                fix = ("re-save plain CPU tensors: torch.save({k: v.cpu() for k, v in "
                       "model.state_dict().items()}, 'model_state.pt')")
            raise ModelLoadError(f"{path} holds a tensor probe cannot analyse",
                                 expected="dense real floating-point tensors (float16/32/64, bfloat16)",
                                 found=what, fix=fix)


def _check_legacy(path: Path) -> None:
    """Check each pickle of a legacy (pre-zip) file in turn, the way torch.load reads them."""
    with open(path, "rb") as f:
        for _ in range(_LEGACY_PICKLES):
            refuse_allocating_globals(pickle_globals(f, path), path)


def _is_torch_legacy(path: Path) -> bool:
    """Whether the file's first pickle is torch's magic number (a pre-zip ``torch.save`` file)."""
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(_Bounded(f, 4096)):
                if op.name in ("PROTO", "FRAME"):
                    continue
                return op.name in ("LONG1", "LONG", "LONG4", "INT") and arg == _TORCH_MAGIC
    except Exception:
        return False
    return False


def _pickle_kind(path: Path, head: bytes) -> str:
    """``legacy`` for torch's pre-zip format, ``pickle`` for a joblib or plain pickle file."""
    if head[:1] == b"\x80" and not _is_torch_legacy(path):
        return PICKLE
    if head.startswith(_COMPRESSED):
        return PICKLE
    return LEGACY


def inspect_file(path: Path, *, max_memory: int | None, trust: bool) -> str:
    """``torchscript``, ``zip``, ``skops``, ``safetensors``, ``pickle`` or ``legacy``, after the checks
    that need no loading.

    ``pickle`` is a joblib or plain pickle file (not written by ``torch.save``):
    only named here, like TorchScript, since unpickling it runs code.

    Always: a zip's declared uncompressed size (a legacy file's size) against
    ``max_memory``. Without ``trust``: the globals named by every pickle in the
    file (see :func:`refuse_allocating_globals`). TorchScript is only named here;
    refusing or loading it is the caller's decision.

    Raises:
        ModelLoadError: Corrupt, over budget, or naming an allocating constructor.
    """
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"Could not read the model file {path}: it is an empty file (0 bytes)",
                             expected="a model file (torch.save, torch.jit.save, safetensors, skops, ...)",
                             found="an empty file (0 bytes)",
                             fix="re-save the model (a save interrupted before it wrote anything?), or check that "
                                 "the copy was complete")
    is_zip = head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors" and not is_zip and not looks_like_safetensors(head, size):
        raise _not_format(path, "safetensors", _safetensors_problem(head, size),
                          "re-save it with safetensors.torch.save_file, or check that the copy was complete")
    if suffix == ".skops" and not is_zip:
        raise _not_format(path, "skops", f"{size} bytes that are not a zip archive (a skops file is one)",
                          "re-save it with skops.io.dump, or check that the copy was complete")
    if is_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                budget(sum(i.file_size for i in infos), f"The model file {path}", max_memory)
                if "schema.json" in [i.filename for i in infos]:
                    return SKOPS
                if is_torchscript([i.filename for i in infos]):
                    return TORCHSCRIPT
                if not trust:
                    found: set[str] = set()
                    for info in infos:
                        if info.filename.endswith(".pkl"):
                            if info.file_size > MAX_PICKLE_BYTES:
                                raise _too_large_pickle(path)
                            with zf.open(info) as raw:
                                found |= pickle_globals(raw, path)
                    refuse_allocating_globals(found, path)
        except ModelLoadError:
            raise
        except Exception as exc:  # a zip that Python cannot read: torch would read it differently, if at all
            raise corrupt(path, f"not a readable zip archive: {type(exc).__name__}: {clip(str(exc), 100)}") from None
        return ZIP
    if looks_like_safetensors(head, path.stat().st_size):
        return SAFETENSORS  # its header is checked against the budget before loading
    budget(path.stat().st_size, f"The model file {path}", max_memory)
    kind = _pickle_kind(path, head)
    if kind == LEGACY and not trust:
        _check_legacy(path)
    if kind == PICKLE and not trust:  # refused by the caller; name an allocating constructor first
        try:
            with open(path, "rb") as f:
                found = pickle_globals(f, path)
        except ModelLoadError:  # joblib writes array bytes between its pickle opcodes
            return kind
        refuse_allocating_globals(found, path)
    return kind

