"""The grid file of ``probe sweep``: a base scenario, variants, seeds, fixed overrides and a cartesian grid.

Example::

    base = "signed_regression"        # a shipped name, or a path relative to this file
    variants = ["relu", "leaky", "leaky:0.3"]
    seeds = 10                        # optional: the base scenario's train.seeds
    [set]                             # optional fixed overrides
    "train.epochs" = 10
    [grid]                            # the cartesian product of these
    "train.lr" = [1e-3, 3e-3, 1e-2]
    "model.hidden" = [[16, 16], [64, 64]]

Keys are dotted scenario keys (``data.noise``, ``model.hidden``, ``train.lr``,
...). Every cell is validated up front, before any cell runs: its scenario
document (the base file with the cell's values written in) goes through
:func:`probe.experiment.scenarios.parse_scenario` and
:meth:`~probe.experiment.scenarios.Scenario.check_run`, so a value the
scenario would refuse is refused with the key, the cell and the fix.
"""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import copy
import itertools
from dataclasses import dataclass
from pathlib import Path

from probe.compare.run import _parse_variants, check_device
from probe.core.errors import ProbeError, ScenarioError
from probe.core.limits import MAX_SCENARIO_FILE_BYTES
from probe.experiment.file_data import FILE_KEYS
from probe.experiment.scenario_checks import _OPTIONAL, _REQUIRED
from probe.experiment.scenarios import Scenario, load_scenario, parse_scenario

MAX_CELLS = 10_000
TOP_KEYS = ("base", "variants", "seeds", "set", "grid", "description")


class SweepError(ProbeError):
    """A grid file is missing, malformed, or asks for a cell the scenario would refuse."""


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its swept values and the scenario it runs.

    Attributes:
        index: Position in the grid (row-major over the ``[grid]`` keys, in file order).
        settings: ``{dotted key: value}`` of the swept keys.
        raw: The cell's full scenario document (base file, ``[set]``, the cell's values, seeds).
        scenario: ``raw`` validated.
    """

    index: int
    settings: dict
    raw: dict
    scenario: Scenario


@dataclass(frozen=True)
class SweepGrid:
    """A validated grid file; ``cells`` are in grid order."""

    path: str
    base: str
    variants: tuple[str, ...]
    seeds: int
    fixed: dict
    axes: dict  # dotted key -> list of values, in file order
    cells: tuple[Cell, ...]

    @property
    def keys(self) -> list[str]:
        """The swept keys, in file order."""
        return list(self.axes)

    def to_dict(self) -> dict:
        return {"path": self.path, "base": self.base, "variants": list(self.variants), "seeds": self.seeds,
                "set": dict(self.fixed), "grid": {k: list(v) for k, v in self.axes.items()},
                "cells": len(self.cells)}


def settings_text(settings: dict) -> str:
    """``train.lr=0.001, model.hidden=[16, 16]`` (``base`` for a grid with no swept key)."""
    return ", ".join(f"{k}={v!r}" for k, v in settings.items()) or "base"


def _read(path: Path) -> dict:
    try:
        data = path.read_bytes()[:MAX_SCENARIO_FILE_BYTES + 1]
    except OSError as exc:
        raise SweepError(f"Cannot read the grid file {path}", expected="a readable TOML file",
                         found=str(exc)[:200], fix="check the path") from None
    if len(data) > MAX_SCENARIO_FILE_BYTES:
        raise SweepError(f"The grid file {path} is too large", expected="a TOML file of at most 1 MiB",
                         found="more", fix="check that it is the grid file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SweepError(f"The grid file {path} is not valid TOML", expected="a UTF-8 TOML document",
                         found=str(exc)[:300] or type(exc).__name__, fix="fix the syntax at that line") from None


def _check_key(key: object, path: Path, table: str) -> tuple[str, str]:
    allowed = [f"{s}.{k}" for s in _REQUIRED for k in (*_REQUIRED[s], *_OPTIONAL[s]) if f"{s}.{k}" != "train.seeds"]
    allowed += [f"data.{k}" for k in FILE_KEYS if f"data.{k}" not in allowed]
    if key == "train.seeds":
        raise SweepError(f"The grid file {path} sets 'train.seeds' in [{table}]",
                         expected="the seeds as the top-level key seeds = N", found="train.seeds",
                         fix="write seeds = N at the top of the file (every cell trains seeds 0..N-1)")
    if not isinstance(key, str) or key not in allowed:
        raise SweepError(f"The grid file {path} has an unknown scenario key '{key}' in [{table}]",
                         expected="a dotted scenario key: " + ", ".join(allowed), found=repr(key),
                         fix="fix the spelling (keys are quoted: \"train.lr\" = ...)")
    section, name = key.split(".")
    return section, name


def _resolve_base(base: object, path: Path) -> tuple[str, Path]:
    """The base's display name and its scenario file (shipped, or relative to the grid file)."""
    if not isinstance(base, str) or not base.strip():
        raise SweepError(f"The grid file {path} has no base scenario", expected='base = "NAME" or base = '
                         '"path/to/scenario.toml"', found=repr(base), fix="add a base line at the top")
    local = path.parent / base
    target = str(local) if base.endswith(".toml") or local.is_file() else base
    sc = load_scenario(target)  # refuses unknown names and bad files with the scenario's own message
    return base, Path(sc.path)


