"""The sweep's outputs for people: a terminal table of cells and a markdown report with heatmaps.

Everything here is rendering; the value grids and best settings come from
:mod:`probe.sweep.tables`. The report shows, over two swept keys (``--axes``,
else the first two in the grid file), a heatmap of the speedup of each
variant against the first one and a heatmap of each variant's median final
training loss; with more swept keys each square is the median over the other
keys' settings (the caption says over which, and how many cells).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from rich.table import Table
from rich.text import Text

from probe.core.io import StagedOutputs
from probe.report.figures import new_figure
from probe.report.fmt import fmt
from probe.report.markdown import ReportWriter, environment_lines, md_table
from probe.sweep.grid import settings_text
from probe.sweep.run import SweepResult
from probe.sweep.tables import (HeatTable, best_settings, comparison_of, final_loss, heat_table, speedup,
                                summary_of, variant_labels)

SPEEDUP_NOTE = ("speedup: the median over seeds of steps_a / steps_b to the scenario's target loss (never-reached "
                "counted as budget + 1), as in probe compare; > 1 means the second variant got there faster; "
                "'—' where no run of either variant reached the target")


def _interval(iv: Sequence[float | None]) -> str:
    med, lo, hi = (list(iv) + [None, None, None])[:3]
    return fmt(med) if lo is None or hi is None else f"{fmt(med)} [{fmt(lo)}, {fmt(hi)}]"


def _pairs(result: SweepResult) -> list[tuple[str, str]]:
    labels = variant_labels(result)
    return [(labels[0], b) for b in labels[1:]]


def cells_table(result: SweepResult) -> Table:
    """One row per cell: its settings, status, each variant's median final loss and each speedup."""
    labels, pairs = variant_labels(result), _pairs(result)
    table = Table(title=f"Sweep of {result.grid.base}: {len(result.cells)} cells "
                        f"({result.cells_run} run, {result.cells_cached} cached, {result.cells_failed} failed)",
                  title_justify="left", caption=SPEEDUP_NOTE)
    for key in result.grid.keys or ["cell"]:
        table.add_column(key, no_wrap=True)
    table.add_column("status")
    for label in labels:
        table.add_column(f"final loss {label}", justify="right")
    for a, b in pairs:
        table.add_column(f"speedup {b} vs {a}", justify="right")
    for c in result.cells:
        cells = [Text(repr(c.cell.settings[k])) for k in result.grid.keys] or [Text("base")]
        status = Text("cached" if c.cached else c.status, style="red" if c.status == "failed" else "")
        rec = c.record or {}
        losses = [fmt((summary_of(rec, v) or {}).get("median_final_loss")) for v in labels]
        ups = [fmt((comparison_of(rec, a, b) or {}).get("speedup")) for a, b in pairs]
        table.add_row(*cells, status, *losses, *ups)
    return table


def heatmap_figure(tables: Sequence[HeatTable], titles: Sequence[str], *, ratio: bool) -> Figure:
    """One panel per table, shared colour scale: a ratio around 1 (blue > 1, red < 1) or a loss on a log scale."""
    first = tables[0]
    ny, nx = first.values.shape
    fig, axes = new_figure(min(16.0, len(tables) * (1.1 * nx + 2.4) + 1.2), 0.55 * ny + 2.4, ncols=len(tables),
                           squeeze=False)
    every = np.concatenate([t.values.ravel() for t in tables])
    finite = every[np.isfinite(every) & (every > 0)]
    if ratio:
        span = float(np.max(np.abs(np.log2(finite)))) if finite.size else 1.0
        norm, cmap = TwoSlopeNorm(0.0, -max(span, 0.1), max(span, 0.1)), "RdBu"
    else:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (1e-3, 1.0)
        norm, cmap = LogNorm(lo, hi if hi > lo else lo * 1.01), "viridis_r"
    image = None
    for ax, t, title in zip(axes[0], tables, titles):
        shown = np.log2(t.values) if ratio else t.values
        image = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", cmap=cmap, norm=norm)
        ax.set_facecolor("#dddddd")
        ax.grid(False)
        ax.set_xticks(range(nx), t.x_values)
        ax.set_yticks(range(ny), t.y_values)
        ax.set_xlabel(t.x_key or "")
        ax.set_ylabel(t.y_key or "")
        ax.set_title(title, loc="left", fontsize=10)
        for i in range(ny):
            for j in range(nx):
                v = t.values[i, j]
                shade = float(norm(np.log2(v) if ratio else v)) if np.isfinite(v) and v > 0 else 0.5
                strong = abs(shade - 0.5) > 0.3 if ratio else shade > 0.55  # dark squares get white text
                ax.text(j, i, fmt(None if not np.isfinite(v) else float(v)), ha="center", va="center",
                        fontsize=9, color="white" if strong else "black")
    bar = fig.colorbar(image, ax=list(axes[0]), shrink=0.9)
    if ratio:
        bar.formatter = FuncFormatter(lambda t, _: f"{2 ** t:.3g}")
        bar.update_ticks()
    bar.set_label("speedup (log scale)" if ratio else "median final training loss")
    return fig


