"""Markdown reports: figures exist and are PNGs, numbers match --json, writes are atomic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from probe import save_checkpoint
from probe.cli.app import app
from probe.models import MLP
from probe.report import analysis_report
from probe.report.fmt import fmt

runner = CliRunner()


def linked_figures(md: Path) -> list[Path]:
    return [md.parent / rel for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md.read_text())]


def assert_valid_pngs(md: Path) -> None:
    figs = linked_figures(md)
    assert figs, "the report links no figure"
    for fig in figs:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", fig
        assert mpimg.imread(fig).shape[0] > 100


@pytest.fixture
def model_and_data(tmp_path, random_mlp: MLP) -> tuple[Path, Path]:
    model = save_checkpoint(random_mlp, tmp_path / "m.pt")
    np.savez(tmp_path / "d.npz", X=torch.randn(200, 5).numpy(), y=torch.randn(200, 2).numpy())
    return model, tmp_path / "d.npz"


def test_analyze_report_matches_json(tmp_path, model_and_data) -> None:
    model, data = model_and_data
    md = tmp_path / "out" / "analysis.md"
    res = runner.invoke(app, ["analyze", str(model), "--data", str(data), "--report", str(md), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert_valid_pngs(md)
    text = md.read_text()
    assert "probe analyze" in text and "torch" in text
    for layer in doc["layers"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {layer['layer']} |"))
        assert fmt(layer["grad_ratio"]) in row
        assert f"{100 * layer['neg_grad_fraction']:.1f}%" in row
    assert fmt(doc["sign"][0]["neg_pos"]) in text


def test_interrupted_report_leaves_nothing(tmp_path, model_and_data, monkeypatch) -> None:
    model, data = model_and_data
    out = tmp_path / "out"

    def boom(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(analysis_report, "active_fraction_figure", boom)
    res = runner.invoke(app, ["analyze", str(model), "--data", str(data), "--report", str(out / "a.md")])
    assert res.exit_code != 0
    assert list(out.iterdir()) == []


def test_compare_report_and_sweep(tmp_path) -> None:
    from probe.compare.run import compare_variants as compare
    from probe.report.compare_report import write_compare_report

    result = compare(["relu", "leaky", "leaky:0.3"], "signed_regression", seeds=3, epochs=2)
    md = write_compare_report(result, tmp_path / "c.md", command="probe compare relu leaky leaky:0.3")
    assert_valid_pngs(md)
    text = md.read_text()
    names = {p.name for p in linked_figures(md)}
    assert {"loss_curves.png", "steps_to_target.png", "slope_sweep.png", "grad_ratio.png",
            "sign_routes.png", "dead_rate.png"} <= names
    for c in result.comparisons:
        assert c.verdict in text
    doc = result.to_dict()
    for s in doc["summaries"]:  # the markdown tables carry the numbers of the JSON
        row = next(line for line in text.splitlines() if line.startswith(f"| {s['variant']} | "))
        assert fmt(s["median_final_loss"]) in row
        assert f"{s['reached']}/{s['runs']}" in row
    assert "`signed_regression`" in text or "signed_regression" in text


def test_study_writes_reports_and_index(tmp_path) -> None:
    from probe.experiment.study import run_study
    from probe.report.study_report import write_study

    outcomes = run_study(variants=("relu", "leaky"), seeds=2, epochs=1,
                         scenarios=["signed_regression", "positive_regression"])
    index = write_study(outcomes, tmp_path / "study").read_text()
    for o in outcomes:
        report = tmp_path / "study" / f"{o.name}.md"
        assert report.exists()
        assert f"]({report.name})" in index
        assert o.result.comparisons[0].verdict in index


def test_circuit_report(tmp_path, model_and_data) -> None:
    model, data = model_and_data
    md = tmp_path / "circ.md"
    res = runner.invoke(app, ["circuit", str(model), "--data", str(data), "--report", str(md), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert_valid_pngs(md)
    text = md.read_text()
    assert str(doc["groups"]["negative"]["circuit_size"]["total"]) in text
