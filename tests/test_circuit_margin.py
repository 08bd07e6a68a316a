"""The logit-margin target on a tiny 3-class network whose margins are computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probe.circuit import CircuitError, trace_circuit
from probe.circuit.attribution import Attributor
from probe.core.data import Dataset
from probe.models.mlp import MLP

W1 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
W2 = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
B2 = np.array([0.0, 0.0, 0.1])


def tiny_classifier() -> MLP:
    first, last = nn.Linear(2, 3, bias=False), nn.Linear(3, 3)
    with torch.no_grad():
        first.weight.copy_(torch.tensor(W1))
        last.weight.copy_(torch.tensor(W2))
        last.bias.copy_(torch.tensor(B2))
    return MLP(first, nn.ReLU(), last)


def hand_logits(X: np.ndarray) -> np.ndarray:
    return np.maximum(X @ W1.T, 0) @ W2.T + B2


def hand_margin(logits: np.ndarray, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
    others = logits.copy()
    others[:, k] = -np.inf
    runner = others.argmax(1)
    return logits[:, k] - logits[np.arange(len(logits)), runner], runner


X = torch.tensor(np.random.default_rng(0).normal(size=(60, 2)) * 2, dtype=torch.float32)


def test_groups_and_mean_margin_by_hand():
    r = trace_circuit(tiny_classifier(), Dataset(X, None, "hand"), target="margin", baseline="zeros",
                      method="deeplift")
    margin, _ = hand_margin(hand_logits(X.double().numpy()))
    neg, pos = r.groups
    assert r.target == "margin" and r.to_dict()["target"] == "margin"
    assert neg.samples == int((margin < 0).sum()) > 0 and pos.samples == int((margin >= 0).sum()) > 0
    assert neg.mean_prediction == pytest.approx(margin[margin < 0].mean(), abs=1e-6)
    assert pos.mean_prediction == pytest.approx(margin[margin >= 0].mean(), abs=1e-6)
    assert r.baseline_prediction == pytest.approx(0.0 - 0.1)  # f(0) = b2: class 0 loses to class 2 by 0.1
    assert r.completeness.max_rel_error < 1e-5
    assert r.to_dict()["samples"]["stratified_by"] is None  # 60 rows: no sample needed


@pytest.mark.parametrize("method", ["deeplift", "ig"])
def test_attributions_sum_to_the_margin_change(method):
    mlp = tiny_classifier().eval()
    base = torch.zeros(1, 2)
    logits = hand_logits(X.double().numpy())
    margin, runner = hand_margin(logits)
    base_logits = hand_logits(np.zeros((1, 2)))[0]
    base_margin, base_runner = hand_margin(base_logits[None])
    attributor = Attributor(mlp, base, 0, method, 64, target="margin")
    effective_base = base_logits[0] - base_logits[runner]  # the baseline against x's own runner-up
    change = torch.tensor(margin - effective_base)
    attrs, deltas = attributor(X, change.float(), torch.tensor(runner))
    same = runner == base_runner[0]
    assert same.any() and (~same).any()  # both cases occur
    for attr in attrs:  # inputs, hidden layer
        total = attr.double().sum(1).numpy()
        assert total == pytest.approx(margin - effective_base, abs=1e-5)
        # DeepLift completeness against the true margin wherever x and b share the runner-up:
        assert total[same] == pytest.approx(margin[same] - base_margin[0], abs=1e-5)


def test_final_block_routes_use_each_samples_effective_row():
    r = trace_circuit(tiny_classifier(), Dataset(X, None, "hand"), target="margin", baseline="zeros")
    Xn = X.double().numpy()
    h = np.maximum(Xn @ W1.T, 0)
    margin, runner = hand_margin(hand_logits(Xn))
    for group, mask in ((r.groups[0], margin < 0), (r.groups[1], margin >= 0)):
        rows = (W2[0][None] - W2[runner])[mask]  # [samples, units]
        hv = h[mask]
        c = rows * hv
        expect = {"pos_pos": c[(rows > 0) & (hv > 0)].sum(), "neg_pos": -c[(rows < 0) & (hv > 0)].sum(),
                  "pos_neg": -c[(rows > 0) & (hv < 0)].sum(), "neg_neg": c[(rows < 0) & (hv < 0)].sum()}
        bias = (B2[0] - B2[runner])[mask]
        m = group.routes[-1].masses
        for name, value in expect.items():
            assert getattr(m, name) == pytest.approx(value, abs=1e-9)
        assert m.bias_neg == pytest.approx((-bias).clip(0).sum()) and m.bias_pos == pytest.approx(bias.clip(0).sum())
        assert m.cancellation == pytest.approx(np.abs(c).sum() / np.abs(c.sum(1)).sum())
        contribution = group.output_contribution
        assert contribution == pytest.approx(c.mean(0).tolist())


def test_margin_needs_classes_and_a_known_target():
    torch.manual_seed(0)
    single = MLP.build([2, 4, 1], "relu")
    with pytest.raises(CircuitError, match="two classes"):
        trace_circuit(single, X, target="margin")
    with pytest.raises(CircuitError, match="Unknown circuit target"):
        trace_circuit(tiny_classifier(), X, target="softmax")
    logit = trace_circuit(tiny_classifier(), X, output=1)
    assert logit.target == "logit" and logit.groups[1].output_row is None


def test_analyze_passes_the_margin_target_through():
    from probe.experiment.workflows import analyze

    result = analyze(tiny_classifier(), X, circuit=True, circuit_target="margin")
    doc = result.to_dict()["circuit"]
    margin, _ = hand_margin(hand_logits(X.double().numpy()))
    assert doc["target"] == "margin" and doc["groups"]["negative"]["samples"] == int((margin < 0).sum())
