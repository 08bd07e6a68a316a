"""Evaluation data from .npz, .npy, .csv or .pt files, validated against the model.

Hostile or broken files end in a :class:`~probe.core.errors.DataError`, never in
another exception, a silent change of the data, or an allocation the file only
declares:

* **Sizes are checked before anything is materialised**, against a memory budget
  (``max_memory``, default :data:`probe.core.limits.DEFAULT_MAX_MEMORY`): the
  shape and dtype in each ``.npy`` header (for ``.npz`` the header of each
  member, so a small compressed file cannot declare a huge array), the
  uncompressed sizes of every record of a ``.pt`` archive, the *declared* shape
  of each loaded tensor (a stride-0 view of a tiny storage counts at its full
  size, since probe makes it contiguous), and for ``.csv`` the file size and
  rows x columns. A value counts at its stored size plus 4 bytes for the float32
  copy probe makes (none when it is float32 already); a CSV cell counts 12 bytes
  (float64 parse and float32 copy).
* **Only real numbers**: bool, integer and floating dtypes. Complex data (never
  cast to real), object, string, structured and datetime dtypes, and sparse,
  quantized, nested and meta tensors are refused. Float64 values beyond the
  float32 range are refused rather than turned into infinities.
* ``.pt`` files are read with ``torch.load(weights_only=True)`` and must be in
  torch.save's zip format (the default since PyTorch 1.6): the old format
  allocates whatever size it declares before reading.
* **CSV**: UTF-8 (a byte-order mark is ignored), comma-separated, no quoting.
  Lines that are empty or only whitespace are skipped; every other line after
  the header is one sample, so the sample count always equals the data rows in
  the file. The first non-blank line is a header *if and only if* one of its
  cells is non-empty and not a number (``nan`` and ``inf`` are numbers); a
  first row of numbers (with or without empty cells) is data. An empty or
  non-numeric cell in a data row, a row of the wrong width, a header whose width
  differs from the rows, and duplicate (non-empty) header names are refused
  with the line and column named. ``nan`` cells are read and refused later by
  :func:`check_data`, like NaN in any other format.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from probe.core.errors import DataError
from probe.core.csv_data import _budget, _read_csv
from probe.core.losses import check_targets, choose_loss

FORMATS = ".npz (arrays X and optionally y), .npy (X only), .csv (numeric, --target names y) or .pt (dict with X, y)"

_REAL_KINDS = "biuf"  # numpy dtype kinds probe reads: bool, signed and unsigned integers, floats
_KIND_NAMES = {"c": "complex", "O": "Python objects", "U": "text", "S": "bytes", "V": "structured",
               "M": "datetime", "m": "timedelta"}


@dataclass(frozen=True)
class Dataset:
    """Inputs and optional targets as float32 tensors.

    Attributes:
        X: ``[samples, features]``.
        y: ``[samples, outputs]`` or None (class labels: ``[samples, 1]``, exact in float32).
        source: Where the data came from (a path or a scenario name).
        labels: The targets were integers (or bools) in their source: class labels,
            from which :func:`probe.core.losses.choose_loss` infers a classifier's loss.
    """

    X: torch.Tensor
    y: torch.Tensor | None
    source: str
    labels: bool = False

    def to_dict(self) -> dict:
        return {"source": self.source, "samples": int(self.X.shape[0]),
                "features": int(self.X.shape[1]), "targets": self.y is not None, "labels": self.labels}


def load_data(path: str | Path, target: str | None = None, *, max_memory: int | None = None,
              drop: tuple[str, ...] = (), features: tuple[str, ...] | None = None) -> Dataset:
    """Read a data file. See :data:`FORMATS` and the module docstring for what is refused.

    Args:
        path: A .npz, .npy, .csv or .pt file.
        target: The CSV column holding the target (a header name, or a 0-based
            index when the file has no header). Only for .csv files.
        drop, features: Input columns of a .csv file to leave out, or to use
            (by header name); the others are never parsed.
        max_memory: Bytes X and y may declare together (see the module
            docstring for how they are counted); None for the default,
            :data:`probe.core.limits.DEFAULT_MAX_MEMORY`.

    Raises:
        DataError: Missing, unreadable, malformed, non-real or too large file.
    """
    path = Path(path)
    if max_memory is not None and (isinstance(max_memory, bool) or not isinstance(max_memory, int)
                                   or max_memory <= 0):
        raise DataError("The memory limit for loading data is not a positive number of bytes",
                        expected="max_memory a positive int (bytes) or None for the default",
                        found=repr(max_memory), fix="pass e.g. max_memory=8 * 2**30")
    try:
        exists = path.is_file()
    except OSError as exc:  # a name too long for the file system, a permission problem
        raise DataError(f"Cannot look at the data file {path}", expected=FORMATS, found=str(exc),
                        fix="check the path") from None
    if not exists:
        raise DataError(f"Data file {path} does not exist", expected=FORMATS,
                        found="nothing at that path (or not a regular file)", fix="check the path")
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".npy", ".csv", ".pt"):
        raise DataError(f"Unknown data format '{suffix}' for {path}", expected=FORMATS,
                        found=suffix or "no extension", fix="save the data in one of those formats")
    if (drop or features is not None) and suffix != ".csv":
        raise DataError(f"Column selection (drop / features) only applies to .csv files, and {path} is a "
                        f"{suffix} file", expected="no drop / features (X is one array in this format)",
                        found=f"drop {list(drop)}, features {features}", fix="select the columns before saving X")
    if target is not None and suffix != ".csv":
        raise DataError(f"--target only applies to .csv files, and {path} is a {suffix} file",
                        expected="no --target (X and y are named arrays in this format)",
                        found=f"--target {target}", fix="drop --target, or store the targets as y")
    try:
        if suffix == ".npz":
            X, y = _read_npz(path, max_memory)
        elif suffix == ".npy":
            X, y = _read_npy(path, max_memory), None
        elif suffix == ".csv":
            X, y = _read_csv(path, target, max_memory, drop=tuple(drop), features=features)
        else:
            X, y = _read_pt(path, max_memory)
        Xt = _as_2d("X", X, path)
        yt = None if y is None else _as_2d("y", y, path)
        labels = y is not None and is_integer_dtype(y)
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"Ran out of memory reading {path}", expected="data that fit in memory",
                        found="a MemoryError", fix="pass a smaller evaluation set") from None
    except Exception as exc:  # every parser failure: truncated files, bad zips, bad pickles, deep nesting
        raise DataError(f"Could not read the data file {path}", expected=FORMATS,
                        found=f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}",
                        fix="check that the file is complete and in that format") from None
    if yt is not None and yt.shape[0] != Xt.shape[0]:
        raise DataError(f"X and y in {path} have different lengths", expected="one target row per sample",
                        found=f"{Xt.shape[0]} samples and {yt.shape[0]} targets", fix="align X and y")
    return Dataset(Xt, yt, str(path), labels)


# ---------------------------------------------------------------- budget and dtypes
def _declared(numel: int, itemsize: int, is_float32: bool) -> int:
    """Bytes an array of ``numel`` values costs: as stored, plus the float32 copy unless it is one."""
    return numel * (itemsize + (0 if is_float32 else 4))


def _check_numpy_dtype(name: str, dtype: np.dtype, path: Path) -> None:
    if dtype.kind in _REAL_KINDS and dtype.fields is None and dtype.subdtype is None:
        return
    kind = _KIND_NAMES.get(dtype.kind, dtype.kind)
    if dtype.kind == "c":
        raise DataError(f"Array {name} in {path} holds complex numbers", expected="real numbers",
                        found=f"dtype {dtype}", fix="pass the real part, the magnitude or both as separate "
                        "features (probe never drops an imaginary part silently)")
    raise DataError(f"Array {name} in {path} is not numeric", expected="a bool, integer or float array",
                    found=f"dtype {dtype} ({kind})", fix="convert the data to floats before saving")


# ---------------------------------------------------------------- .npy and .npz
def _npy_header(fp: IO[bytes], name: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header, read without touching the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
    except ValueError:
        raise DataError(f"Array {name} in {path} is not a NumPy array", expected="a .npy array (np.save, np.savez)",
                        found="other bytes", fix="save the data with np.save or np.savez") from None
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(fp)
    else:  # 3.0 only exists for structured dtypes with non-ASCII field names, which probe refuses anyway
        raise DataError(f"Array {name} in {path} uses .npy format version {version[0]}.{version[1]}",
                        expected="a plain numeric array (.npy format 1.0 or 2.0)", found=f"format {version}",
                        fix="save a plain float array with np.save")
    if any(d < 0 for d in shape):
        raise DataError(f"Array {name} in {path} has a negative dimension", expected="a valid array header",
                        found=f"shape {shape}", fix="save the array again")
    _check_numpy_dtype(name, dtype, path)
    return tuple(shape), dtype


def _read_npy(path: Path, max_memory: int | None) -> np.ndarray:
    with open(path, "rb") as fh:
        shape, dtype = _npy_header(fh, "X", path)
    _budget(_declared(math.prod(shape), dtype.itemsize, dtype == np.float32),
            f"Array X in {path} (shape {shape}, {dtype})", max_memory)
    return np.load(path, allow_pickle=False)


def _read_npz(path: Path, max_memory: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    if not zipfile.is_zipfile(path):
        raise DataError(f"Could not read {path} as a .npz archive", expected="a zip of .npy arrays (np.savez)",
                        found="no zip directory", fix="save the data with np.savez(path, X=inputs, y=targets)")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DataError(f"{path} holds several members with the same name", expected="each array once",
                            found="repeated " + ", ".join(repeated), fix="save the data again with np.savez")
        members: dict[str, str] = {}
        for key in ("X", "y"):
            found = [n for n in (key + ".npy", key) if n in names]
            if len(found) > 1:
                raise DataError(f"{path} holds two arrays named {key}", expected=f"one member {key}.npy",
                                found=" and ".join(found), fix="save the data again with np.savez")
            if found:
                members[key] = found[0]
        if "X" not in members:
            arrays = sorted(n[:-4] if n.endswith(".npy") else n for n in names)
            raise DataError(f"{path} has no array named X", expected="arrays X and optionally y",
                            found=f"arrays {arrays}", fix="np.savez(path, X=inputs, y=targets)")
        total, shapes = 0, []
        for key, member in members.items():
            with zf.open(member) as fh:
                shape, dtype = _npy_header(fh, key, path)
            total += _declared(math.prod(shape), dtype.itemsize, dtype == np.float32)
            shapes.append(f"{key} {shape} {dtype}")
        _budget(total, f"The data in {path} ({', '.join(shapes)})", max_memory)
        out = {}
        for key, member in members.items():
            with zf.open(member) as fh:
                out[key] = np.lib.format.read_array(fh, allow_pickle=False)
    return out["X"], out.get("y")


# ---------------------------------------------------------------- .pt
def _read_pt(path: Path, max_memory: int | None) -> tuple[object, object]:
    if not zipfile.is_zipfile(path):
        raise DataError(f"Could not read {path}: it is not in torch.save's zip format",
                        expected="a file written by torch.save (zip format, the default since PyTorch 1.6)",
                        found="another format (the legacy torch format, or not a torch file)",
                        fix="load it with a trusted PyTorch and save it again: torch.save({'X': X, 'y': y}, path)")
    with zipfile.ZipFile(path) as zf:  # torch allocates each record at its (uncompressed) size
        stored = sum(info.file_size for info in zf.infolist())
    _budget(stored, f"The data stored in {path} (all records, uncompressed)", max_memory)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or "X" not in obj:
        raise DataError(f"{path} is not a data dict", expected="a dict with tensors X and optionally y",
                        found=type(obj).__name__ if not isinstance(obj, dict) else f"keys {sorted(map(str, obj))}",
                        fix="torch.save({'X': X, 'y': y}, path)")
    X, y = obj["X"], obj.get("y")
    total, shapes = 0, []
    for name, t in (("X", X), ("y", y)):
        if isinstance(t, torch.Tensor):
            _check_tensor(name, t, path)
            total += _declared(t.numel(), t.element_size(), t.dtype == torch.float32)
            shapes.append(f"{name} {tuple(t.shape)} {t.dtype}")
    _budget(total, f"The data in {path} ({', '.join(shapes)}, counted at their declared shapes)", max_memory)
    return X, y


def _check_tensor(name: str, t: torch.Tensor, path: Path) -> None:
    """Refuse tensors that are not plain dense real numbers on the CPU."""
    problem = None
    if t.is_meta or t.device.type == "meta":
        problem = ("a meta tensor (a shape without values)", "save the tensor itself, not a meta placeholder")
    elif t.layout != torch.strided:
        problem = (f"a sparse tensor ({t.layout})", "save X.to_dense() (if it fits in memory)")
    elif t.is_nested:
        problem = ("a nested tensor (rows of different lengths)", "pad the rows to one width and save a plain tensor")
    elif t.is_quantized:
        problem = (f"a quantized tensor ({t.dtype})", "save X.dequantize()")
    elif t.is_complex():
        problem = (f"complex numbers ({t.dtype})", "pass the real part, the magnitude or both as separate "
                   "features (probe never drops an imaginary part silently)")
    elif not (t.dtype.is_floating_point or t.dtype == torch.bool or _is_integer(t.dtype)):
        problem = (f"dtype {t.dtype}", "save a float tensor")
    if problem is not None:
        raise DataError(f"Tensor {name} in {path} is not plain real data", expected="a dense tensor of real numbers",
                        found=problem[0], fix=problem[1])


def is_integer_dtype(values: object) -> bool:
    """Whether a tensor or array holds integers or bools (class labels), not floats."""
    if isinstance(values, torch.Tensor):
        return not values.dtype.is_floating_point and not values.is_complex()
    return np.asarray(values).dtype.kind in "biu"


def _is_integer(dtype: torch.dtype) -> bool:
    try:
        return not dtype.is_floating_point and not dtype.is_complex and torch.iinfo(dtype) is not None
    except TypeError:
        return False


# ---------------------------------------------------------------- conversion
def _as_2d(name: str, arr: object, path: Path) -> torch.Tensor:
    """``arr`` as a contiguous float32 ``[samples, columns]`` tensor (1-D becomes one column)."""
    if isinstance(arr, torch.Tensor):
        _check_tensor(name, arr, path)
        src = arr.detach()
    else:
        try:
            src = np.asarray(arr)
        except (TypeError, ValueError) as exc:  # ragged nested lists
            raise DataError(f"Array {name} in {path} is not numeric", expected="a rectangular array of numbers",
                            found=str(exc).splitlines()[0][:200], fix="convert the data to floats before saving") from None
        _check_numpy_dtype(name, src.dtype, path)
    if src.ndim not in (1, 2):
        raise DataError(f"Array {name} in {path} has the wrong shape",
                        expected="a 2-D array [samples, features] (or 1-D, one value per sample)",
                        found=f"shape {tuple(src.shape)}", fix="flatten each sample into one row")
    if isinstance(src, torch.Tensor):
        t = src.to(torch.float32)
        wide = src.dtype == torch.float64
    else:
        with np.errstate(over="ignore"):  # overflow is reported below
            t = torch.from_numpy(np.ascontiguousarray(src, dtype=np.float32))
        wide = src.dtype.kind == "f" and src.dtype.itemsize > 4
    if t.dim() == 1:
        t = t[:, None]
    if wide:  # float64 values past float32's range would turn into silent infinities
        inf = torch.isinf(t).reshape(src.shape)
        if bool(inf.any()):
            finite_src = torch.isfinite(src[inf]) if isinstance(src, torch.Tensor) \
                else torch.from_numpy(np.isfinite(src[inf.numpy()]))
            if bool(finite_src.any()):
                raise DataError(f"Array {name} in {path} holds values too large for float32",
                                expected=f"magnitudes below {float(np.finfo(np.float32).max):.3g}",
                                found=f"{int(finite_src.sum())} finite values beyond that",
                                fix="rescale the data (probe computes in float32)")
    return t.contiguous()


# ---------------------------------------------------------------- .csv
def check_data(data: Dataset, in_features: int, out_features: int, loss: str | None = None) -> None:
    """Refuse data the model cannot take: wrong width, NaN or infinite values, no samples.

    The targets are checked against ``loss`` (inferred from the data when None,
    :func:`probe.core.losses.choose_loss`): class labels in ``0..K-1`` for
    ``cross_entropy``, else one target column per output.
    """

    X, y = data.X, data.y
    if X.shape[0] == 0:
        raise DataError(f"The data from {data.source} has no samples", expected="at least one row",
                        found="an empty array", fix="pass the evaluation data")
    if X.shape[1] != in_features:
        raise DataError(f"The data from {data.source} has the wrong width for this model",
                        expected=f"{in_features} input features (the model's first Linear layer)",
                        found=f"{X.shape[1]} columns", fix="pass the data the model was trained on "
                        "(with .csv, name the target column with --target so it is not read as a feature)")
    for name, t in (("X", X), ("y", y)):
        if t is not None and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).any(dim=1).sum())
            raise DataError(f"The data from {data.source} contains NaN or infinite values",
                            expected=f"finite numbers in {name}", found=f"{bad} rows with NaN/inf",
                            fix="drop or impute those rows")
    if y is not None:
        name = loss if loss not in (None, "sum") else choose_loss(None, y, data.labels, out_features)[0]
        check_targets(name, y, out_features, str(data.source))
