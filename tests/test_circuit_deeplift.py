"""The closed-form DeepLift agrees with captum's DeepLift/LayerDeepLift, for the logit and the margin."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probe.circuit.attribution import Attributor
from probe.circuit.deeplift import ClosedFormDeepLift, negative_slopes
from probe.circuit.target import target_scores
from probe.models.mlp import MLP


def captum_attributor(mlp: MLP, base: torch.Tensor, output: int, target: str) -> Attributor:
    attributor = Attributor(mlp, base, output, "deeplift", 1, target)
    attributor.closed_form = None  # force captum's own explainers
    attributor.explainers = attributor._explainers()
    return attributor


@pytest.mark.parametrize("variant", ["relu", "leaky:0.1", "leaky:0.3"])
@pytest.mark.parametrize("target", ["logit", "margin"])
def test_closed_form_matches_captum(variant, target):
    torch.manual_seed(3)
    mlp = MLP.build([6, 20, 16, 12, 4], variant).eval()
    for p in mlp.parameters():
        p.requires_grad_(False)
    X = torch.randn(300, 6)
    base = X.mean(0, keepdim=True)
    X[7] = base[0]  # a row equal to the baseline: every multiplier falls back to the gradient
    with torch.no_grad():
        out, base_out = mlp(X), mlp(base)
    score, runner = target_scores(out, 2, target)
    base_score = base_out[0, 2] - (0 if runner is None else base_out[0, runner])
    change = score - base_score
    mine = Attributor(mlp, base, 2, "deeplift", 1, target)
    assert isinstance(mine.closed_form, ClosedFormDeepLift)
    got, got_delta = mine(X, change, runner)
    want, _ = captum_attributor(mlp, base, 2, target)(X, change, runner)
    for g, w in zip(got, want):
        scale = w.abs().max()
        assert (g - w).abs().max() <= 1e-6 * max(1.0, float(scale))
    for d in got_delta:  # completeness, layer by layer
        assert d.abs().max() < 1e-4 * max(1.0, float(change.abs().max()))


def test_closed_form_only_for_plain_relu_family_chains():
    assert negative_slopes(MLP.build([3, 4, 4, 1], "leaky:0.2")) == [pytest.approx(0.2)] * 2
    assert negative_slopes(MLP.build([3, 4, 1], "prelu")) is None
    assert negative_slopes(MLP(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))) is None
    attributor = Attributor(MLP.build([3, 4, 1], "relu").eval(), torch.zeros(1, 3), 0, "ig", 8)
    assert attributor.closed_form is None  # integrated gradients always runs captum


@pytest.mark.parametrize("target", ["logit", "margin"])
def test_batched_closed_form_matches_captum_for_every_member(target):
    """Members of several ReLU-family variants stacked in one BatchedDeepLift, each checked against captum."""
    from probe.circuit.batched import BatchedDeepLift
    from probe.circuit.core import prepare, target_change

    torch.manual_seed(4)
    variants = ["relu", "leaky", "leaky:0.3", "rrelu", "relu"]  # rrelu: its eval-mode leaky slope
    models = [MLP.build([6, 20, 16, 12, 4], v).eval() for v in variants]
    X = torch.randn(300, 6)
    X[7] = X.mean(0)  # a row equal to the baseline: every multiplier falls back to the gradient
    setups = [prepare(m, X, output=2, baseline="mean", method="auto", n_steps=1, batch_size=512, coverage=0.9,
                      n_paths=10, n_drivers=5, max_samples=None, target=target, device="cpu") for m in models]
    batched = BatchedDeepLift(setups)
    xs = torch.stack([s.X for s in setups])
    with torch.no_grad():
        zs, hs, out = batched.forward(xs)
    terms = [target_change(s, out[m]) for m, s in enumerate(setups)]
    change = torch.stack([t[2][:, 2] for t in terms])
    runner = None if terms[0][1] is None else torch.stack([t[1] for t in terms])
    attrs, deltas = batched.attribute(zs, hs, change, runner)
    for m, setup in enumerate(setups):
        torch.testing.assert_close(out[m], setup.model(X), rtol=1e-5, atol=1e-6)
        want, _ = captum_attributor(setup.model, setup.base_row, 2, target)(X, change[m], terms[m][1])
        for layer, w in enumerate(want):
            assert (attrs[layer][m] - w).abs().max() <= 1e-5 * max(1.0, float(w.abs().max())), (variants[m], layer)
        for d in deltas:
            assert d[m].abs().max() < 1e-4 * max(1.0, float(change[m].abs().max()))


@pytest.mark.parametrize("specs, target, outputs", [
    (("relu", "leaky", "leaky:0.2"), "logit", 1),
    (("relu", "leaky"), "margin", 3),
    (("relu", "gelu"), "logit", 1),  # not stackable: traced one model at a time
])
def test_trace_circuits_equals_trace_circuit_per_model(specs, target, outputs):
    from probe.circuit.batched import trace_circuits
    from probe.circuit.core import trace_circuit

    torch.manual_seed(5)
    models = [MLP.build([5, 12, 10, outputs], s).eval() for s in specs for _ in range(2)]
    X = torch.randn(700, 5)
    got = trace_circuits(models, X, target=target, batch_size=256, max_samples=500)
    want = [trace_circuit(m, X, target=target, batch_size=256, max_samples=500) for m in models]
    for g, w in zip(got, want):
        assert g.method == w.method and g.samples == w.samples == 500
        _assert_close_dicts(g.to_dict(), w.to_dict())


def _assert_close_dicts(a, b, path="") -> None:
    if isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in b:
            _assert_close_dicts(a[k], b[k], f"{path}.{k}")
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close_dicts(x, y, f"{path}[{i}]")
    elif isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6), path
    else:
        assert a == b, path
