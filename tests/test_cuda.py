"""The CUDA paths against the CPU: training kernels, compare, sweep, circuits and analyze (skipped without a GPU).

The GPU computes in float32 with other reduction orders than the CPU, so
results are compared with tolerances (the kernels themselves bit for bit
against torch's own on the same device). ``PROBE_TEST_DEVICE=cpu`` runs the
same checks with the CPU standing in for the GPU, which checks the tests.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from typer.testing import CliRunner

from probe import trace_circuits
from probe.cli.app import app
from probe.compare.run import compare_variants
from probe.core.data import Dataset
from probe.core.variants import leaky_relu_runs
from probe.engines.training.optim import Adam
from probe.experiment.workflows import analyze
from probe.models import MLP
from probe.sweep.grid import load_grid
from probe.sweep.run import run_sweep
from tests.sweep_fixtures import write_grid

DEVICE = os.environ.get("PROBE_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                reason="needs a CUDA device")


def assert_numbers_close(got, want, path: str = "", rtol: float = 1e-3, atol: float = 1e-4) -> int:
    """``got`` matches ``want`` key for key: floats to ``atol + rtol * |want|``, the rest exactly.

    ``None`` (an undefined ratio), strings and booleans must be equal; an
    integer count may differ by one (a pre-activation within rounding of zero
    can change sides). Returns how many floats were compared, so that a test
    can tell it compared something.
    """
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{path}: keys differ"
        return sum(assert_numbers_close(got[k], want[k], f"{path}.{k}", rtol, atol) for k in want)
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), f"{path}: lengths differ"
        return sum(assert_numbers_close(g, w, f"{path}[{i}]", rtol, atol) for i, (g, w) in enumerate(zip(got, want)))
    if want is None or isinstance(want, (str, bool)):
        assert got == want and type(got) is type(want), f"{path}: {got!r} on {DEVICE}, {want!r} on the CPU"
        return 0
    if isinstance(want, int):
        assert isinstance(got, int) and abs(got - want) <= 1, f"{path}: {got!r} on {DEVICE}, {want} on the CPU"
        return 0
    assert isinstance(got, (float, int)) and not isinstance(got, bool), f"{path}: {got!r} is not a number"
    if math.isnan(want):
        assert math.isnan(got), f"{path}: {got} where the CPU gave NaN"
    elif got != want:  # equal infinities pass here
        assert abs(got - want) <= atol + rtol * abs(want), f"{path}: {got} on {DEVICE}, {want} on the CPU"
    return 1


def test_the_comparison_fails_where_it_should():
    assert assert_numbers_close({"a": [1.0, None, 3, "x", float("inf")]}, {"a": [1.0, None, 4, "x", float("inf")]}) == 2
    for got, want in (({"r": 1.0}, {"r": None}), ({"r": None}, {"r": 1.0}), ({"n": 5}, {"n": 3}),
                      ({"t": "margin"}, {"t": "logit"}), ({"x": 1.1}, {"x": 1.0}), ({"x": 1.0}, {"y": 1.0}),
                      ({"x": float("nan")}, {"x": 1.0}), ({"b": 1}, {"b": True})):
        with pytest.raises(AssertionError):
            assert_numbers_close(got, want)


def test_leaky_runs_kernel_is_bit_identical_to_where_on_the_device():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 33, 17, generator=gen)
    z[:, :3] = 0.0  # z == 0 takes the slope's side, as torch.where(z > 0, ...) does
    z = z.to(DEVICE).requires_grad_()
    runs = [(0, 2, 0.0), (2, 4, 0.01), (4, 6, 0.3)]
    slopes = torch.tensor([s for lo, hi, s in runs for _ in range(lo, hi)], device=DEVICE).view(-1, 1, 1)
    ref_z = z.detach().clone().requires_grad_()
    out, ref = leaky_relu_runs(z, runs), torch.where(ref_z > 0, ref_z, slopes * ref_z)
    g = torch.randn(z.shape, generator=gen).to(DEVICE)
    out.backward(g)
    ref.backward(g)
    assert out.device.type == torch.device(DEVICE).type
    assert torch.equal(out, ref) and torch.equal(z.grad, ref_z.grad)


def test_adam_equals_torch_fused_adam_on_the_device():
    gen = torch.Generator().manual_seed(1)
    shapes = [(128, 3), (64,)] if DEVICE == "cpu" else [(3, 5), (7,), (130, 3), (64,)]  # CPU: whole blocks
    ours = [torch.randn(s, generator=gen).to(DEVICE).requires_grad_() for s in shapes]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt_a, opt_b = Adam(ours, lr=3e-3), torch.optim.Adam(theirs, lr=3e-3, fused=True)
    for _ in range(5):
        grads = [torch.randn(s, generator=gen).to(DEVICE) for s in shapes]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    for p, q in zip(ours, theirs):
        assert torch.equal(p, q)


def test_adam_update_of_an_entry_does_not_depend_on_its_place():
    gen = torch.Generator().manual_seed(2)
    values, grads = torch.randn(100, generator=gen), torch.randn(4, 100, generator=gen)
    alone = values.clone().to(DEVICE).requires_grad_()
    inside = torch.randn(237, generator=gen)
    inside[37:137] = values
    inside = inside.to(DEVICE).requires_grad_()
    opt_a, opt_b = Adam([alone], lr=1e-2), Adam([inside], lr=1e-2)
    for g in grads:
        alone.grad = g.to(DEVICE)
        full = torch.randn(237, generator=gen)
        full[37:137] = g
        inside.grad = full.to(DEVICE)
        opt_a.step()
        opt_b.step()
    assert torch.equal(alone.detach(), inside.detach()[37:137])


def test_compare_on_the_device_matches_the_cpu(tmp_path):
    kwargs = dict(seeds=2, epochs=3, circuits=True)
    got = compare_variants(["relu", "leaky"], "signed_regression", device=DEVICE, save_dir=tmp_path, **kwargs)
    want = compare_variants(["relu", "leaky"], "signed_regression", **kwargs)
    assert got.to_dict()["device"].split(":")[0] == DEVICE.split(":")[0]
    runs = [[{k: v for k, v in r.items() if k != "checkpoint"} for r in res.to_dict()["runs"]] for res in (got, want)]
    compared = assert_numbers_close(*runs, "runs")
    assert compared > 100
    # the trained models and their checkpoints come back on the CPU, loadable without a GPU
    assert all(p.device.type == "cpu" for r in got.runs for p in r.model.parameters())
    state = torch.load(tmp_path / "leaky-seed1.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in state["state_dict"].values())


def test_circuits_and_analyze_on_the_device_match_the_cpu():
    torch.manual_seed(0)
    models = [MLP.build([5, 24, 16, 2], v) for v in ("relu", "leaky", "leaky:0.3")]
    data = Dataset(torch.randn(700, 5), torch.randn(700, 2), "r")
    got = [r.to_dict() for r in trace_circuits(models, data, output=1, device=DEVICE)]
    want = [r.to_dict() for r in trace_circuits(models, data, output=1)]
    assert assert_numbers_close(got, want, "circuits", atol=1e-5) > 50
    a = analyze(models[1], data.X, data.y, circuit=True, device=DEVICE).to_dict()
    b = analyze(models[1], data.X, data.y, circuit=True).to_dict()
    assert assert_numbers_close(a, b, "analyze", atol=1e-5) > 20


def test_sweep_on_the_device_matches_the_cpu(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    got, want = run_sweep(grid, device=DEVICE).to_dict(), run_sweep(grid).to_dict()
    assert got["cells_failed"] == 0 and len(got["cells"]) == 4
    assert assert_numbers_close([c["runs"] for c in got["cells"]], [c["runs"] for c in want["cells"]], "cells") > 50


def test_cli_compare_on_the_device_writes_json(tmp_path):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["compare", "relu", "leaky", "--seeds", "2", "--epochs", "1",
                                      "--device", DEVICE, "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["device"].startswith(DEVICE.split(":")[0]) and len(record["runs"]) == 4
