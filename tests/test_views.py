"""Terminal tables at 80 columns: values are never cut (issue: the first hour of a new user)."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console
from rich.table import Table

import probe
from probe.report.fmt import Legible


def _render(renderable, width: int) -> str:
    console = Console(record=True, width=width)
    console.print(renderable)
    return console.export_text()


def test_a_narrow_table_keeps_every_value_whole():
    table = Table(title="t")
    for col in ("variant", "pos_pos", "pos_neg", "a rather long header", "grad_ratio"):
        table.add_column(col, no_wrap=True)
    table.add_row("leaky:0.125", "929.5", "7.38", "0.00917", "0.009915")
    wide, narrow = _render(Legible(table), 200), _render(Legible(table), 45)
    assert "┃" in wide  # fits: drawn as it is
    for value in ("leaky:0.125", "929.5", "7.38", "0.00917", "0.009915"):
        assert value in narrow
    lines = narrow.splitlines()
    heads = [i for i, line in enumerate(lines) if line.split()[:2] == ["variant", "pos"]]
    assert heads and lines[heads[0]].split()[2] == "neg"  # headers stack: pos/pos and pos/neg stay apart
    assert "…" not in narrow and max(map(len, narrow.splitlines())) <= 45


@pytest.fixture(scope="module")
def compared():
    return probe.compare_variants(["relu", "leaky", "leaky:0.1", "prelu"], "signed_regression", seeds=2, epochs=3,
                                  circuits=False)


def test_compare_and_analyze_at_80_columns(compared):
    text = _render(compared, 80)
    assert "…" not in text
    for s in compared.summaries:
        assert f"\n{s.variant} " in text
    intervals = [f"{t.ci_low:.3g}-{t.ci_high:.3g}" for c in compared.comparisons for t in c.by_target
                 if t.ci_low is not None]
    assert intervals and all(i in text for i in intervals)  # an interval is never broken across lines
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LeakyReLU(0.01), torch.nn.Linear(8, 1))
    analysed = probe.analyze(net, torch.randn(64, 4), torch.randn(64), circuit=True)
    text = _render(analysed, 80)
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    sign = analysed.diagnostics.sign[0].all_samples
    for value in (sign.pos_pos, sign.neg_pos, sign.pos_neg, sign.neg_neg):
        assert f"{value:.3g}" in text