def _values(axes: object, path: Path) -> dict:
    if not isinstance(axes, dict):
        raise SweepError(f"The grid file {path} has a malformed [grid]", expected="a table of key = [values]",
                         found=repr(axes)[:80], fix='write [grid] then e.g. "train.lr" = [1e-3, 1e-2]')
    for key, values in axes.items():
        _check_key(key, path, "grid")
        if not isinstance(values, list) or not values:
            raise SweepError(f"The grid file {path} gives '{key}' no list of values in [grid]",
                             expected="a non-empty list of values", found=repr(values)[:80],
                             fix=f'write "{key}" = [value1, value2] (a list of lists for model.hidden)')
        if len({repr(v) for v in values}) != len(values):
            raise SweepError(f"The grid file {path} lists a value of '{key}' twice", expected="distinct values",
                             found=repr(values)[:120], fix="drop the duplicate")
    return {k: list(v) for k, v in axes.items()}


def load_grid(path: str | Path, *, device: str = "cpu", max_memory: int | None = None) -> SweepGrid:
    """Read and validate a grid file, every cell included, before anything runs.

    Args:
        path: The grid TOML file.
        device: Where the cells will train (checked here).
        max_memory: Memory budget in bytes per cell (default 4 GiB).

    Raises:
        SweepError: A malformed grid file, an unknown key, too many cells.
        ScenarioError: A cell the scenario would refuse, naming the key and the cell's values.
        VariantError: Bad variants.
    """
    path = Path(path)
    doc = _read(path)
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise SweepError(f"The grid file {path} has an unknown key '{unknown[0]}'",
                         expected="only " + ", ".join(TOP_KEYS), found=repr(unknown[0]),
                         fix="scenario keys go under [set] or [grid] as quoted dotted keys")
    base, base_path = _resolve_base(doc.get("base"), path)
    specs = doc.get("variants")
    if not isinstance(specs, list) or not all(isinstance(v, str) for v in specs):
        raise SweepError(f"The grid file {path} has no list of variants", expected='variants = ["relu", "leaky", '
                         '...] (two or more activation specs)', found=repr(specs)[:120],
                         fix="add a variants line at the top")
    variants = _parse_variants(specs)
    check_device(device)
    with open(base_path, "rb") as fh:
        base_raw = tomllib.load(fh)
    data = base_raw.get("data")
    if isinstance(data, dict):  # a file scenario's paths, made absolute: cells parse it from anywhere
        for key in ("path", "eval_path", "target_path"):
            if isinstance(data.get(key), str):
                data[key] = str((base_path.parent / Path(data[key]).expanduser()).resolve())
    seeds = doc.get("seeds", base_raw.get("train", {}).get("seeds"))
    fixed = doc.get("set", {})
    if not isinstance(fixed, dict):
        raise SweepError(f"The grid file {path} has a malformed [set]", expected="a table of key = value",
                         found=repr(fixed)[:80], fix='write [set] then e.g. "train.epochs" = 10')
    for key in fixed:
        _check_key(key, path, "set")
    axes = _values(doc.get("grid", {}), path)
    both = sorted(set(fixed) & set(axes))
    if both:
        raise SweepError(f"The grid file {path} both sets and sweeps '{both[0]}'",
                         expected="each key in [set] or in [grid], not both", found=both[0],
                         fix="remove it from one of the two tables")
    total = 1
    for values in axes.values():
        total *= len(values)
    if total > MAX_CELLS:
        raise SweepError(f"The grid file {path} has too many cells", expected=f"at most {MAX_CELLS:,} cells "
                         "(the product of the [grid] list lengths)", found=f"{total:,}", fix="sweep fewer values")
    cells = []
    for index, combo in enumerate(itertools.product(*axes.values())):
        settings = dict(zip(axes, combo))
        raw = copy.deepcopy(base_raw)
        for key, value in {**fixed, **settings, "train.seeds": seeds}.items():
            section, name = key.split(".")
            raw.setdefault(section, {})[name] = copy.deepcopy(value)
        where = f"{base} (grid {path.name}, cell {settings_text(settings)})"
        try:
            sc = parse_scenario(raw, where, max_memory=max_memory)
            sc.check_run(len(variants), max_memory)
        except ScenarioError as exc:
            raise ScenarioError(exc.what, expected=exc.expected, found=exc.found,
                                fix=f"{exc.fix.rstrip('.')} in [set] or [grid] of {path}") from None
        cells.append(Cell(index, settings, raw, sc))
    return SweepGrid(str(path), base, tuple(v.spec for v in variants), cells[0].scenario.train.seeds,
                     dict(fixed), axes, tuple(cells))
