"""One command line: the same spellings everywhere, clean refusals, and output sets published whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import probe.cli.app as cli
from probe import save_checkpoint
from probe.cli.app import app
from probe.models import MLP

runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(MLP.build([3, 5, 1], "leaky:0.1"), tmp_path / "m.pt")
    np.savez(tmp_path / "d.npz", X=np.random.default_rng(0).normal(size=(40, 3)), y=np.zeros((40, 1)))
    return tmp_path


def _refused(res, *words: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    text = " ".join(res.output.split())
    for w in words:
        assert w in text, text


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"probe {probe_version()}"


def probe_version() -> str:
    from probe.core.version import __version__

    return __version__


def test_json_means_the_same_on_every_command(files, tmp_path):
    common = ["--data", str(files / "d.npz")]
    commands = {"analyze": ["analyze", str(files / "m.pt"), *common, "--no-circuit"],
                "circuit": ["circuit", str(files / "m.pt"), *common],
                "scenarios": ["scenarios"],
                "compare": ["compare", "relu", "leaky", "--seeds", "2", "--epochs", "1", "--no-circuit"]}
    for name, args in commands.items():
        res = runner.invoke(app, [*args, "--json"])  # bare: one document on stdout
        assert res.exit_code == 0, (name, res.output)
        json.loads(res.stdout)
        path = tmp_path / f"{name}.json"
        res = runner.invoke(app, [*args, "--json", str(path)])  # with a path: the file, and the tables
        assert res.exit_code == 0, (name, res.output)
        assert json.loads(path.read_text()) and "{" not in res.stdout.splitlines()[0]


def test_bare_json_before_the_model_does_not_eat_it(files):
    res = runner.invoke(app, ["analyze", "--json", str(files / "m.pt"), "--data", str(files / "d.npz"),
                              "--no-circuit"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model"]["path"].endswith("m.pt")


@pytest.mark.parametrize("device, words", [
    ("mps", ["not supported", "--device cpu"]), ("meta", ["not supported"]), ("xla", ["not supported"]),
    ("cuda:99", ["cuda"]), ("gpu!", ["Unknown device"]),
])
def test_devices_torch_lacks_are_refused(device, words):
    _refused(runner.invoke(app, ["compare", "relu", "leaky", "--device", device]), *words)


def test_output_collisions_and_bad_paths_are_refused_up_front(files, tmp_path):
    base = ["analyze", str(files / "m.pt"), "--data", str(files / "d.npz")]
    _refused(runner.invoke(app, [*base, f"--json={tmp_path / 'x.md'}", "--report", str(tmp_path / "x.md")]),
             "Two outputs")
    _refused(runner.invoke(app, [*base, "--report", str(tmp_path / "x.txt")]), "ending in .md")
    if Path("/dev/full").exists():
        _refused(runner.invoke(app, [*base, "--json=/dev/full"]), "regular file")
    _refused(runner.invoke(app, [*base, "--near-dead", "nan"]), "--near-dead")
    _refused(runner.invoke(app, [*base, "--report", os.fsdecode(bytes(tmp_path) + b"/\xff.md")]), "UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "m.pt"]


def test_interrupted_compare_exits_130_and_publishes_nothing(tmp_path, monkeypatch):
    def interrupting(bar, task):
        def update(done, total):
            if done >= 1:
                raise KeyboardInterrupt
        return update

    monkeypatch.setattr(cli, "_bar_callback", interrupting)
    res = runner.invoke(app, ["compare", "relu", "leaky", "--seeds", "2", "--epochs", "3", "--no-circuit",
                              "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.md"),
                              "--save-dir", str(tmp_path / "runs")])
    assert res.exit_code == 130, res.output
    assert "Interrupted: results after 1 of 3 epochs" in res.output and "nothing was written" in res.output
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] in ([], ["runs"])
    assert not any(tmp_path.rglob("*.pt")) and not any(tmp_path.rglob(".probe-staging-*"))


def test_complete_compare_publishes_the_whole_set(tmp_path):
    res = runner.invoke(app, ["compare", "relu", "leaky", "--seeds", "2", "--epochs", "1", "--no-circuit",
                              "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.md"),
                              "--save-dir", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert all(Path(r["checkpoint"]).is_file() for r in doc["runs"]) and len(doc["runs"]) == 4
    assert (tmp_path / "r.md").is_file() and (tmp_path / "r_files").is_dir()
    assert not any(tmp_path.rglob(".probe-staging-*"))


def test_interrupted_study_publishes_nothing(tmp_path, monkeypatch):
    import probe.experiment.study as study

    class Partial:
        interrupted = True

    monkeypatch.setattr(study, "compare_variants", lambda *a, **k: Partial())
    with pytest.raises(KeyboardInterrupt):
        study.run_study(scenarios=["signed_regression"], seeds=2, epochs=1)
    res = runner.invoke(app, ["study", "--out", str(tmp_path / "study"), "--seeds", "2"])
    assert res.exit_code == 130 and not (tmp_path / "study").exists()


def test_stale_staging_of_a_killed_run_is_cleaned(files, tmp_path):
    stale = tmp_path / ".probe-staging-999999-abc"  # no such process
    stale.mkdir()
    (stale / "half.md").write_text("half")
    res = runner.invoke(app, ["analyze", str(files / "m.pt"), "--data", str(files / "d.npz"), "--no-circuit",
                              "--report", str(tmp_path / "a.md")])
    assert res.exit_code == 0, res.output
    assert not stale.exists() and (tmp_path / "a.md").is_file()


def test_markup_in_names_is_shown_as_text(tmp_path):
    from probe.experiment.scenarios import load_scenario

    text = Path(load_scenario("signed_regression").path).read_text()
    toml = tmp_path / "odd.toml"
    toml.write_text(text.replace('name = "signed_regression"', 'name = "odd [/] [bold]name"'))
    res = runner.invoke(app, ["compare", "relu", "leaky", "--scenario", str(toml), "--seeds", "2",
                              "--epochs", "1", "--no-circuit"])
    assert res.exit_code == 0, res.output
    assert "odd [/] [bold]name" in res.output


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see the signal handler")
def test_sigterm_unwinds_like_ctrl_c(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "probe", "compare", "relu", "leaky", "--seeds", "2",
                             "--epochs", "2000", "--no-circuit", "--json", str(tmp_path / "r.json"),
                             "--save-dir", str(tmp_path / "runs")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until probe has installed its SIGTERM handler
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err, out)
    assert "Traceback" not in err and "nothing was written" in err, (proc.returncode, err, out)
    assert not (tmp_path / "r.json").exists() and not any(tmp_path.rglob("*.pt"))
    assert not any(tmp_path.rglob(".probe-staging-*"))


def test_outputs_are_named_for_what_they_hold(files, tmp_path):
    base = ["circuit", str(files / "m.pt"), "--data", str(files / "d.npz")]
    _refused(runner.invoke(app, [*base, "--png", str(tmp_path / "c.jpg")]), "ending in .png")
    _refused(runner.invoke(app, [*base, "--graph", str(tmp_path / "g.txt")]), ".graphml")
    res = runner.invoke(app, ["analyze", str(files / "m.pt"), "--data", str(files / "d.npz"), "--json", "out"])
    assert res.exit_code == 2 and "--json=out" in " ".join(res.output.split())
    _refused(runner.invoke(app, ["analyze", str(tmp_path), "--data", str(files / "d.npz")]), "a folder")


def test_figures_draw_into_the_users_axes_or_say_what_they_need():
    from matplotlib.figure import Figure

    import probe
    from probe.core.errors import ProbeError

    torch.manual_seed(0)
    net = MLP.build([3, 6, 1], "leaky:0.1")
    X = torch.randn(80, 3)
    with torch.no_grad():
        net[-1].bias -= net(X).median()
    ax = Figure().subplots()
    probe.plot_circuit(probe.trace_circuit(net, X), ax=ax)
    assert ax.lines and ax.figure.legends
    with pytest.raises(ProbeError, match="compare_variants"):
        probe.plot_loss_curves(probe.analyze(net, X), ax=Figure().subplots())
