"""The ensemble beyond the ReLU family: smooth variants, RReLU, norms, dropout and cross-entropy.

Every case trains an ensemble and checks that one member's training equals a
plain ``nn.Sequential`` + ``torch.optim`` loop trained alone from the same
initial weights and data order. Randomness is matched by construction: the
reference's RReLU slopes and dropout masks come from the same per-seed
generators (:func:`noise_generator`) through the same draw functions
(:func:`rrelu_slopes`, :func:`dropout_mask`), layer by layer in forward order.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from probe.core.data import Dataset
from probe.core.variants import parse_variant
from probe.engines.analysis import diagnose
from probe.engines.training import Ensemble, TrainConfig, epoch_order, init_params, train
from probe.engines.training.diagnose import member_diagnostics
from probe.engines.training.layers import (DROPOUT_STREAM, RRELU_STREAM, dropout_mask, noise_generator,
                                           rrelu_slopes)

WIDTHS = [3, 8, 6, 1]
NEW = ["elu", "selu", "celu", "gelu", "gelu:tanh", "silu", "mish", "softplus", "rrelu", "tanh"]


def toy_data(n: int = 40, f: int = 3, classes: int = 0):
    g = torch.Generator().manual_seed(7)
    X = torch.randn(n, f, generator=g)
    y = (X[:, :1] - X[:, 1:2] ** 2 + 0.3).float()
    if classes:
        y = torch.bucketize(y, torch.quantile(y, torch.linspace(0, 1, classes + 1)[1:-1])).float()
    return X, y


class SeededRReLU(nn.Module):
    """torch's RReLU law, its training slopes drawn from the member's generator."""

    def __init__(self, gen, lower, upper):
        super().__init__()
        self.gen, self.lower, self.upper = gen, lower, upper

    def forward(self, z):
        if not self.training:
            return F.rrelu(z, self.lower, self.upper, training=False)
        return torch.where(z >= 0, z, z * rrelu_slopes(self.gen, tuple(z.shape), self.lower, self.upper))


class SeededDropout(nn.Module):
    def __init__(self, gen, p):
        super().__init__()
        self.gen, self.p = gen, p

    def forward(self, h):
        return h * dropout_mask(self.gen, tuple(h.shape), self.p) if self.training else h


def reference(widths, variant, seed, norm="none", dropout=0.0) -> nn.Sequential:
    rgen, dgen = noise_generator(seed, RRELU_STREAM), noise_generator(seed, DROPOUT_STREAM)
    layers = []
    for i, (w, b) in enumerate(init_params(widths, "default", seed)):
        lin = nn.Linear(widths[i], widths[i + 1])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layers.append(lin)
        if i < len(widths) - 2:
            if norm == "batch":
                layers.append(nn.BatchNorm1d(widths[i + 1]))
            elif norm == "layer":
                layers.append(nn.LayerNorm(widths[i + 1]))
            params = dict(variant.params)
            layers.append(SeededRReLU(rgen, params["lower"], params["upper"]) if variant.kind == "rrelu"
                          else variant.make_module())
            if dropout:
                layers.append(SeededDropout(dgen, dropout))
    return nn.Sequential(*layers)


def plain_run(widths, variant, seed, X, y, config, norm="none", dropout=0.0):
    """Train one network alone; its step losses (and accuracies) and the trained model."""
    model = reference(widths, variant, seed, norm, dropout)
    opt = (torch.optim.Adam(model.parameters(), lr=config.lr) if config.optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum))
    losses, accs = [], []
    for epoch in range(config.epochs):
        order = epoch_order(seed, epoch, X.shape[0])
        xe, ye = X[order], y[order]
        for lo in range(0, X.shape[0], config.batch_size):
            out = model.train()(xe[lo:lo + config.batch_size])
            yb = ye[lo:lo + config.batch_size]
            if config.loss == "cross_entropy":
                labels = yb[:, 0].long()
                loss = F.cross_entropy(out, labels)
                accs.append(float((out.argmax(1) == labels).float().mean()))
            else:
                loss = F.mse_loss(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    return torch.tensor(losses), torch.tensor(accs), model.eval()


def check_members(ens, X, y, config, widths=WIDTHS, norm="none", dropout=0.0):
    out = train(ens, X, y, config)
    for m in range(ens.members):
        variant, seed = ens.member(m)
        losses, accs, model = plain_run(widths, variant, seed, X, y, config, norm, dropout)
        torch.testing.assert_close(out.step_losses[:, m], losses, rtol=2e-4, atol=1e-6)
        if config.loss == "cross_entropy":
            torch.testing.assert_close(out.step_accuracy[:, m], accs)
        with torch.no_grad():  # eval mode: running BatchNorm statistics, no dropout, mean RReLU slope
            torch.testing.assert_close(ens.forward(X)[0][m], model(X), rtol=2e-4, atol=2e-5)
            torch.testing.assert_close(ens.to_mlp(m)(X), model(X), rtol=2e-4, atol=2e-5)
    return out


@pytest.mark.parametrize("spec", NEW)
def test_new_variant_member_matches_plain_pytorch(spec):
    X, y = toy_data()
    ens = Ensemble(WIDTHS, [parse_variant("relu"), parse_variant(spec)], [0, 1], "default")
    assert len(ens.groups) == 2 and ens.groups[1].slice == slice(2, 4)
    check_members(ens, X, y, TrainConfig("adam", 0.01, 16, 3))


@pytest.mark.parametrize("norm,dropout", [("batch", 0.0), ("layer", 0.0), ("none", 0.2), ("batch", 0.3)])
def test_norm_and_dropout_members_match_plain_pytorch(norm, dropout):
    X, y = toy_data()
    variants = [parse_variant(s) for s in ("relu", "prelu", "gelu", "rrelu")]
    ens = Ensemble(WIDTHS, variants, [0, 1], "default", norm=norm, dropout=dropout)
    # SGD under BatchNorm: the Linear bias has a ~0 gradient there, which Adam scales up to
    # lr-sized steps of rounding noise; the running mean then follows that noise
    config = TrainConfig("sgd", 0.05, 16, 3, momentum=0.9) if norm == "batch" else TrainConfig("adam", 0.01, 16, 3)
    check_members(ens, X, y, config, norm=norm, dropout=dropout)
    if dropout:  # the same seed draws the same masks whatever the variant
        assert len(ens.dropout_gens) == 2


def test_cross_entropy_members_match_plain_pytorch():
    X, y = toy_data(classes=3)
    widths = [3, 8, 6, 3]
    ens = Ensemble(widths, [parse_variant("leaky"), parse_variant("elu")], [0, 1], "default", norm="batch")
    out = check_members(ens, X, y, TrainConfig("sgd", 0.05, 16, 3, momentum=0.9, loss="cross_entropy"),
                        widths, "batch")
    assert out.step_accuracy.shape == out.step_losses.shape


def test_fast_path_only_for_the_relu_family():
    fam = Ensemble(WIDTHS, [parse_variant(s) for s in ("relu", "leaky", "prelu")], [0], "default")
    assert len(fam.groups) == 1 and fam.groups[0].variant is None
    mixed = Ensemble(WIDTHS, [parse_variant(s) for s in ("relu", "rrelu")], [0], "default")
    assert [g.variant.spec for g in mixed.groups] == ["relu", "rrelu"]


def _assert_same(got: dict, ref: dict) -> None:
    assert got.keys() == ref.keys()
    for lay_got, lay_ref in zip(got["layers"], ref["layers"]):
        assert lay_got.keys() == lay_ref.keys()
        for k, v in lay_ref.items():
            if isinstance(v, float):
                assert lay_got[k] == pytest.approx(v, rel=1e-3, abs=1e-6), k
            elif isinstance(v, dict):
                for kk, vv in v.items():
                    assert lay_got[k][kk] == (pytest.approx(vv, rel=1e-3, abs=1e-6)
                                              if isinstance(vv, float) else vv), (k, kk)
            else:
                assert lay_got[k] == v, k


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_member_diagnostics_match_analyze_for_every_variant(norm):
    X, y = toy_data()
    variants = [parse_variant(s) for s in ["relu", "leaky", "prelu", *NEW]]
    ens = Ensemble(WIDTHS, variants, [0], "default", norm=norm, dropout=0.1)
    train(ens, X, y, TrainConfig("adam", 0.01, 16, 2))
    diags = member_diagnostics(ens, X, y, batch_size=16)
    for m, d in enumerate(diags):
        ref = diagnose(ens.to_mlp(m), Dataset(X, y, "toy"), batch_size=16, loss="mse").to_dict()
        got = d.to_dict()
        assert d.layers[0].activity.local_slope_neg is not None
        _assert_same(got, ref)
