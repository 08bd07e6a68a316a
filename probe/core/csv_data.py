"""CSV evaluation data: the rules for headers, blank lines and cells (see :mod:`probe.core.data`).

Every data row becomes one sample, so the sample count always equals the data
rows in the file; anything probe cannot read as a number is refused with its
line and column, never skipped.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from probe.core.errors import DataError, ProbeError
from probe.core.limits import check_bytes


def _budget(nbytes: int, what: str, max_memory: int | None) -> None:
    """:func:`check_bytes`, as a DataError."""
    try:
        check_bytes(nbytes, what, max_memory)
    except ProbeError as exc:
        raise DataError(exc.what, expected=exc.expected, found=exc.found, fix=exc.fix) from None



def _is_number(cell: str) -> bool:
    """What np.loadtxt reads as a float (Python's float() also takes '1_000', loadtxt does not)."""
    if not cell or "_" in cell:
        return False
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _data_lines(fh: IO[str], skip: int) -> Iterator[str]:
    """The non-blank lines after the first ``skip`` lines: one per sample."""
    for i, line in enumerate(fh):
        if i >= skip and line.strip():
            yield line


def _read_csv(path: Path, target: str | None, max_memory: int | None, *, drop: tuple[str, ...] = (),
              features: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(X, y)`` from a CSV; ``drop`` or ``features`` pick the input columns by name.

    Dropped and unselected columns are never parsed, so an ID or a categorical
    column can stay in the file.
    """
    _budget(path.stat().st_size, f"The CSV file {path}", max_memory)
    first, first_no, rows = None, 0, 0
    try:
        with open(path, encoding="utf-8-sig") as fh:  # -sig: a byte-order mark is not part of the first cell
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                if first is None:
                    first, first_no = line, lineno
                rows += 1
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text", expected="a UTF-8 CSV file", found=str(exc),
                        fix="save the CSV as UTF-8") from None
    if first is None:
        raise DataError(f"The CSV file {path} is empty", expected="rows of comma-separated numbers",
                        found="no lines with content", fix="pass the evaluation data")
    cells = [c.strip() for c in first.split(",")]
    has_header = any(c and not _is_number(c) for c in cells)
    ncols = len(cells)
    if has_header:
        rows -= 1
        names = [c[1:-1].strip() if len(c) >= 2 and c[0] == c[-1] == '"' else c for c in cells]
        repeated = sorted({n for n in names if n and names.count(n) > 1})
        if repeated:
            where = "; ".join(f"'{n}' in columns " + ", ".join(str(j + 1) for j, m in enumerate(names) if m == n)
                              for n in repeated)
            raise DataError(f"The CSV header of {path} names a column more than once",
                            expected="distinct column names", found=where,
                            fix="rename the columns so each name is used once")
    else:
        names = [str(j) for j in range(ncols)]
    if target is not None and target not in names:
        raise DataError(f"Column '{target}' is not in {path}", expected="--target naming a column",
                        found=f"columns {names}", fix="pass one of those names (or a 0-based index without a header)")
    keep = _selected(path, names, target, drop, features)
    _budget(rows * len(keep) * 12, f"The CSV data in {path} ({rows} rows x {len(keep)} columns)", max_memory)
    skip = first_no if has_header else 0
    if rows == 0:
        arr = np.empty((0, len(keep)))
    else:
        try:
            with open(path, encoding="utf-8-sig") as fh, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = np.loadtxt(_data_lines(fh, skip), delimiter=",", ndmin=2, dtype=np.float64, comments=None,
                                 usecols=None if len(keep) == ncols else keep)
        except ValueError as exc:
            raise _csv_problem(path, skip, ncols if has_header else None, names, exc, keep) from None
    if has_header and len(keep) == ncols and arr.shape[1] != ncols:
        raise DataError(f"The CSV header of {path} does not match its rows",
                        expected=f"{ncols} cells per row, like the header (line {first_no})",
                        found=f"{arr.shape[1]} cells per row", fix="fix the header or the rows so they align")
    if arr.shape[0] != rows:  # cannot happen: every non-blank line is parsed as one row
        raise DataError(f"Read {arr.shape[0]} rows from {path} but it has {rows} data lines",
                        expected="one sample per line", found=f"{arr.shape[0]} samples",
                        fix="check the file for stray quotes or line breaks")
    if target is None:
        return arr, None
    column = names.index(target)
    j = keep.index(column)  # its place among the parsed columns
    y = arr[:, j]
    if _integer_column(path, skip, column, y):
        y = y.astype(np.int64)  # class labels: read back as such by the loss inference
    return np.delete(arr, j, axis=1), y


def _integer_column(path: Path, skip: int, j: int, values: np.ndarray) -> bool:
    """Whether column ``j`` is written as integers ("3", not "3.0"): class labels, not float targets.

    The text is read again only when every value is a whole number below 2**53.
    """
    if values.size == 0 or not bool(np.all((values == np.round(values)) & (np.abs(values) < 2.0 ** 53))):
        return False
    with open(path, encoding="utf-8-sig") as fh:
        for line in _data_lines(fh, skip):
            cell = line.split(",")[j].strip()
            if not cell.lstrip("+-").isdigit():
                return False
    return True


def _selected(path: Path, names: list[str], target: str | None, drop: tuple[str, ...],
              features: tuple[str, ...] | None) -> list[int]:
    """Indices of the columns to parse: the features (all but ``drop``, or exactly ``features``) and the target."""
    for what, listed in (("drop", drop), ("features", features or ())):
        unknown = [c for c in listed if c not in names]
        if unknown:
            raise DataError(f"The {what} column '{unknown[0]}' is not in {path}",
                            expected=f"{what} naming columns of the file", found=f"columns {names}",
                            fix=f"use the names of the header in '{what}'")
    if target is not None and (target in drop or features is not None and target in features):
        raise DataError(f"The target column '{target}' is also listed as a feature or dropped",
                        expected="the target apart from the features", found=f"target {target}",
                        fix="remove it from 'features' / 'drop'")
    if features is not None:
        chosen = {names.index(c) for c in features}
    else:
        chosen = {j for j, n in enumerate(names) if n not in drop}
    if target is not None:
        chosen.add(names.index(target))
    if len(chosen) - (target is not None) < 1:
        raise DataError(f"No feature column is left in {path}", expected="at least one input column",
                        found=f"columns {names}, dropping {list(drop)}", fix="drop fewer columns")
    return sorted(chosen)


def _csv_problem(path: Path, skip: int, width: int | None, names: list[str], exc: Exception,
                 keep: list[int] | None = None) -> DataError:
    """The first bad line of a CSV that np.loadtxt refused, named by line and column.

    Only the parsed columns (``keep``) are checked: a dropped column may hold text.
    """
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if lineno <= skip or not line.strip():
                continue
            cells = [c.strip() for c in line.split(",")]
            if width is None:
                width = len(cells)
            if len(cells) != width:
                return DataError(f"Line {lineno} of {path} has {len(cells)} cell{'s' if len(cells) != 1 else ''}", expected=f"{width} cells "
                                 "per row, like the first row", found=_clip(line),
                                 fix="give every row the same columns")
            for j, cell in enumerate(cells):
                if _is_number(cell) or keep is not None and j not in keep:
                    continue
                col = f"column {j + 1}" + (f" ('{names[j]}')" if j < len(names) and not names[j].isdigit() else "")
                if not cell:
                    return DataError(f"Line {lineno} of {path} has an empty cell in {col}",
                                     expected="a number in every cell of a data row", found=_clip(line),
                                     fix="fill the cell, or delete the row (write nan to mark a missing "
                                         "value; probe then refuses the row by name)")
                return DataError(f"Line {lineno} of {path} has a cell that is not a number in {col}",
                                 expected="a number in every cell of a data row (a header only on the first line)",
                                 found=repr(cell[:80]),
                                 fix="fix or delete that row; a text column (an ID, a category) can be left out "
                                     "with drop = [...] in a scenario's [data] (probe compare --drop)")
    return DataError(f"Could not read the CSV file {path}", expected="rows of comma-separated numbers",
                     found=str(exc).splitlines()[0][:200], fix="check the file's format")


def _clip(line: str, n: int = 120) -> str:
    line = line.rstrip("\r\n")
    return repr(line if len(line) <= n else line[:n] + "...")
