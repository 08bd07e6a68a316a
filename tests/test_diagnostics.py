"""Each diagnostic against an answer worked out by hand on a tiny network."""

from __future__ import annotations

import math

import pytest
import torch

from probe import diagnose
from probe.core.data import Dataset
from probe.models import MLP
from tests.conftest import set_linear


def test_dead_units_forced_by_zero_weights_and_negative_bias() -> None:
    # Unit 0: weight 0, bias -1 -> z = -1 always: dead.
    # Unit 1: z = x: active on x > 0, i.e. 2 of 4 samples.
    # Unit 2: z = x - 1.5: active only for x = 2: 1 of 4 samples (25%).
    mlp = MLP.build([1, 3, 1], "relu")
    set_linear(mlp[0], [[0.0], [1.0], [1.0]], [-1.0, 0.0, -1.5])
    set_linear(mlp[2], [[1.0, 1.0, 1.0]], [0.0])
    X = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
    lay = diagnose(mlp, Dataset(X, None, "t"), near_dead_threshold=0.3).layers[0]
    a = lay.activity
    assert a.dead_units == 1
    assert a.dead_rate == pytest.approx(1 / 3)
    assert a.near_dead_units == 2  # dead unit (0%) and unit 2 (25% < 30%)
    assert a.active_fraction_quantiles["max"] == pytest.approx(0.5)
    assert a.active_fraction_mean == pytest.approx((0 + 0.5 + 0.25) / 3)
    # |h| per unit: 0, mean(0,0,1,2)=0.75, mean(0,0,0,0.5)=0.125; layer mean 0.875/3.
    # Normalised: 0, 2.571, 0.4286 -> only unit 0 is dormant at tau 0.025.
    assert a.dormant_units == 1
    assert a.active_fraction_histogram[0] == 1 and a.active_fraction_histogram[2] == 1
    assert a.active_fraction_histogram[5] == 1


def test_collapsed_when_every_unit_of_a_layer_is_dead() -> None:
    mlp = MLP.build([1, 2, 2, 1], "relu")
    set_linear(mlp[0], [[1.0], [1.0]], [0.0, 0.0])
    set_linear(mlp[2], [[0.0, 0.0], [-1.0, -1.0]], [-0.1, 0.0])
    set_linear(mlp[4], [[1.0, 1.0]], [0.0])
    diag = diagnose(mlp, Dataset(torch.tensor([[1.0], [2.0], [-3.0]]), None, "t"))
    assert diag.layers[1].activity.dead_units == 2
    assert diag.collapsed
    assert not diagnose(MLP.build([1, 2, 1], "relu"), Dataset(torch.randn(50, 1), None, "t")).collapsed


def test_grad_ratio_share_and_magnitude_on_two_unit_leaky(two_unit_leaky: MLP) -> None:
    # Loss = sum of outputs. z = [x, -x]; for x > 0 unit 0 is positive, unit 1 negative.
    # g = dL/dz = 1 on positive entries and a = 0.5 on negative ones -> grad_ratio = 0.5.
    # G_neg = sum_i x_i * 0.5 for unit 1 (x in {1, 2}: 1.5), G_pos = sum_i x_i = 3 for unit 0.
    # share = 1.5 / (1.5 + 3) = 1/3. |h| neg mean = 0.5 * 1.5, pos mean = 1.5 -> ratio 0.5.
    X = torch.tensor([[1.0], [2.0]])
    lay = diagnose(two_unit_leaky, Dataset(X, None, "t")).layers[0]
    g, a = lay.gradient, lay.activity
    assert lay.negative_slope == pytest.approx(0.5)
    assert g.grad_ratio == pytest.approx(0.5)
    assert g.upstream_ratio == pytest.approx(1.0)
    assert g.neg_grad_share == pytest.approx(1 / 3)
    assert g.weight_grad_norm_neg == pytest.approx(1.5)
    assert g.weight_grad_norm_pos == pytest.approx(3.0)
    assert a.act_neg_mean_abs == pytest.approx(0.75)
    assert a.act_pos_mean_abs == pytest.approx(1.5)
    assert a.act_ratio == pytest.approx(0.5)
    assert a.neg_region_fraction == pytest.approx(0.5)


