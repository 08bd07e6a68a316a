"""What a sweep's report shows, computed here: value grids over two swept keys, and each variant's best cell.

The report layer only draws these. A value grid (:class:`HeatTable`) is taken
over two swept keys; when the grid sweeps more keys, each square is the
median over the settings of the other keys (``reduced_over`` names them and
``counts`` says how many cells each median has). Failed cells and missing
values are left out of the medians.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from probe.core.errors import ProbeError
from probe.sweep.grid import SweepGrid, settings_text
from probe.sweep.run import CellResult, SweepResult


@dataclass(frozen=True)
class HeatTable:
    """``values[i, j]`` at ``y_values[i]`` and ``x_values[j]`` (NaN where no cell has a value)."""

    x_key: str | None
    x_values: tuple
    y_key: str | None
    y_values: tuple
    values: np.ndarray
    counts: np.ndarray
    reduced_over: tuple[str, ...]
    per_square: int = 1  # cells of the grid behind each square (settings of the other keys)


@dataclass(frozen=True)
class BestSetting:
    """A variant's cell of lowest median final training loss, with 95% bootstrap intervals."""

    variant: str
    settings: str
    final_loss: tuple  # (median, low, high)
    steps: tuple  # (median, low, high), never-reached counted as budget + 1
    reached: str  # "k/n" runs that reached the target


def check_axes(grid: SweepGrid, axes: str | None) -> tuple[str, ...]:
    """The two keys the heatmaps span: ``--axes k1,k2`` (x, y), else the first two swept keys.

    Raises:
        ProbeError: A key that is not swept, or the same key twice.
    """
    if axes is None:
        return tuple(grid.keys[:2])
    keys = tuple(k.strip() for k in axes.split(",") if k.strip())
    bad = [k for k in keys if k not in grid.keys]
    if bad or len(keys) not in (1, 2) or len(set(keys)) != len(keys):
        raise ProbeError("--axes must name one or two distinct swept keys",
                         expected="keys of [grid]: " + (", ".join(grid.keys) or "none (nothing is swept)"),
                         found=repr(axes), fix=f"e.g. --axes {','.join(grid.keys[:2]) or 'train.lr'}")
    return keys


def _label(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def comparison_of(record: dict, a: str, b: str) -> dict | None:
    return next((c for c in record.get("comparisons", []) if c["a"] == a and c["b"] == b), None)


def summary_of(record: dict, variant: str) -> dict | None:
    return next((s for s in record.get("summaries", []) if s["variant"] == variant), None)


def speedup(a: str, b: str) -> Callable[[dict], float | None]:
    """The primary target's median over seeds of ``steps_a / steps_b`` (> 1: ``b`` is faster)."""
    return lambda record: (comparison_of(record, a, b) or {}).get("speedup")


def final_loss(variant: str) -> Callable[[dict], float | None]:
    """The variant's median final training loss (diverged runs excluded)."""
    return lambda record: (summary_of(record, variant) or {}).get("median_final_loss")


def heat_table(result: SweepResult, axes: Sequence[str], value: Callable[[dict], float | None]) -> HeatTable:
    """``value(record)`` over the ``axes`` (x, then y), median over the other swept keys."""
    grid = result.grid
    x_key = axes[0] if axes else None
    y_key = axes[1] if len(axes) > 1 else None
    xs = tuple(grid.axes[x_key]) if x_key else ("all",)
    ys = tuple(grid.axes[y_key]) if y_key else ("all",)
    bins: dict[tuple[int, int], list[float]] = {}
    for c in result.cells:
        v = value(c.record) if c.record is not None else None
        if v is None or not np.isfinite(v):
            continue
        j = xs.index(c.cell.settings[x_key]) if x_key else 0
        i = ys.index(c.cell.settings[y_key]) if y_key else 0
        bins.setdefault((i, j), []).append(float(v))
    values = np.full((len(ys), len(xs)), np.nan)
    counts = np.zeros((len(ys), len(xs)), dtype=int)
    for (i, j), vals in bins.items():
        values[i, j], counts[i, j] = float(np.median(vals)), len(vals)
    others = tuple(k for k in grid.keys if k not in axes)
    return HeatTable(x_key, tuple(_label(v) for v in xs), y_key, tuple(_label(v) for v in ys), values, counts,
                     others, int(np.prod([len(grid.axes[k]) for k in others])))


def best_settings(result: SweepResult) -> list[BestSetting]:
    """Per variant, the ok cell with the lowest median final loss (ties: the earlier cell)."""
    best = []
    for variant in variant_labels(result):
        scored: list[tuple[float, CellResult, dict]] = []
        for c in result.cells:
            s = summary_of(c.record, variant) if c.record is not None else None
            if s is not None and s.get("median_final_loss") is not None:
                scored.append((s["median_final_loss"], c, s))
        if not scored:
            continue
        _, c, s = min(scored, key=lambda t: (t[0], t[1].cell.index))
        best.append(BestSetting(variant, settings_text(c.cell.settings), tuple(s["final_loss_interval"]),
                                tuple(s["steps_interval"]), f"{s['reached']}/{s['runs']}"))
    return best


def variant_labels(result: SweepResult) -> list[str]:
    """The variants' labels, in the grid's order (empty if no cell succeeded)."""
    for c in result.cells:
        if c.record is not None:
            return [v["label"] for v in c.record["variants"]]
    return []
