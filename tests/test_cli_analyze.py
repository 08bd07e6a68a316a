"""``probe analyze`` through typer's CliRunner: JSON contract, terminal output, clean errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from probe import save_checkpoint
from probe.cli.app import app
from probe.models import MLP

runner = CliRunner()


@pytest.fixture
def files(tmp_path, random_mlp: MLP):
    save_checkpoint(random_mlp, tmp_path / "m.pt")
    X = torch.randn(300, 5).numpy()
    np.savez(tmp_path / "d.npz", X=X, y=np.random.default_rng(0).normal(size=(300, 2)))
    np.savez(tmp_path / "wide.npz", X=np.ones((10, 7)))
    return tmp_path


def test_analyze_json_contract(files) -> None:
    res = runner.invoke(app, ["analyze", str(files / "m.pt"), "--data", str(files / "d.npz"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [lay["layer"] for lay in doc["layers"]] == [1, 2]  # 1-based, as the tables
    for key in ("units", "negative_slope", "dead_units", "dead_rate", "grad_ratio", "neg_grad_share"):
        assert key in doc["layers"][0]
    assert len(doc["sign"]) == 2
    for key in ("pos_pos", "neg_pos", "pos_neg", "neg_neg", "activation_route_share"):
        assert key in doc["sign"][0]
    assert doc["loss"]["name"] == "mse"
    assert doc["model"]["format"] == "probe-checkpoint"
    assert doc["data"]["samples"] == 300
    neg = doc["circuit"]["groups"]["negative"]
    assert doc["circuit"]["output"] == 0 and neg["samples"] == doc["sign"][0]["negative_predictions"]["samples"]


def test_analyze_terminal_output(files) -> None:
    res = runner.invoke(app, ["analyze", str(files / "m.pt"), "--data", str(files / "d.npz")])
    assert res.exit_code == 0, res.output
    assert "grad_ratio" in res.stdout and "Verdict" in res.stdout


@pytest.mark.parametrize("args, needle", [
    (["analyze", "missing.pt", "--data", "d.npz"], "does not exist"),
    (["analyze", "m.pt", "--data", "wide.npz"], "wrong width"),
    (["analyze", "m.pt"], "No evaluation data"),
    (["analyze", "m.pt", "--data", "d.npz", "--activation", "sigmoid"], "Unknown activation"),
    (["analyze", "m.pt", "--data", "d.npz", "--activation", "gelu"], "contradicts the probe checkpoint"),
])
def test_analyze_errors_exit_2_without_traceback(files, monkeypatch, args, needle) -> None:
    monkeypatch.chdir(files)
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert res.stdout == ""


def test_circuit_command(files) -> None:
    graph, png = files / "c.graphml", files / "c.png"
    res = runner.invoke(app, ["circuit", str(files / "m.pt"), "--data", str(files / "d.npz"), "--output", "1",
                              "--graph", str(graph), "--png", str(png), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["output"] == 1 and doc["completeness"]["max_rel_error"] < 1e-3
    assert graph.exists() and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, needle", [
    (["circuit", "m.pt", "--data", "d.npz", "--output", "5"], "output"),
    (["circuit", "m.pt", "--data", "d.npz", "--group", "both"], "Unknown sample group"),
    (["compare", "relu"], "at least two"),
    (["compare", "relu", "leaky", "--scenario", "nope"], "Unknown scenario"),
])
def test_other_commands_fail_cleanly(files, monkeypatch, args, needle) -> None:
    monkeypatch.chdir(files)
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_unwritable_outputs_are_refused_before_any_work(files, monkeypatch) -> None:
    monkeypatch.chdir(files)
    (files / "afile").write_text("x")
    for args in (["analyze", "m.pt", "--data", "d.npz", "--report", "afile/r.md"],
                 ["compare", "relu", "leaky", "--json", "afile/x.json"],
                 ["circuit", "m.pt", "--data", "d.npz", "--png", "afile/c.png"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert "Cannot write" in res.stderr and "Traceback" not in res.stderr


def test_error_text_is_not_read_as_markup(files, monkeypatch) -> None:
    monkeypatch.chdir(files)
    (files / "bad.toml").write_text('name = "x"\ndescription = "y"\n[model]\nhidden = [4]\ninit = "default"\n')
    res = runner.invoke(app, ["compare", "relu", "leaky", "--scenario", "bad.toml"])
    assert res.exit_code == 2
    assert "[data]" in res.stderr


def test_nan_weights_are_refused(tmp_path, random_mlp: MLP) -> None:
    with torch.no_grad():
        random_mlp[2].weight[0, 0] = float("nan")
    save_checkpoint(random_mlp, tmp_path / "nan.pt")
    np.savez(tmp_path / "d.npz", X=np.ones((4, 5)))
    res = runner.invoke(app, ["analyze", str(tmp_path / "nan.pt"), "--data", str(tmp_path / "d.npz"), "--json"])
    assert res.exit_code == 2 and "NaN or infinite weights" in res.stderr
    assert "Traceback" not in res.stderr
