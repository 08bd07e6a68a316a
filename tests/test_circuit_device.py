"""``--device`` and ``--circuit-samples`` on analyze and circuit: CPU equality, clean refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from probe import save_checkpoint
from probe.circuit import trace_circuit
from probe.cli.app import app
from probe.core.data import Dataset
from probe.core.errors import ProbeError
from probe.experiment.workflows import analyze
from probe.models import MLP

runner = CliRunner()
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(MLP.build([5, 16, 12, 2], "leaky:0.1"), tmp_path / "m.pt")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(3000, 5)).astype(np.float32), y=rng.normal(size=(3000, 2)))
    return tmp_path


def test_check_device_lives_in_core_and_keeps_its_old_path():
    from probe.compare.run import check_device as old
    from probe.core.devices import check_device

    assert old is check_device and check_device("cpu") == "cpu"
    for bad in ("tpu", "mps", "cuda:x"):
        with pytest.raises(ProbeError):
            check_device(bad)


def test_trace_and_analyze_on_cpu_device_are_identical():
    torch.manual_seed(0)
    mlp = MLP.build([5, 16, 12, 2], "relu")
    data = Dataset(torch.randn(400, 5), torch.randn(400, 2), "r")
    a = trace_circuit(mlp, data, output=1, device="cpu").to_dict()
    assert json.dumps(a) == json.dumps(trace_circuit(mlp, data, output=1).to_dict())
    x = analyze(mlp, data.X, data.y, circuit=True, device="cpu").to_dict()
    assert json.dumps(x) == json.dumps(analyze(mlp, data.X, data.y, circuit=True).to_dict())


@NO_GPU
def test_cuda_without_gpu_is_refused_in_the_library():
    torch.manual_seed(0)
    mlp = MLP.build([5, 8, 1], "relu")
    with pytest.raises(ProbeError, match="CUDA"):
        trace_circuit(mlp, torch.randn(10, 5), device="cuda")
    with pytest.raises(ProbeError, match="CUDA"):
        analyze(mlp, torch.randn(10, 5), device="cuda")


@NO_GPU
@pytest.mark.parametrize("command", ["analyze", "circuit"])
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cli_cuda_without_gpu_exits_2(files, command, device):
    res = runner.invoke(app, [command, str(files / "m.pt"), "--data", str(files / "d.npz"), "--device", device])
    assert res.exit_code == 2, res.output
    assert "CUDA" in res.output and "Traceback" not in res.output and "--device cpu" in res.output


@pytest.mark.parametrize("command", ["analyze", "circuit"])
def test_cli_device_cpu_and_circuit_samples(files, command):
    base = [command, str(files / "m.pt"), "--data", str(files / "d.npz"), "--json"]
    plain = runner.invoke(app, base)
    on_cpu = runner.invoke(app, [*base, "--device", "cpu"])
    assert plain.exit_code == 0 and on_cpu.exit_code == 0, plain.output + on_cpu.output
    assert plain.stdout == on_cpu.stdout
    doc = json.loads(plain.stdout)
    circ = doc["circuit"] if command == "analyze" else doc
    assert circ["samples"] == {"used": 2000, "of": 3000, "stratified_by": "prediction sign", "seed": 0}
    assert circ["target"] == "logit" and circ["groups"]["negative"]["routes"][0]["sender"] == "inputs"
    small = json.loads(runner.invoke(app, [*base, "--circuit-samples", "500"]).stdout)
    assert (small["circuit"] if command == "analyze" else small)["samples"]["used"] == 500
    every = json.loads(runner.invoke(app, [*base, "--circuit-samples", "0"]).stdout)
    assert (every["circuit"] if command == "analyze" else every)["samples"]["used"] == 3000
    terminal = runner.invoke(app, [command, str(files / "m.pt"), "--data", str(files / "d.npz")])
    assert terminal.exit_code == 0 and "sample of 2000 of 3000 evaluation rows" in " ".join(terminal.stdout.split())


def test_bad_circuit_requests_are_refused_before_the_analysis():
    from probe.circuit import CircuitError

    torch.manual_seed(0)
    mlp = MLP.build([5, 8, 1], "relu")
    with pytest.raises(CircuitError, match="two classes"):
        analyze(mlp, torch.randn(10, 5), circuit=True, circuit_target="margin")
    with pytest.raises(CircuitError, match="circuit_samples"):
        analyze(mlp, torch.randn(10, 5), circuit=True, circuit_samples=0)