def test_mse_gradient_is_the_full_set_gradient(two_unit_leaky: MLP) -> None:
    # y_hat = h1 + h2 = x + 0.5 * (-x)... for x > 0: x - 0.5x = 0.5x. Targets 0:
    # L = mean_i (0.5 x_i)^2, dL/dyhat_i = 2 * 0.5 x_i / N = x_i / N.
    # g unit0 = x_i / N, g unit1 = 0.5 * x_i / N -> ratio 0.5 whatever N; G norms scale 1/N.
    X = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.zeros(3, 1)
    for bs in (1, 2, 3):
        g = diagnose(two_unit_leaky, Dataset(X, y, "t"), batch_size=bs).layers[0].gradient
        assert g.grad_ratio == pytest.approx(0.5)
        # G_pos = sum_i x_i * x_i / N = 14 / 3; G_neg = 0.5 * 14 / 3.
        assert g.weight_grad_norm_pos == pytest.approx(14 / 3)
        assert g.weight_grad_norm_neg == pytest.approx(7 / 3)


def test_relu_negative_gradient_is_exactly_zero() -> None:
    torch.manual_seed(0)
    mlp = MLP.build([3, 8, 1], "relu")
    g = diagnose(mlp, Dataset(torch.randn(200, 3), None, "t")).layers[0].gradient
    assert g.grad_ratio == 0.0
    assert g.neg_grad_share == 0.0
    assert g.upstream_ratio is None


def test_sign_routes_on_two_unit_final_layer() -> None:
    # Hidden leaky(0.5): z = [x, -x] -> for x = 2: h = [2, -1]; for x = -4: h = [-2, 4].
    # Output W = [[2, -1]], b = 0.
    # x = 2: contributions 2*2 = +4 (pos_pos), -1*-1 = +1 (neg_neg) -> y = 5.
    # x = -4: 2*-2 = -4 (pos_neg), -1*4 = -4 (neg_pos) -> y = -8 (a negative prediction).
    mlp = MLP.build([1, 2, 1], "leaky:0.5")
    set_linear(mlp[0], [[1.0], [-1.0]], [0.0, 0.0])
    set_linear(mlp[2], [[2.0, -1.0]], [0.0])
    X = torch.tensor([[2.0], [-4.0]])
    s = diagnose(mlp, Dataset(X, None, "t")).sign[0]
    m = s.all_samples
    assert (m.pos_pos, m.neg_pos, m.pos_neg, m.neg_neg) == pytest.approx((4.0, 4.0, 4.0, 1.0))
    assert m.activation_route_share == pytest.approx(0.5)
    # cancellation: total |c| = 13, sum_i |y_i| = 5 + 8 = 13 -> 1 (no sample mixes signs... x=2 is all +, x=-4 all -)
    assert m.cancellation == pytest.approx(1.0)
    n = s.negative_predictions
    assert n.samples == 1
    assert (n.pos_pos, n.neg_pos, n.pos_neg, n.neg_neg) == pytest.approx((0.0, 4.0, 4.0, 0.0))
    assert n.activation_route_share == pytest.approx(0.5)


def test_sign_routes_sum_a_small_negative_part_without_cancellation() -> None:
    # A leaky(0.01) layer's negative part is about 1% of its positive part. Summed as
    # sum max(h, 0) - sum h in float32, it cancels (neg_neg off by 2.4e-6 relative here);
    # summed as min(h, 0) itself, it agrees with float64 to float32 rounding.
    from probe.diagnostics.sign import SignRoutes

    gen = torch.Generator().manual_seed(3)
    z = 10 * torch.randn(1024, 64, generator=gen) + 3
    h = torch.nn.functional.leaky_relu(z, 0.01)
    w, b = torch.randn(2, 64, generator=gen), torch.tensor([0.5, -0.5])
    routes = SignRoutes(w[None], b[None])
    routes.update(h[None])
    h64, w64 = h.double(), w.double()
    neg_pred = (h64 @ w64.T + b.double()) < 0
    for k, result in enumerate(routes.result()):
        for masses, rows in ((result.all_samples, torch.ones(len(h), dtype=torch.bool)),
                             (result.negative_predictions, neg_pred[:, k])):
            c = w64[k][None, :] * h64[rows]
            pos_w, neg_h = w64[k][None, :] > 0, h64[rows] < 0
            assert masses.pos_neg == pytest.approx(float(c[pos_w & neg_h].abs().sum()), rel=1e-6)
            assert masses.neg_neg == pytest.approx(float(c[~pos_w & neg_h].abs().sum()), rel=1e-6)


