"""Evaluation data from .npz, .npy, .csv or .pt files, validated against the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from probe.core.errors import DataError

FORMATS = ".npz (arrays X and optionally y), .npy (X only), .csv (numeric, --target names y) or .pt (dict with X, y)"


@dataclass(frozen=True)
class Dataset:
    """Inputs and optional targets as float32 tensors.

    Attributes:
        X: ``[samples, features]``.
        y: ``[samples, outputs]`` or None.
        source: Where the data came from (a path or a scenario name).
    """

    X: torch.Tensor
    y: torch.Tensor | None
    source: str

    def to_dict(self) -> dict:
        return {"source": self.source, "samples": int(self.X.shape[0]),
                "features": int(self.X.shape[1]), "targets": self.y is not None}


def _as_2d(name: str, arr: object, path: Path) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(arr, dtype=np.float32))
    except (TypeError, ValueError) as exc:
        raise DataError(f"Array {name} in {path} is not numeric", expected="numbers only",
                        found=str(exc), fix="convert the data to floats before saving") from None
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2:
        raise DataError(f"Array {name} in {path} has the wrong shape",
                        expected="a 2-D array [samples, features]", found=f"shape {tuple(t.shape)}",
                        fix="flatten each sample into one row")
    return t


def load_data(path: str | Path, target: str | None = None) -> Dataset:
    """Read a data file. See :data:`FORMATS`.

    Raises:
        DataError: Missing, unreadable or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist", expected=FORMATS,
                        found="nothing at that path", fix="check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                if "X" not in npz:
                    raise DataError(f"{path} has no array named X", expected="arrays X and optionally y",
                                    found=f"arrays {sorted(npz.files)}",
                                    fix="np.savez(path, X=inputs, y=targets)")
                X, y = npz["X"], npz["y"] if "y" in npz else None
        elif suffix == ".npy":
            X, y = np.load(path, allow_pickle=False), None
        elif suffix == ".csv":
            X, y = _read_csv(path, target)
        elif suffix == ".pt":
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or "X" not in obj:
                raise DataError(f"{path} is not a data dict", expected="a dict with tensors X and optionally y",
                                found=type(obj).__name__, fix="torch.save({'X': X, 'y': y}, path)")
            X, y = obj["X"], obj.get("y")
            X = X.numpy() if isinstance(X, torch.Tensor) else X
            y = y.numpy() if isinstance(y, torch.Tensor) else y
        else:
            raise DataError(f"Unknown data format '{suffix}' for {path}", expected=FORMATS,
                            found=suffix or "no extension", fix="save the data in one of those formats")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"Could not read the data file {path}", expected=FORMATS,
                        found=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                        fix="check that the file is complete and in that format") from None
    Xt = _as_2d("X", X, path)
    yt = None if y is None else _as_2d("y", y, path)
    if yt is not None and yt.shape[0] != Xt.shape[0]:
        raise DataError(f"X and y in {path} have different lengths", expected="one target row per sample",
                        found=f"{Xt.shape[0]} samples and {yt.shape[0]} targets", fix="align X and y")
    return Dataset(Xt, yt, str(path))


def _read_csv(path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    with open(path, encoding="utf-8") as fh:
        first = fh.readline().strip()
    cells = [c.strip() for c in first.split(",")]
    has_header = any(_not_number(c) for c in cells)
    arr = np.loadtxt(path, delimiter=",", skiprows=1 if has_header else 0, ndmin=2, dtype=np.float64)
    if target is None:
        return arr, None
    names = cells if has_header else [str(i) for i in range(len(cells))]
    if target not in names:
        raise DataError(f"Column '{target}' is not in {path}", expected="--target naming a column",
                        found=f"columns {names}", fix="pass one of those names (or a 0-based index without a header)")
    j = names.index(target)
    return np.delete(arr, j, axis=1), arr[:, j]


def _not_number(cell: str) -> bool:
    try:
        float(cell)
        return False
    except ValueError:
        return True


def check_data(data: Dataset, in_features: int, out_features: int) -> None:
    """Refuse data the model cannot take: wrong width, NaN or infinite values, no samples."""
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
    if y is not None and y.shape[1] != out_features:
        raise DataError(f"The targets from {data.source} have the wrong width",
                        expected=f"{out_features} target columns (the model's outputs)",
                        found=f"{y.shape[1]}", fix="pass matching targets, or none to use the sum of outputs")
