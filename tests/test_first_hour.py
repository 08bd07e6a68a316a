"""The paper cuts a new user met in the first hour: each test fails on the old behaviour."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import probe
from probe.cli.app import app
from probe.cli.common import handles_errors
from probe.core.errors import ProbeError, article
from probe.models import MLP

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    probe.save_checkpoint(MLP.build([3, 6, 1], "leaky:0.1"), tmp_path / "m.pt")
    np.savez(tmp_path / "d.npz", X=np.random.default_rng(0).normal(size=(60, 3)), y=np.zeros((60, 1)))
    return tmp_path


def _refused(args, *needles):
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    for needle in needles:
        assert needle in text, text
    return text


def test_1_quick_start_creates_the_environment_first():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- ci:(main|test) -->\n```bash\n(.*?)\n```", text)
    assert [name for name, _ in blocks] == ["main", "test"]  # exactly two commands
    for _, command in blocks:
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")
    assert "CUDA build" in text


def test_3_options_are_used_or_refused(files):
    model, data = str(files / "m.pt"), str(files / "d.npz")
    _refused(["analyze", model, "--data", data, "--scenario", "signed_regression"], "Both --data and --scenario")
    _refused(["analyze", model, "--data", data, "--target", "y"], "not a CSV")
    _refused(["analyze", model, "--data", data, "--report", str(files / "x.txt")], ".md")


@pytest.mark.parametrize("option, value", [("--near-dead", "2"), ("--near-dead", "-1"), ("--near-dead", "nan"),
                                           ("--dormant-tau", "-1")])
def test_4_thresholds_must_be_fractions(files, option, value):
    _refused(["analyze", str(files / "m.pt"), "--data", str(files / "d.npz"), option, value], "fraction")
    with pytest.raises(ProbeError, match="fraction"):
        probe.analyze(MLP.build([3, 6, 1], "relu"), np.ones((4, 3)),
                      **{option.lstrip("-").replace("-", "_").replace("near_dead", "near_dead_threshold"): float(value)})


def test_5_messages_point_to_the_right_fix(files, tmp_path):
    text = _refused(["analyze", str(files / "m.pt"), "--data", str(files / "d.npz"), "--output", "5"], "--output")
    assert "between 0 and 0" not in text and "single output" in text
    # a class defined in the training script itself: PYTHONPATH cannot help, saving the weights can
    script = ("import torch\nclass Net(torch.nn.Sequential):\n    pass\n"
              f"torch.save(Net(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)), r'{tmp_path / 'main.pt'}')\n")
    subprocess.run([sys.executable, "-c", script], check=True)
    text = _refused(["analyze", str(tmp_path / "main.pt"), "--data", str(files / "d.npz"), "--trust"],
                    "__main__", "state_dict")
    assert "PYTHONPATH" not in text
    # a checkpoint of a custom scenario whose TOML has moved away
    toml = tmp_path / "mine.toml"
    toml.write_text(Path(probe.load_scenario("signed_regression").path).read_text()
                    .replace('name = "signed_regression"', 'name = "mine"'))
    probe.compare_variants(["relu", "leaky"], toml, seeds=1, epochs=1, circuits=False, save_dir=tmp_path / "runs")
    toml.unlink()
    _refused(["analyze", str(tmp_path / "runs" / "relu-seed0.pt")], "mine.toml", "no longer there", "--scenario")
    # wording
    assert article("ELU") == "an ELU" and article("ReLU") == "a ReLU"
    from probe.compare.stats import compare_steps
    tied = compare_steps("a", "b", [5] * 10, [5] * 10, 10).verdict
    assert "p not defined" not in tied and "0 of 10 seed pairs decided" in tied
    from probe.report.analyze_view import circuit_line
    assert "built by 0" not in circuit_line(0, 1024, 0) and "no hidden unit" in circuit_line(0, 1024, 0)
    assert "1 hidden unit " in circuit_line(0, 3, 1)


def test_6_library_warnings_fold_into_probes_output(capsys):
    def warns_then_fails():
        warnings.warn("loadtxt: input contained no data", UserWarning)
        raise ProbeError("The data has no samples", fix="pass the evaluation data")

    def warns_then_works():
        warnings.warn("some library note", UserWarning)
        warnings.warn("some library note", UserWarning)
        return 7

    with pytest.raises(BaseException):
        handles_errors(warns_then_fails)()
    err = capsys.readouterr().err
    assert "loadtxt" not in err and "no samples" in err
    assert handles_errors(warns_then_works)() == 7
    err = capsys.readouterr().err
    assert err.count("warning: some library note") == 1 and "UserWarning" not in err


def test_7_numbering_legends_and_empty_figures(tmp_path):
    from probe.report.analysis_report import write_analysis_report
    from probe.report.circuit_figure import NODE_CMAP, NEGATIVE_COLOUR
    from probe.report.compare_report import write_compare_report
    from probe.report.diagnostic_plots import grad_ratio_figure

    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 5), torch.nn.ReLU(),
                              torch.nn.Linear(5, 1))
    result = probe.analyze(net, torch.randn(50, 3), torch.randn(50))
    assert [lay["layer"] for lay in result.to_dict()["layers"]] == [1, 2]
    console = Console(record=True, width=120)
    console.print(result)
    assert "active: median" in " ".join(console.export_text().split())
    fig = grad_ratio_figure({"relu": [result.diagnostics]})
    assert any("exactly 0" in t.get_text() for t in fig.axes[0].texts)  # not an empty plot
    md = write_analysis_report(result, tmp_path / "a.md", command="test").read_text()
    headings = re.findall(r"^## (.+)$", md, re.M)
    for h in headings:
        assert f"**{h}" not in md  # no section titled twice
    untrained = probe.compare_variants(["relu", "leaky"], "signed_regression", seeds=2, epochs=0)
    write_compare_report(untrained, tmp_path / "c.md", command="test")
    assert not (tmp_path / "c_files" / "loss_curves.png").exists()
    assert "0 epochs" in (tmp_path / "c.md").read_text()
    assert NODE_CMAP not in ("RdBu", "RdBu_r", "bwr", "coolwarm") and NEGATIVE_COLOUR.startswith("#b2")


@pytest.mark.parametrize("hidden, width", [(12, 8), (20, 4), (2, 1024)])
def test_8_figures_stay_legible_deep_and_wide(hidden, width):
    from probe.report.diagnostic_plots import active_fraction_figure, grad_ratio_figure

    torch.manual_seed(0)
    mlp = MLP.build([4, *[width] * hidden, 1], "leaky:0.1")
    result = probe.analyze(mlp, torch.randn(64, 4), torch.randn(64))
    fig = active_fraction_figure(result.diagnostics)
    w, h = fig.get_size_inches()
    assert w <= 13 and h <= 16
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) <= 4 * 4 + 1  # panels wrap four to a row; past 16 layers one heatmap (+ colorbar)
    titles = [ax.get_title() for ax in visible if ax.get_title()]
    assert len(titles) == len(set(titles))
    ticks = grad_ratio_figure({"m": [result.diagnostics]}).axes[0].get_xticks()
    assert len(ticks) <= 12


def test_9_completeness_above_tolerance_is_flagged():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.LeakyReLU(0.05), torch.nn.Linear(32, 32),
                              torch.nn.LeakyReLU(0.05), torch.nn.Linear(32, 1))
    traced = probe.trace_circuit(net, torch.randn(200, 4) * 3, method="ig", n_steps=2)
    doc = traced.to_dict()["completeness"]
    assert doc["within_tolerance"] is False and doc["tolerance"] == 0.05
    console = Console(record=True, width=120)
    console.print(traced)
    text = " ".join(console.export_text().split())
    assert "above the 5% tolerance" in text and "--n-steps" in text
    exact = probe.trace_circuit(net, torch.randn(200, 4), method="deeplift")
    assert exact.completeness.within_tolerance
