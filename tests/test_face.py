"""The package face for notebooks: lazy imports, no global state, one way in for every input kind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

import probe
from probe.core.checks import as_dataset
from probe.core.errors import DataError, ModelLoadError, ProbeError

README = Path(__file__).resolve().parents[1] / "README.md"


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_import_probe_is_light_and_touches_no_global_state():
    out = _python("import sys, probe, probe.cli.app\n"
                  "print(sorted(m for m in ('torch', 'captum', 'matplotlib', 'scipy', 'sklearn', 'networkx')"
                  " if m in sys.modules))")
    assert out.strip() == "[]"


def test_reports_leave_the_matplotlib_backend_alone(tmp_path):
    code = ("import matplotlib; matplotlib.use('svg'); import sys, probe, torch\n"
            "from probe.report.diagnostic_plots import grad_ratio_figure\n"
            "net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))\n"
            "r = probe.analyze(net, torch.randn(64, 3), torch.randn(64))\n"
            "grad_ratio_figure({'a': [r.diagnostics]}).savefig(sys.argv[1] if len(sys.argv) > 1 else "
            f"'{tmp_path / 'f.png'}')\n"
            "print(matplotlib.get_backend())")
    assert _python(code).split() == ["svg"]  # probe never calls matplotlib.use()


def test_subpackages_are_modules_not_functions():
    import probe.circuit as pc
    import probe.compare as pcmp

    assert pc.__name__ == "probe.circuit" and pcmp.__name__ == "probe.compare"
    assert callable(probe.trace_circuit) and callable(probe.compare_variants)


def test_readme_notebook_snippet_runs_as_written():
    text = README.read_text()
    block = re.search(r"<!-- notebook -->\n```python\n(.*?)```", text, re.S)
    assert block, "README has no <!-- notebook --> python block"
    scope: dict = {}
    exec(compile(block.group(1), "README notebook snippet", "exec"), scope)
    assert scope["result"].circuit is not None
    assert scope["ax"].has_data()


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.LeakyReLU(0.1), nn.Linear(6, 1))


def test_every_model_and_data_kind_gives_the_same_numbers(tmp_path):
    net = _net()
    X = np.random.default_rng(0).normal(size=(50, 3))  # float64
    y = X.sum(axis=1)  # 1-D
    base = probe.analyze(net, torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)[:, None])
    probe.save_checkpoint(probe.as_model(net).mlp, tmp_path / "m.pt")
    np.savez(tmp_path / "d.npz", X=X, y=y)
    for model in (net, probe.as_model(net), tmp_path / "m.pt", str(tmp_path / "m.pt")):
        for data in ((X, y), (X.tolist(), list(y)), (probe.as_dataset(X, y), None), (tmp_path / "d.npz", None)):
            r = probe.analyze(model, *data)
            assert r.diagnostics == base.diagnostics
    assert probe.diagnose(net, X, y) == base.diagnostics


@pytest.mark.parametrize("X, y, match", [
    (np.ones(5), None, "wrong shape"),
    (np.ones((2, 2, 2)), None, "wrong shape"),
    (np.ones((4, 3)), np.ones(5), "different numbers of samples"),
    (np.ones((4, 3)), np.ones((4, 1, 1)), "y has the wrong shape"),
    (np.array([["a", "b"]]), None, "not numeric"),
    (np.ones((4, 3)) * 1j, None, "complex"),
    (torch.ones(4, 3, dtype=torch.complex64), None, "complex"),
    (torch.ones(4, 3, device="meta"), None, "not a plain tensor"),
    (None, None, "No inputs"),
    ({"X": 1}, None, "not numeric"),
])
def test_bad_arrays_get_a_probe_error(X, y, match):
    with pytest.raises(DataError, match=match):
        as_dataset(X, y)


def test_dataset_and_y_twice_and_not_a_model():
    data = as_dataset(np.ones((3, 2)))
    assert data.X.dtype == torch.float32 and data.y is None
    with pytest.raises(DataError, match="twice"):
        as_dataset(data, np.ones(3))
    with pytest.raises(ModelLoadError, match="not a model"):
        probe.analyze(object(), np.ones((3, 3)))
    with pytest.raises(ProbeError, match="wrong width"):
        probe.analyze(_net(), np.ones((3, 4)))
    with pytest.raises(DataError, match="needs targets"):
        probe.analyze(_net(), np.ones((3, 3)), loss="mse")


def test_results_render_themselves():
    net = _net()
    r = probe.analyze(net, torch.randn(40, 3), torch.randn(40), circuit=True)
    console = Console(record=True, width=100)
    console.print(r)
    console.print(r.circuit)
    text = console.export_text()
    assert "Verdict:" in text and "Hidden layers" in text and "Completeness" in text


def test_options_are_explicit_keywords():
    import inspect

    for fn in (probe.analyze, probe.trace_circuit, probe.compare_variants, probe.diagnose):
        kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, fn.__name__


def test_cheap_commands_do_not_load_captum_or_matplotlib():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom probe.cli.app import app\n"
            "r = CliRunner()\n"
            "assert r.invoke(app, ['scenarios']).exit_code == 0\n"
            "assert r.invoke(app, ['compare', 'relu']).exit_code == 2\n"  # one variant: refused
            "assert r.invoke(app, ['analyze', 'x.pt', '--report', 'r.txt']).exit_code == 2\n"
            "print(sorted(m for m in ('captum', 'matplotlib', 'networkx') if m in sys.modules))")
    assert _python(code).strip() == "[]"
