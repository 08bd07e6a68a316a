"""probe history: reading, the summary against the records, the figures, the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from typer.testing import CliRunner

from probe.cli.app import app
from probe.core.errors import ProbeError
from probe.engines.track import track
from probe.experiment.history import read_histories, read_history
from probe.report.history_report import dead_figure, history_figure, summary_table, write_history_report

runner = CliRunner()


def run(path, activation: nn.Module, steps: int = 30, every: int = 2, seed: int = 0) -> None:
    """A short regression run that kills some units (a high learning rate)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 16), activation, nn.Linear(16, 16), activation, nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    gen = torch.Generator().manual_seed(seed)
    with track(model, path, every=every, window=4) as tracker:
        for _ in range(steps):
            x = torch.randn(32, 3, generator=gen)
            loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tracker.step(loss)


@pytest.fixture
def histories(tmp_path):
    run(tmp_path / "relu.jsonl", nn.ReLU())
    run(tmp_path / "leaky.jsonl", nn.LeakyReLU(0.01))
    return tmp_path


def test_summary_against_the_records(histories) -> None:
    history = read_history(histories / "relu.jsonl")
    records = [json.loads(line) for line in (histories / "relu.jsonl").read_text().splitlines()[1:]]
    summary = history.summary()
    assert history.label == "relu" and summary.records == len(records) == 15
    assert summary.first_step == 0 and summary.last_step == 28 and summary.model == "3-16-16-1 relu"
    assert summary.loss_start == records[0]["loss"] and summary.loss_end == records[-1]["loss"]
    for i, layer in enumerate(summary.layers):
        shares = [r["layers"][i]["window_dead_share"] for r in records]
        peak = max(shares)
        assert layer.peak_window_dead_share == peak
        assert layer.peak_step == records[shares.index(peak)]["step"]
        ratios = [r["layers"][i]["grad_ratio"] for r in records if r["layers"][i]["grad_ratio"] is not None]
        assert (layer.grad_ratio_start, layer.grad_ratio_end) == (ratios[0], ratios[-1])
        assert layer.dead_rate_end == records[-1]["layers"][i]["dead_rate"]
        assert (layer.first_step, layer.last_step, layer.units) == (0, 28, 16)
    doc = summary.to_dict()
    assert doc["layers"][0]["peak_step"] == summary.layers[0].peak_step and doc["notes"] == []
    assert np.array_equal(history.steps(), np.arange(0, 30, 2))


def test_reading_refuses_what_is_not_a_history_and_skips_a_cut_line(tmp_path, histories) -> None:
    with pytest.raises(ProbeError, match="no such file"):
        read_history(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    lines = (histories / "relu.jsonl").read_text().splitlines()
    bad.write_text("\n".join([lines[0], lines[1][:40], lines[2]]) + "\n")
    with pytest.raises(ProbeError, match="corrupt at line 2"):
        read_history(bad)
    bad.write_text('{"step": 0}\n')
    with pytest.raises(ProbeError, match="not a probe.track history"):
        read_history(bad)
    bad.write_text('{"format": "other/1"}\n')
    with pytest.raises(ProbeError, match="not a probe.track history"):
        read_history(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ProbeError, match="not text"):
        read_history(bad)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:4]) + "\n" + lines[4][:100])
    history = read_history(cut)
    assert len(history.records) == 3 and "line 5 is cut short" in history.notes[0]
    empty = tmp_path / "empty.jsonl"
    empty.write_text(lines[0] + "\n")
    summary = read_history(empty).summary()
    assert summary.records == 0 and summary.layers == () and "no recorded step" in summary.notes[0]


def test_labels_tell_same_named_files_apart(tmp_path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        run(tmp_path / folder / "run.jsonl", nn.ReLU(), steps=4)
    assert [h.label for h in read_histories([tmp_path / "a" / "run.jsonl", tmp_path / "b" / "run.jsonl"])] == \
        ["a/run", "b/run"]


def test_figures_draw_one_run_several_runs_and_relu_only(histories) -> None:
    both = read_histories([histories / "relu.jsonl", histories / "leaky.jsonl"])
    for group in ([both[0]], both):
        fig = history_figure(group)
        assert isinstance(fig, Figure) and len(fig.axes) == 4
        dead_ax = fig.axes[1]
        assert len(dead_ax.lines) == 2 * len(group)  # one line per run and hidden layer
        assert isinstance(dead_figure(group), Figure)
    texts = [t.get_text() for t in history_figure([both[0]]).axes[2].texts]
    assert any("exactly 0 (ReLU)" in t for t in texts)  # ReLU's grad_ratio is named, not drawn
    table = summary_table([h.summary() for h in both])
    assert table.row_count == 4


def test_report_has_the_table_and_figures(histories) -> None:
    both = read_histories([histories / "relu.jsonl", histories / "leaky.jsonl"])
    path = write_history_report(both, histories / "r.md", command="probe history relu.jsonl leaky.jsonl")
    text = path.read_text()
    assert "## Training history (probe.track)" in text and "r_files/history.png" in text
    assert (histories / "r_files" / "history.png").stat().st_size > 10_000
    assert (histories / "r_files" / "dead.png").exists()


def test_cli_table_json_and_report(histories, monkeypatch) -> None:
    monkeypatch.chdir(histories)
    res = runner.invoke(app, ["history", "relu.jsonl", "leaky.jsonl"])
    assert res.exit_code == 0, res.output
    assert "peak" in res.stdout and "leaky" in res.stdout and "grad_ratio" in res.stdout
    res = runner.invoke(app, ["history", "relu.jsonl", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["histories"][0]["label"] == "relu" and len(doc["histories"][0]["layers"]) == 2
    res = runner.invoke(app, ["history", "relu.jsonl", "leaky.jsonl", "--json", "s.json", "--report", "r.md"])
    assert res.exit_code == 0, res.output
    assert json.loads((histories / "s.json").read_text())["histories"][1]["label"] == "leaky"
    assert (histories / "r.md").exists() and (histories / "r_files" / "history.png").exists()


@pytest.mark.parametrize("args, needle", [
    (["history", "missing.jsonl"], "no such file"),
    (["history", "relu.jsonl", "--report", "r.txt"], ".md"),
])
def test_cli_errors_exit_2(histories, monkeypatch, args, needle) -> None:
    monkeypatch.chdir(histories)
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and needle in res.output
    assert not (histories / "r_files").exists()


def test_a_twelve_layer_history_keeps_its_layers_apart(tmp_path) -> None:
    """12 hidden layers, one run and two: every layer's line differs from the others; ReLU's note stays short."""
    for name, act in (("relu", nn.ReLU), ("leaky", nn.LeakyReLU)):
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for i in range(12):
            layers += [nn.Linear(3 if i == 0 else 8, 8), act()]
        model = nn.Sequential(*layers, nn.Linear(8, 1))
        with track(model, tmp_path / f"{name}.jsonl") as tracker:
            for _ in range(3):
                x = torch.randn(16, 3)
                ((model(x) - x.sum(1, keepdim=True)) ** 2).mean().backward()
                tracker.step()
    both = read_histories([tmp_path / "relu.jsonl", tmp_path / "leaky.jsonl"])
    for group in ([both[0]], both):
        dead_ax = history_figure(group).axes[1]
        for run in range(len(group)):
            lines = dead_ax.lines[12 * run:12 * run + 12]
            looks = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines}
            assert len(looks) == 12
    texts = [t.get_text() for t in history_figure(both).axes[2].texts]
    assert any("exactly 0 (ReLU): relu, layers 1-12" in t for t in texts)
