"""Input validation for notebook calls, in the style of scikit-learn's ``check_X_y``.

Every public entry point turns what the user hands it (a tensor, a numpy
array, a list, a :class:`~probe.core.data.Dataset` or a data file) into a
``Dataset`` of float32 tensors here, or raises a :class:`DataError` that says
what was expected, what arrived and the fix. float64 is converted; a 1-D ``y``
becomes one column. Integer (or bool) targets are class labels: they are kept
exactly (float32 holds every integer label a model can have) and the dataset
records ``labels=True``, from which the loss is inferred.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from probe.core.data import Dataset, is_integer_dtype, load_data
from probe.core.errors import DataError

ACCEPTED = "a torch tensor, a numpy array, a list of rows, a probe Dataset or a data file path"


def _as_float_tensor(name: str, value: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_complex():
            raise DataError(f"{name} is complex", expected="real numbers", found=f"dtype {t.dtype}",
                            fix=f"pass the real part ({name}.real) if that is what the model takes")
        if t.layout != torch.strided or t.device.type == "meta" or t.is_quantized:
            raise DataError(f"{name} is not a plain tensor", expected="a dense tensor with data",
                            found=f"layout {t.layout}, device {t.device}",
                            fix=f"pass {name}.to_dense().cpu() (or dequantize() it)")
        return t.to(device="cpu", dtype=torch.float32)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} cannot be read as an array", expected=ACCEPTED,
                        found=f"{type(value).__name__}: {exc}", fix="pass a 2-D numeric array") from None
    if arr.dtype.kind == "c":
        raise DataError(f"{name} is complex", expected="real numbers", found=f"dtype {arr.dtype}",
                        fix=f"pass the real part ({name}.real) if that is what the model takes")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name} is not numeric", expected=f"{ACCEPTED}, of numbers",
                        found=f"{type(value).__name__} of dtype {arr.dtype}",
                        fix="convert the columns to floats (drop text columns) first")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def as_dataset(X: object, y: object = None, *, source: str | None = None,
               target: str | None = None) -> Dataset:
    """``X`` (and ``y``) as a validated :class:`Dataset` of float32 tensors.

    Args:
        X: Inputs ``[samples, features]`` as a tensor, array or list; or a
            ``Dataset`` (then ``y`` must be None); or a path to a data file.
        y: Targets ``[samples]`` or ``[samples, outputs]``, or None; integer
            labels (numpy int arrays, torch long tensors) set ``labels``.
        source: A name for the data in results (default: the path, or ``array``).
        target: With a CSV path, the target column.

    Raises:
        DataError: Not numeric, complex, of the wrong rank, or X and y disagree on the sample count.
    """
    if isinstance(X, Dataset):
        if y is not None:
            raise DataError("Targets were given twice", expected="a Dataset alone, or X and y",
                            found="a Dataset and a separate y", fix="drop y, or pass X and y as arrays")
        return X
    if isinstance(X, (str, Path)):
        data = load_data(X, target)
        return data if y is None else as_dataset(data.X, y, source=data.source)
    if X is None:
        raise DataError("No inputs were given", expected=ACCEPTED, found="None", fix="pass X")
    xt = _as_float_tensor("X", X)
    if xt.dim() != 2:
        raise DataError("X has the wrong shape", expected="a 2-D array [samples, features]",
                        found=f"shape {tuple(xt.shape)}",
                        fix="reshape it: X.reshape(-1, 1) for one feature, X.reshape(len(X), -1) "
                            "to flatten each sample")
    yt, labels = None, False
    if y is not None:
        labels = is_integer_dtype(y) if isinstance(y, torch.Tensor) else _integer_array(y)
        yt = _as_float_tensor("y", y)
        if yt.dim() == 1:
            yt = yt[:, None]
        if yt.dim() != 2:
            raise DataError("y has the wrong shape", expected="[samples] or [samples, outputs]",
                            found=f"shape {tuple(yt.shape)}", fix="flatten each target into one row")
        if yt.shape[0] != xt.shape[0]:
            raise DataError("X and y have different numbers of samples", expected="one target row per input row",
                            found=f"{xt.shape[0]} rows in X, {yt.shape[0]} in y", fix="pass matching X and y")
    return Dataset(xt, yt, source or "array", labels)


def _integer_array(value: object) -> bool:
    try:
        return is_integer_dtype(np.asarray(value))
    except (TypeError, ValueError):
        return False  # _as_float_tensor says what is wrong


def check_fraction(name: str, value: object) -> float:
    """A finite number in [0, 1] (a share or a threshold on one); ``nan`` and ``-1`` are refused.

    Raises:
        ProbeError: Not a number in [0, 1].
    """
    from probe.core.errors import ProbeError

    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:  # False for NaN too
        raise ProbeError(f"{name} must be a fraction", expected="a number in [0, 1]", found=repr(value),
                         fix=f"pass {name} as a share, e.g. 0.01 for 1%")
    return number
