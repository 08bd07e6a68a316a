"""Tiny grid files for the sweep tests: cells of a second or less."""

from __future__ import annotations

from pathlib import Path

TINY_SET = """[set]
"train.epochs" = 2
"train.batch_size" = 64
"train.target_loss" = 0.9
"data.n_samples" = 128
"data.n_eval" = 64
"model.hidden" = [4]
"""


def write_grid(folder: Path, grid: str = '"train.lr" = [1e-3, 1e-2]\n"data.noise" = [0.0, 0.1]\n', *,
               name: str = "grid.toml", head: str = 'base = "signed_regression"\nvariants = ["relu", "leaky"]\n'
                                                   'seeds = 2\n', fixed: str = TINY_SET) -> Path:
    """A grid file in ``folder``: 2 variants x 2 seeds, 2 epochs of 2 steps, 4 cells by default."""
    path = folder / name
    path.write_text(head + fixed + "[grid]\n" + grid, encoding="utf-8")
    return path


def failing_at(lr: float):
    """A cell function that raises for the cells at learning rate ``lr`` and runs the others."""
    from probe.sweep.cell import run_cell

    def cell(payload: dict) -> dict:
        if payload["scenario"]["train"]["lr"] == lr:
            raise RuntimeError(f"deliberate failure at lr {lr}")
        return run_cell(payload)

    return cell
