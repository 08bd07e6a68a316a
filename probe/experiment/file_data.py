"""Scenarios on the user's own data file: ``[data] path = "train.csv"``.

Keys under ``[data]`` (instead of ``generator``, ``n_samples`` and ``n_features``)::

    path = "houses.csv"        # .csv with header, .npz (X, y), .npy + target_path, or .pt
    target = "price"           # CSV: the target column, by name or 0-based index
    drop = ["id", "city"]      # CSV: columns left out (never parsed); or features = [...]
    target_path = "y.npy"      # with a .npy path: the targets
    eval_path = "test.csv"     # or eval_fraction = 0.2 (a seeded split, the default)
    standardize = true         # features (train statistics); "both": targets too; false: none
    task = "regression"        # inferred from the targets when absent
    seed = 0                   # the split's seed

Relative paths resolve against the scenario file's folder. The file is read
once per scenario (the training members share it) and checked against the
memory budget before it is parsed. A classification task (integer labels,
inferred or declared) keeps its labels as class indices (non-negative integers,
never standardised) and trains with cross-entropy over one logit per class.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from probe.core.data import Dataset, load_data
from probe.core.errors import DataError, ScenarioError
from probe.core.limits import MAX_DATA_SEED
from probe.experiment.scenario_checks import _bad, _check_int

FILE_KEYS = ("path", "target", "target_path", "features", "drop", "eval_path", "eval_fraction",
             "standardize", "task", "seed")
TASKS = ("regression", "classification")


@dataclass(frozen=True)
class FileSource:
    """Where a file scenario's data come from (paths resolved)."""

    path: str
    target: str | None = None
    target_path: str | None = None
    features: tuple[str, ...] | None = None
    drop: tuple[str, ...] = ()
    eval_path: str | None = None
    eval_fraction: float = 0.2
    standardize: bool | str = True
    task: str = "regression"

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}


def _names(key: str, value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(where, f"data.{key}", "a list of column names", value, f'write e.g. {key} = ["id"]')
    return tuple(value)


def _resolve(value: object, key: str, where: str, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(where, f"data.{key}", "a path to a data file", value, f'write e.g. {key} = "train.csv"')
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def parse_source(d: dict, where: str, base: Path) -> FileSource:
    """Validate the file keys of ``[data]`` (no file is read here)."""
    target = d.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (str, int))):
        raise _bad(where, "data.target", "a column name or a 0-based column index", target, 'write target = "y"')
    fraction = d.get("eval_fraction", 0.2)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise _bad(where, "data.eval_fraction", "a number strictly between 0 and 1", fraction,
                   "write e.g. eval_fraction = 0.2")
    if "eval_path" in d and "eval_fraction" in d:
        raise _bad(where, "data.eval_fraction", "either eval_path or eval_fraction", fraction,
                   "remove one of them")
    if "features" in d and "drop" in d:
        raise _bad(where, "data.drop", "either features or drop", d["drop"], "remove one of them")
    standardize = d.get("standardize", True)
    if standardize not in (True, False, "both"):
        raise _bad(where, "data.standardize", 'true, false or "both"', standardize, "write standardize = true")
    task = d.get("task")
    if task is not None and task not in TASKS:
        raise _bad(where, "data.task", "regression or classification", task, 'write task = "regression"')
    return FileSource(
        _resolve(d["path"], "path", where, base),
        None if target is None else str(target),
        _resolve(d["target_path"], "target_path", where, base) if "target_path" in d else None,
        _names("features", d["features"], where) if "features" in d else None,
        _names("drop", d["drop"], where) if "drop" in d else (),
        _resolve(d["eval_path"], "eval_path", where, base) if "eval_path" in d else None,
        float(fraction), standardize, task or "")


_LAST_READ: dict[tuple, Dataset] = {}  # one slot: the file a sweep's cells (and their workers) read again


