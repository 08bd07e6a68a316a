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