def test_cancellation_counts_opposing_contributions() -> None:
    # ReLU hidden z = [x, x]; W = [[3, -1]] -> y = 2x for x > 0; masses 3x and x cancel:
    # total |c| = 4x, |y| = 2x -> cancellation 2. activation route: ReLU has none -> 0.
    mlp = MLP.build([1, 2, 1], "relu")
    set_linear(mlp[0], [[1.0], [1.0]], [0.0, 0.0])
    set_linear(mlp[2], [[3.0, -1.0]], [0.0])
    s = diagnose(mlp, Dataset(torch.tensor([[1.0], [5.0]]), None, "t")).sign[0].all_samples
    assert s.cancellation == pytest.approx(2.0)
    assert s.activation_route_share == 0.0
    assert (s.pos_neg, s.neg_neg) == (0.0, 0.0)


def test_streaming_matches_one_big_batch(random_mlp: MLP) -> None:
    X = torch.randn(301, 5)
    y = torch.randn(301, 2)
    whole = diagnose(random_mlp, Dataset(X, y, "t"), batch_size=301).to_dict()
    streamed = diagnose(random_mlp, Dataset(X, y, "t"), batch_size=17).to_dict()
    flat_w, flat_s = _flatten(whole), _flatten(streamed)
    assert flat_w.keys() == flat_s.keys()
    for key, value in flat_w.items():
        if isinstance(value, float):
            assert math.isclose(value, flat_s[key], rel_tol=1e-4, abs_tol=1e-9), key
        else:
            assert value == flat_s[key], key


def test_gradients_match_autograd_reference(random_mlp: MLP) -> None:
    """grad_ratio and neg_grad_share recomputed from autograd on explicit z tensors."""
    X, y = torch.randn(64, 5), torch.randn(64, 2)
    diag = diagnose(random_mlp, Dataset(X, y, "t"), batch_size=10)
    lin1, lin2, out = random_mlp.linears
    z1 = lin1(X)
    h1 = torch.nn.functional.leaky_relu(z1, 0.1)
    z2 = lin2(h1)
    h2 = torch.nn.functional.leaky_relu(z2, 0.1)
    loss = ((out(h2) - y) ** 2).mean(dim=1).mean()
    g1, g2 = torch.autograd.grad(loss, [z1, z2])
    z1, z2, h1 = z1.detach(), z2.detach(), h1.detach()
    for lay, x, z, g in ((diag.layers[0], X, z1, g1), (diag.layers[1], h1, z2, g2)):
        neg = z <= 0
        ratio = g.abs()[neg].mean() / g.abs()[~neg].mean()
        gn = (x.T @ (g * neg)).norm()
        gp = (x.T @ (g * ~neg)).norm()
        assert lay.gradient.grad_ratio == pytest.approx(float(ratio), rel=1e-4)
        assert lay.gradient.neg_grad_share == pytest.approx(float(gn / (gn + gp)), rel=1e-4)
        # the fraction of the full (weights and bias) gradient's squared norm from the negative region
        full_neg = torch.cat([x.T @ (g * neg), (g * neg).sum(0, keepdim=True)])
        full = torch.cat([x.T @ g, g.sum(0, keepdim=True)])
        assert lay.gradient.neg_grad_fraction == pytest.approx(float((full_neg * full).sum() / (full * full).sum()),
                                                               rel=1e-4, abs=1e-7)


def test_verdict_uses_the_geometric_mean_of_the_ratios(random_mlp: MLP) -> None:
    import math

    from probe.diagnostics.verdict import verdict

    diag = diagnose(random_mlp, Dataset(torch.randn(64, 5), torch.randn(64, 2), "t"))
    ratios = [lay.gradient.grad_ratio for lay in diag.layers]
    geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
    assert diag.layer_geomean("grad_ratio") == pytest.approx(geo)
    assert f"{1 / geo:.0f}x smaller" in verdict(diag) and "geometric mean" in verdict(diag)


def _flatten(d: object, prefix: str = "") -> dict:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    if isinstance(d, list):
        out = {}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: d}


