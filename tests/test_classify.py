"""Classifiers: loss choice, integer labels, the sanity line, warnings and the logit-margin routes.

Every number is checked against a hand computation or an independent autograd
recomputation on the same model and batch (no hooks).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from probe import diagnose, save_checkpoint
from probe.cli.app import app
from probe.core.checks import as_dataset
from probe.core.data import Dataset, load_data
from probe.core.errors import DataError
from probe.engines.analysis import diagnose_with_loss
from probe.experiment.workflows import analyze, analyze_loaded
from probe.models import MLP
from probe.models.coerce import as_model
from tests.conftest import set_linear


@pytest.fixture
def hand_classifier() -> MLP:
    """2 -> 2 (identity, leaky 0.5) -> 3 classes; W = [[1, 0], [0, 1], [-1, -1]], b = [0, 0.5, -1]."""
    mlp = MLP.build([2, 2, 3], "leaky:0.5")
    set_linear(mlp[0], [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    set_linear(mlp[2], [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], [0.0, 0.5, -1.0])
    return mlp


HAND_X = torch.tensor([[2.0, 1.0], [1.0, 3.0], [-2.0, -4.0]])
HAND_Y = torch.tensor([0, 1, 2])


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_margin_routes_by_hand(hand_classifier: MLP, batch_size: int) -> None:
    # h = (2, 1), (1, 3), (-1, -2). Logits: (2, 1.5, -4), (1, 3.5, -5), (-1, -1.5, 2).
    # Class 0: s1 predicted, runner-up 1: row (1, -1), c = (2, -1), bias -0.5, margin 0.5.
    #          s2 runner-up 1: row (1, -1), c = (1, -3), bias -0.5, margin -2.5 (negative).
    #          s3 runner-up 2: row (2, 1), c = (-2, -2) (W>0, h<0), bias +1, margin -3 (negative).
    sign = diagnose(hand_classifier, HAND_X, HAND_Y, batch_size=batch_size).sign
    assert [s.target for s in sign] == ["margin"] * 3
    a, n = sign[0].all_samples, sign[0].negative_predictions
    assert (a.pos_pos, a.neg_pos, a.pos_neg, a.neg_neg) == pytest.approx((3.0, 4.0, 4.0, 0.0))
    assert (a.bias_pos, a.bias_neg) == pytest.approx((1.0, 1.0))
    assert a.net_mass == pytest.approx(1 + 2 + 4)  # |c summed| per sample, bias left out
    assert a.cancellation == pytest.approx(11 / 7)
    assert n.samples == 2
    assert (n.pos_pos, n.neg_pos, n.pos_neg, n.neg_neg) == pytest.approx((1.0, 3.0, 4.0, 0.0))
    assert (n.bias_pos, n.bias_neg) == pytest.approx((1.0, 0.5))
    assert n.activation_route_share == pytest.approx(4 / 7)
    # Class 2: s1 runner-up 0, row (-2, -1): neg_pos 5; s2 runner-up 1, row (-1, -2): neg_pos 7;
    # s3 predicted, runner-up 0, row (-2, -1) on h = (-1, -2): neg_neg 4. Biases -1, -1.5, -1.
    c = sign[2].all_samples
    assert (c.pos_pos, c.neg_pos, c.pos_neg, c.neg_neg) == pytest.approx((0.0, 12.0, 0.0, 4.0))
    assert (c.bias_pos, c.bias_neg) == pytest.approx((0.0, 3.5))
    assert sign[2].negative_predictions.samples == 2
    assert sign[2].negative_predictions.neg_pos == pytest.approx(12.0)
    assert sign[1].negative_predictions.samples == 2


def _reference_margin_routes(mlp: MLP, X: torch.Tensor) -> list[tuple[list[float], list[float]]]:
    """Per sample and class: the margin row W[k] - W[j*], contributions summed into the masses."""
    with torch.no_grad():
        h = mlp[1](mlp[0](X)).double()
        W, b = mlp[2].weight.double(), mlp[2].bias.double()
        f = h @ W.T + b
    out = []
    for k in range(W.shape[0]):
        whole, neg = [0.0] * 7, [0.0] * 7
        for i in range(X.shape[0]):
            others = [j for j in range(W.shape[0]) if j != k]
            j = max(others, key=lambda o: float(f[i, o]))
            row, bias = W[k] - W[j], float(b[k] - b[j])
            cont = row * h[i]
            m = [float(cont[(row > 0) & (h[i] > 0)].abs().sum()), float(cont[(row < 0) & (h[i] > 0)].abs().sum()),
                 float(cont[(row > 0) & (h[i] < 0)].abs().sum()), float(cont[(row < 0) & (h[i] < 0)].abs().sum()),
                 abs(float(cont.sum())), max(bias, 0.0), max(-bias, 0.0)]
            whole = [x + y for x, y in zip(whole, m)]
            if float(f[i, k] - f[i, j]) < 0:
                neg = [x + y for x, y in zip(neg, m)]
        out.append((whole, neg))
    return out


def test_margin_routes_match_a_per_sample_recomputation() -> None:
    torch.manual_seed(3)
    mlp = MLP.build([4, 9, 5], "leaky:0.2")
    X = torch.randn(157, 4)
    y = torch.randint(0, 5, (157,))
    sign = diagnose(mlp, X, y, batch_size=40).sign
    for s, (whole, neg) in zip(sign, _reference_margin_routes(mlp, X)):
        for masses, ref in ((s.all_samples, whole), (s.negative_predictions, neg)):
            got = [masses.pos_pos, masses.neg_pos, masses.pos_neg, masses.neg_neg, masses.net_mass,
                   masses.bias_pos, masses.bias_neg]
            assert got == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_ties_with_the_top_class_are_not_negative_margins() -> None:
    # Integer weights, no bias: h = (1, 1) gives logits (1, 1, -2), a tie between classes 0 and 1.
    mlp = MLP.build([2, 2, 3], "relu")
    set_linear(mlp[0], [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    set_linear(mlp[2], [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], [0.0, 0.0, 0.0])
    X = torch.tensor([[1.0, 1.0], [2.0, 2.0], [1.0, 3.0], [3.0, 1.0], [-1.0, -1.0]])
    sign = diagnose(mlp, X, torch.tensor([0, 1, 1, 0, 2]), batch_size=2).sign
    # class 0: margins 0, 0, -2, 2, 0 (h = 0 ties everything): one negative; class 1 likewise
    assert [s.negative_predictions.samples for s in sign] == [1, 1, 4]
    for s, (whole, neg) in zip(sign, _reference_margin_routes(mlp, X)):
        n = s.negative_predictions
        assert [n.pos_pos, n.neg_pos, n.pos_neg, n.neg_neg, n.net_mass] == pytest.approx(neg[:5])
        a = s.all_samples
        assert [a.pos_pos, a.neg_pos, a.pos_neg, a.neg_neg, a.net_mass] == pytest.approx(whole[:5])


def test_two_class_margins_are_opposite() -> None:
    torch.manual_seed(4)
    mlp = MLP.build([3, 6, 2], "relu")
    X = torch.randn(64, 3)
    sign = diagnose(mlp, X, torch.randint(0, 2, (64,))).sign
    a0, a1 = sign[0].all_samples, sign[1].all_samples
    # m_1 = -m_0: the same contributions with the roles of the signs of W swapped
    assert (a0.pos_pos, a0.neg_pos) == pytest.approx((a1.neg_pos, a1.pos_pos))
    assert sign[0].negative_predictions.samples + sign[1].negative_predictions.samples <= 64


def test_cross_entropy_gradients_match_autograd() -> None:
    torch.manual_seed(5)
    mlp = MLP.build([4, 10, 3], "leaky:0.1")
    X, y = torch.randn(90, 4), torch.randint(0, 3, (90,))
    lay = diagnose(mlp, X, y, batch_size=32).layers[0].gradient
    z = mlp[0](X).detach().requires_grad_(True)
    F.cross_entropy(mlp[2](mlp[1](z)), y).backward()
    g, neg = z.grad, z.detach() <= 0
    assert lay.grad_ratio == pytest.approx(float(g[neg].abs().mean() / g[~neg].abs().mean()), rel=1e-5)
    g_neg = X.T @ (g * neg)
    g_pos = X.T @ (g * ~neg)
    assert lay.weight_grad_norm_neg == pytest.approx(float(g_neg.norm()), rel=1e-4)
    assert lay.weight_grad_norm_pos == pytest.approx(float(g_pos.norm()), rel=1e-4)


def test_sanity_line_values_against_a_direct_computation() -> None:
    torch.manual_seed(6)
    mlp = MLP.build([4, 8, 3], "relu")
    X, y = torch.randn(101, 4), torch.randint(0, 3, (101,))
    _, fit = diagnose_with_loss(mlp, X, y.numpy(), batch_size=17)
    with torch.no_grad():
        out = mlp(X)
    assert fit.name == "cross_entropy" and fit.inferred and fit.samples == 101
    assert fit.value == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-5)
    assert fit.accuracy == pytest.approx(float((out.argmax(1) == y).float().mean()))
    t = torch.randn(101, 3)
    _, mse = diagnose_with_loss(mlp, X, t, batch_size=17)
    assert mse.name == "mse" and mse.accuracy is None
    assert mse.value == pytest.approx(float(((out - t) ** 2).mean()), rel=1e-5)
    _, none = diagnose_with_loss(mlp, X)
    assert none.name == "sum" and none.value is None and none.accuracy is None


def test_bce_path() -> None:
    torch.manual_seed(7)
    mlp = MLP.build([4, 8, 1], "leaky:0.1")
    X, y = torch.randn(80, 4), torch.randint(0, 2, (80,))
    diag, fit = diagnose_with_loss(mlp, X, y, batch_size=30)
    with torch.no_grad():
        out = mlp(X)[:, 0]
    assert fit.name == "bce" and fit.inferred
    assert fit.value == pytest.approx(float(F.binary_cross_entropy_with_logits(out, y.float())), rel=1e-5)
    assert fit.accuracy == pytest.approx(float(((out > 0) == (y == 1)).float().mean()))
    assert [s.target for s in diag.sign] == ["logit"]
    z = mlp[0](X).detach().requires_grad_(True)
    F.binary_cross_entropy_with_logits(mlp[2](mlp[1](z))[:, 0], y.float()).backward()
    neg = z.detach() <= 0
    ratio = float(z.grad[neg].abs().mean() / z.grad[~neg].abs().mean())
    assert diag.layers[0].gradient.grad_ratio == pytest.approx(ratio, rel=1e-5)


@pytest.mark.parametrize("y, outputs, name", [
    (np.array([0, 2, 1, 2]), 3, "cross_entropy"),
    (torch.tensor([0, 1, 1, 0]), 2, "cross_entropy"),
    (torch.tensor([0, 1, 1, 0]), 1, "bce"),
    (np.array([True, False, True, True]), 1, "bce"),
    (np.array([0, 5, 1, 2]), 1, "mse"),           # integer targets, one output: counts, not labels
    (np.array([0.0, 1.0, 1.0, 0.0]), 1, "mse"),   # float targets behave as before
    (np.eye(3)[[0, 1, 2, 0]], 3, "mse"),          # one-hot floats: mse unless told
])
def test_loss_inference(y, outputs: int, name: str) -> None:
    mlp = MLP.build([2, 4, outputs], "relu")
    result = analyze(mlp, torch.randn(4, 2), y)
    assert result.loss == name
    doc = result.to_dict()
    assert doc["loss"]["name"] == name and doc["loss"]["inferred"] is True
    assert isinstance(doc["warnings"], list)
    one_hot = outputs > 1 and y.ndim == 2  # float one-hot rows under mse: warned too
    assert bool(doc["warnings"]) == (name in ("cross_entropy", "bce") or name == "mse" and (outputs == 1 or one_hot))
    if one_hot:
        assert "one-hot" in doc["warnings"][0]


def test_explicit_loss_is_recorded_as_not_inferred() -> None:
    mlp = MLP.build([2, 4, 3], "relu")
    result = analyze(mlp, torch.randn(6, 2), np.array([0.0, 1, 2, 2, 1, 0]), loss="cross_entropy")
    assert result.fit.name == "cross_entropy" and not result.fit.inferred
    assert result.warnings == ()
    assert [s.target for s in result.diagnostics.sign] == ["margin"] * 3


@pytest.mark.parametrize("y, loss, needle", [
    (np.array([0, 3, 1]), None, "out of range"),
    (np.array([0, -1, 1]), None, "out of range"),
    (np.array([0.0, 1.5, 1.0]), "cross_entropy", "out of range"),
    (np.array([0, 1, 2]), "mse", "wrong width"),
    (np.array([0, 1, 2]), "bogus", "Unknown loss"),
])
def test_bad_labels_are_refused_with_the_fix(y, loss, needle: str) -> None:
    mlp = MLP.build([2, 4, 3], "relu")
    with pytest.raises(DataError, match=needle) as info:
        analyze(mlp, torch.randn(3, 2), y, loss=loss)
    assert "Expected" in str(info.value) and "Fix:" in str(info.value)


def test_integer_labels_are_recorded_by_every_data_path(tmp_path) -> None:
    assert as_dataset(np.ones((3, 2)), np.array([0, 1, 2])).labels
    assert as_dataset(np.ones((3, 2)), torch.tensor([0, 1, 2])).labels
    assert not as_dataset(np.ones((3, 2)), np.array([0.0, 1.0, 2.0])).labels
    np.savez(tmp_path / "d.npz", X=np.ones((3, 2)), y=np.array([0, 1, 2]))
    assert load_data(tmp_path / "d.npz").labels
    (tmp_path / "i.csv").write_text("a,b,label\n1,2,0\n3,4,2\n5,6,1\n")
    (tmp_path / "f.csv").write_text("a,b,label\n1,2,0.0\n3,4,2.0\n5,6,1.0\n")
    data = load_data(tmp_path / "i.csv", "label")
    assert data.labels and data.y[:, 0].tolist() == [0.0, 2.0, 1.0] and data.X.shape == (3, 2)
    assert not load_data(tmp_path / "f.csv", "label").labels


def test_loader_warnings_come_first_in_the_result() -> None:
    loaded = as_model(MLP.build([2, 4, 3], "relu"))
    object.__setattr__(loaded, "warnings", ("layer order assumed",))
    data = Dataset(torch.randn(5, 2), torch.tensor([[0.0], [1], [2], [1], [0]]), "t", labels=True)
    result = analyze_loaded(loaded, data)
    assert result.warnings[0] == "layer order assumed" and len(result.warnings) == 2
    assert result.to_dict()["warnings"] == list(result.warnings)


@pytest.fixture
def iris_files(tmp_path):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    torch.manual_seed(0)
    mlp = MLP.build([4, 16, 3], "leaky:0.1")
    opt = torch.optim.Adam(mlp.parameters(), 0.05)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(mlp(Xt), yt).backward()
        opt.step()
    save_checkpoint(mlp, tmp_path / "model.pt")
    rows = "\n".join(",".join(map(str, row)) + f",{label}" for row, label in zip(X, y))
    (tmp_path / "iris.csv").write_text("sl,sw,pl,pw,label\n" + rows + "\n")
    with torch.no_grad():
        out = mlp(Xt)
    return tmp_path, float(F.cross_entropy(out, yt)), float((out.argmax(1) == yt).float().mean())


def test_cli_analyze_iris_classifier(iris_files) -> None:
    path, ce, acc = iris_files
    res = CliRunner().invoke(app, ["analyze", str(path / "model.pt"), "--data", str(path / "iris.csv"),
                                   "--target", "label", "--json", "--report", str(path / "r.md")])
    assert res.exit_code == 0, res.output
    assert "- **warning:** The loss was inferred as cross_entropy" in (path / "r.md").read_text()
    assert "loss (cross_entropy, inferred) of the model as analysed" in (path / "r.md").read_text()
    doc = json.loads(res.stdout)
    assert doc["loss"]["name"] == "cross_entropy" and doc["loss"]["inferred"] is True
    assert doc["loss"]["value"] == pytest.approx(ce, rel=1e-5)
    assert doc["loss"]["accuracy"] == pytest.approx(acc) and doc["loss"]["samples"] == 150
    assert isinstance(doc["warnings"], list) and any("cross_entropy" in w for w in doc["warnings"])
    assert "warning:" in res.stderr
    assert [s["target"] for s in doc["sign"]] == ["margin"] * 3


def test_cli_sanity_line_in_the_terminal_and_the_report(iris_files) -> None:
    path, ce, acc = iris_files
    report = path / "r.md"
    res = CliRunner().invoke(app, ["analyze", str(path / "model.pt"), "--data", str(path / "iris.csv"),
                                   "--target", "label", "--loss", "cross_entropy", "--no-circuit",
                                   "--report", str(report)])
    assert res.exit_code == 0, res.output
    line = f"loss (cross_entropy) of the model as analysed: {ce:.4g} on 150 samples, accuracy {acc:.3f}"
    assert line in res.stdout.replace("\n", " ")
    assert line in report.read_text()
    bad = CliRunner().invoke(app, ["analyze", str(path / "model.pt"), "--data", str(path / "iris.csv"),
                                   "--target", "label", "--loss", "mse"])
    assert bad.exit_code == 2 and "wrong width" in bad.stderr


def test_no_targets_sanity_line(tmp_path, random_mlp: MLP) -> None:
    save_checkpoint(random_mlp, tmp_path / "m.pt")
    np.savez(tmp_path / "d.npz", X=np.random.default_rng(0).normal(size=(20, 5)))
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "m.pt"), "--data", str(tmp_path / "d.npz"),
                                   "--no-circuit"])
    assert res.exit_code == 0, res.output
    assert "there were no targets" in res.stdout
    doc = json.loads(CliRunner().invoke(app, ["analyze", str(tmp_path / "m.pt"), "--data",
                                              str(tmp_path / "d.npz"), "--no-circuit", "--json"]).stdout)
    assert doc["loss"]["value"] is None and doc["loss"]["name"] == "sum" and doc["warnings"] == []