def _reduced_note(t: HeatTable) -> str:
    if not t.reduced_over:
        return ""
    return (f" Each square is the median over the {t.per_square} settings of {', '.join(t.reduced_over)} "
            "(over those cells that have a value).")


def write_sweep_report(result: SweepResult, path: str | Path, *, axes: Sequence[str], command: str = "probe sweep",
                       outputs: StagedOutputs | None = None) -> Path:
    """Write the markdown report (heatmaps, best settings, every cell) to ``path``."""
    grid = result.grid
    labels, pairs = variant_labels(result), _pairs(result)
    device = next((c.record.get("device", "cpu") for c in result.cells if c.record), "cpu")
    with ReportWriter(path, outputs) as rw:
        rw.add(f"# Sweep: {grid.base} over {', '.join(grid.keys) or 'no swept key'}",
               "\n".join(environment_lines(command, device)),
               f"{len(result.cells)} cells ({result.cells_run} run now, {result.cells_cached} from the cache, "
               f"{result.cells_failed} failed) on the {result.backend.get('name')} backend; variants "
               f"{', '.join(grid.variants)}; {grid.seeds} seeds per variant in every cell. Fixed: "
               f"{settings_text(grid.fixed) if grid.fixed else 'nothing beyond the base scenario'}.")
        if labels and axes:
            if pairs:
                ups = [heat_table(result, axes, speedup(a, b)) for a, b in pairs]
                rw.add("## Speedup")
                rw.figure(heatmap_figure(ups, [f"{b} vs {a}" for a, b in pairs], ratio=True), "speedup.png",
                          "speedup heatmap")
                rw.add(f"*{SPEEDUP_NOTE}.{_reduced_note(ups[0])}*")
            losses = [heat_table(result, axes, final_loss(v)) for v in labels]
            rw.add("## Final training loss")
            rw.figure(heatmap_figure(losses, labels, ratio=False), "final_loss.png", "final loss heatmap")
            rw.add(f"*Median over seeds of the final training-set MSE (diverged runs left out).{_reduced_note(losses[0])}*")
        rw.add("## Each variant's best setting", md_table(
            ["variant", "best setting (lowest median final loss)", "final loss, median [95% CI]",
             "steps to target, median [95% CI]", "reached"],
            [[b.variant, b.settings, _interval(b.final_loss), _interval(b.steps), b.reached]
             for b in best_settings(result)]),
            "*Intervals: 95% percentile bootstrap of the median over seeds (never-reached runs count as "
            "budget + 1 steps). The best setting is picked on the same seeds, so its interval is optimistic.*")
        failed = [c for c in result.cells if c.status == "failed"]
        if failed:
            rw.add("## Failed cells", "\n".join(f"- {settings_text(c.cell.settings)}: {c.error}" for c in failed))
        rw.add("## Every cell", md_table(
            [*(grid.keys or ["cell"]), "status", *(f"final loss {v}" for v in labels),
             *(f"speedup {b} vs {a}" for a, b in pairs)],
            [[*(repr(c.cell.settings[k]) for k in grid.keys), *([] if grid.keys else ["base"]),
              "cached" if c.cached else c.status,
              *(fmt((summary_of(c.record or {}, v) or {}).get("median_final_loss")) for v in labels),
              *(fmt((comparison_of(c.record or {}, a, b) or {}).get("speedup")) for a, b in pairs)]
             for c in result.cells]))
    return Path(path)