def test_bias_alone_builds_the_negative_predictions() -> None:
    """1 -> 2 -> 1 ReLU, positive output weights, output bias -5: every negative prediction comes from the bias."""
    import probe
    from tests.conftest import set_linear

    mlp = MLP.build([1, 2, 1], "relu")
    set_linear(mlp[0], [[1.0], [-1.0]], [0.0, 0.0])
    set_linear(mlp[2], [[1.0, 1.0]], [-5.0])  # y = |x| - 5
    X = torch.tensor([[1.0], [-2.0], [3.0], [8.0]])  # y = -4, -3, -2, +3
    sign = probe.analyze(mlp, X).diagnostics.sign[0]
    neg = sign.negative_predictions
    assert neg.samples == 3 and neg.neg_pos == 0 and neg.pos_neg == 0
    assert neg.bias_neg == pytest.approx(15.0) and neg.bias_pos == 0  # |-5| x 3 samples
    assert neg.downward_shares == {"negative_weights": 0.0, "negative_activations": 0.0, "bias": 1.0}
    whole = sign.all_samples
    assert whole.bias_neg == pytest.approx(20.0)
    assert sum(whole.downward_shares.values()) == pytest.approx(1.0)
    d = sign.to_dict()
    assert d["bias_neg"] == pytest.approx(20.0) and d["negative_predictions"]["downward_shares"]["bias"] == 1.0
    # the circuit counts the output bias the same way in its route into the output
    traced = probe.trace_circuit(mlp, X, method="deeplift")
    into_output = traced.group("negative").routes[-1].masses
    assert into_output.bias_neg == pytest.approx(15.0) and into_output.downward_shares["bias"] == 1.0
    # and the hidden layer's zero biases add nothing
    assert traced.group("negative").routes[0].masses.bias_neg == 0


def test_mean_activation_is_the_signed_mean_of_h(two_unit_leaky: MLP) -> None:
    """z = [x, -x], slope 0.5: h = [x, -0.5x] for x > 0; mean over entries is x/4 (and -x/4... per sign)."""
    X = torch.tensor([[2.0], [-4.0]])
    lay = diagnose(two_unit_leaky, Dataset(X, None, "t")).layers[0]
    # x=2: h = [2, -1]; x=-4: h = [-2, 4]; mean of the four entries = 3/4
    assert lay.activity.act_mean == pytest.approx(0.75)
    h = torch.nn.functional.leaky_relu(two_unit_leaky[0](X), 0.5).detach()
    assert lay.activity.act_mean == pytest.approx(float(h.mean()))


def test_segment_histograms_and_quantiles_are_torchs() -> None:
    """Every active fraction k/n (n <= 300) lands in torch.histc's bin; quantiles within 1 ulp of torch's."""
    import numpy as np

    from probe.diagnostics.segments import (HIST_BINS, QUANTILE_AT, segment_histograms, segment_layout,
                                            segment_quantiles)

    for n in range(1, 301):
        frac = torch.arange(n + 1, dtype=torch.float64) / n
        layout = segment_layout((n + 1,))
        want = torch.histc(frac.float(), bins=HIST_BINS, min=0.0, max=1.0).long().tolist()
        assert segment_histograms(frac.numpy(), layout).tolist() == [want], n
    gen = torch.Generator().manual_seed(0)
    sizes = (1, 2, 7, 64, 255)
    values = [torch.rand(u, generator=gen, dtype=torch.float64) for u in sizes]
    got = segment_quantiles(torch.cat(values).numpy(), segment_layout(sizes))
    for row, v in zip(got, values):
        want = torch.quantile(v, torch.tensor(QUANTILE_AT)).numpy()
        assert np.allclose(row, want, rtol=4e-16, atol=0), (row, want)


def test_collector_results_equal_result_per_member_and_work_without_hidden_layers() -> None:
    from probe.diagnostics import Collector

    gen = torch.Generator().manual_seed(1)
    c = Collector(1, torch.randn(3, 2, 4, generator=gen), torch.randn(3, 2, generator=gen))
    x, z = torch.randn(3, 50, 5, generator=gen), torch.randn(3, 50, 4, generator=gen)
    pending = c.forward(0, x, z, torch.tensor([0.0, 0.1, 0.3]).view(3, 1, 1))
    c.backward(pending, torch.randn(3, 50, 4, generator=gen))
    together = c.results()
    assert [r.to_dict() for r in together] == [c.result(m).to_dict() for m in range(3)]
    assert [r.to_dict() for r in c.results(members=[2, 0])] == [together[2].to_dict(), together[0].to_dict()]
    alone = Collector(0, torch.randn(3, 2, 4, generator=gen), torch.zeros(3, 2))
    assert len(alone.results()) == 3 and alone.results()[0].layers == ()