def _stamp(path: str | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return None  # load_data gives the message
    return st.st_mtime_ns, st.st_size


def _read(path: str, source: FileSource, target_path: str | None, max_memory: int | None) -> Dataset:
    """The file's inputs and targets; the last read is reused while the files are unchanged.

    A sweep parses every cell's scenario up front and again where the cell runs:
    without the slot, each cell would read and parse the same CSV twice. The
    key holds the files' modification times and sizes, so an edited file is read again.
    """
    key = (path, source.target, target_path, source.drop, source.features, max_memory,
           _stamp(path), _stamp(target_path))
    if key in _LAST_READ and key[-2] is not None:
        kept = _LAST_READ[key]  # copies: whoever got the first read may have changed its tensors
        return Dataset(kept.X.clone(), kept.y.clone(), kept.source, kept.labels)
    data = _read_files(path, source, target_path, max_memory)
    _LAST_READ.clear()
    _LAST_READ[key] = Dataset(data.X.clone(), data.y.clone(), data.source, data.labels)
    return data


def _read_files(path: str, source: FileSource, target_path: str | None, max_memory: int | None) -> Dataset:
    target = source.target
    if target is not None and target.isdigit() and path.lower().endswith(".csv"):
        target = _column_name(path, int(target))
    data = load_data(path, target, max_memory=max_memory, drop=source.drop, features=source.features)
    if target_path is not None:
        targets = load_data(target_path, max_memory=max_memory)
        if targets.X.shape[0] != data.X.shape[0]:
            raise DataError(f"{target_path} has {targets.X.shape[0]} rows and {path} {data.X.shape[0]}",
                            expected="one target per sample", found="different lengths", fix="align the files")
        data = Dataset(data.X, targets.X, path)
    if data.y is None:
        raise DataError(f"{path} holds no targets", expected="a target column (target = ...), y in a .npz/.pt, "
                        "or target_path with a .npy", found="inputs only", fix="name the targets in [data]")
    return data


def _column_name(path: str, index: int) -> str:
    with open(path, encoding="utf-8-sig") as fh:
        header = next((line for line in fh if line.strip()), "")
    names = [c.strip().strip('"') for c in header.split(",")]
    if not 0 <= index < len(names):
        raise DataError(f"Column index {index} is not in {path}", expected=f"0 to {len(names) - 1}",
                        found=str(index), fix="pass a column name or a smaller index")
    return names[index] if not names[index].replace(".", "", 1).lstrip("-").isdigit() else str(index)


def infer_task(y: torch.Tensor) -> str:
    """``classification`` for one column of integer values with at most 20 classes, else ``regression``."""
    if y.shape[1] != 1 or not bool((y == y.round()).all()):
        return "regression"
    return "classification" if torch.unique(y).numel() <= 20 else "regression"


def _check_labels(y: torch.Tensor, path: str, where: str) -> None:
    """Class labels: one column of non-negative integers, at least two classes."""
    bad = (y != y.round()) | (y < 0)
    if y.shape[1] != 1 or bool(bad.any()):
        raise ScenarioError(f"Scenario {where}: the class labels in {path} are not class indices",
                            expected="one column of integer labels 0..K-1",
                            found=f"{y.shape[1]} target columns" if y.shape[1] != 1 else
                            f"{int(bad.sum())} labels that are negative or not integers, e.g. {float(y[bad][0]):g}",
                            fix='encode the classes as 0..K-1, or set task = "regression" in [data]')
    if torch.unique(y).numel() < 2:
        raise ScenarioError(f"Scenario {where}: the labels in {path} have a single class",
                            expected="at least two classes", found=f"only label {float(y[0, 0]):g}",
                            fix="check the target column")


def read_source(source: FileSource, seed: int, where: str, *,
                max_memory: int | None = None) -> tuple[Dataset, Dataset, str]:
    """``(train, eval, task)``: the file read, split (seeded) and standardised with the training statistics."""
    data = _read(source.path, source, source.target_path, max_memory)
    task = source.task or infer_task(data.y)
    if task == "classification":
        _check_labels(data.y, source.path, where)
    if source.eval_path is not None:
        train, evaluation = data, _read(source.eval_path, source, None, max_memory)
        if evaluation.X.shape[1] != train.X.shape[1]:
            raise DataError(f"{source.eval_path} has {evaluation.X.shape[1]} features and {source.path} "
                            f"{train.X.shape[1]}", expected="the same columns", found="different widths",
                            fix="use the same columns in both files")
        X_tr, y_tr, X_ev, y_ev = train.X, train.y, evaluation.X, evaluation.y
    else:
        n = data.X.shape[0]
        n_eval = max(1, round(n * source.eval_fraction))
        if n - n_eval < 2:
            raise DataError(f"{source.path} has {n} samples, too few to split", expected="at least 3 samples",
                            found=f"{n}", fix="add data or pass eval_path")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        X_tr, y_tr = data.X[order[n_eval:]], data.y[order[n_eval:]]
        X_ev, y_ev = data.X[order[:n_eval]], data.y[order[:n_eval]]
    if source.standardize:
        mean, std = X_tr.mean(0), X_tr.std(0).clamp_min(1e-8)
        X_tr, X_ev = (X_tr - mean) / std, (X_ev - mean) / std
    if source.standardize == "both" and task == "regression":
        mean, std = y_tr.mean(0), y_tr.std(0).clamp_min(1e-8)
        y_tr, y_ev = (y_tr - mean) / std, (y_ev - mean) / std
    label = f"file:{Path(source.path).name}"
    return (Dataset(X_tr.contiguous(), y_tr.contiguous(), label + ":train"),
            Dataset(X_ev.contiguous(), y_ev.contiguous(), label + ":eval"), task)


def load_file_data(d: dict, where: str, base: Path,
                   max_memory: int | None) -> tuple[FileSource, int, tuple[Dataset, Dataset]]:
    """``[data]`` of a file scenario: its source (task resolved), split seed and ``(train, eval)`` sets."""
    unknown = sorted(set(d) - set(FILE_KEYS))
    if unknown:
        raise ScenarioError(f"Scenario {where} has an unknown key 'data.{unknown[0]}'",
                            expected="with data.path only " + ", ".join(f"data.{k}" for k in FILE_KEYS),
                            found=f"'{unknown[0]}' in [data]",
                            fix="fix the spelling (generator, n_samples and n_features come from the file)")
    source = parse_source(d, where, base)
    seed = _check_int("data.seed", d.get("seed", 0), where, minimum=0, maximum=MAX_DATA_SEED)
    train, evaluation, task = read_source(source, seed, where, max_memory=max_memory)
    return replace(source, task=task), seed, (train, evaluation)
