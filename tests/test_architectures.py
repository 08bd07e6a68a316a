"""Norm layers, folded BatchNorms, smooth activations, per-channel PReLU and output squeezes.

Every diagnostic is checked against an independent recomputation: the user's
own ``torch.nn`` modules run one by one with ``retain_grad`` (no probe hook,
no probe conversion), and plain autograd for ``dL/dz``, ``dL/du`` and the
activation's derivative.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import probe
from probe.core.errors import ModelLoadError
from probe.models.convert import module_to_mlp
from probe.models.loading import load_mlp, save_checkpoint

ACTS = [nn.ReLU(), nn.LeakyReLU(0.2), nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU(), nn.ELU(0.5),
        nn.CELU(1.3), nn.SELU(), nn.Mish(), nn.Softplus(2.0), nn.RReLU(0.1, 0.3), nn.Tanh()]


def _randomise_bn(bn: nn.BatchNorm1d, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.weight.copy_(torch.randn(bn.num_features, generator=gen))
        bn.bias.copy_(torch.randn(bn.num_features, generator=gen))


def reference(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """Per hidden layer: x, u (Linear output), z (activation input), h, dL/du, dL/dz, f'(z), by hand.

    Runs the user's own modules one at a time (eval mode), MSE loss, plain autograd.
    """
    model.eval()
    layers, cur, pending = [], x, None
    mods = list(model)
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear) and any(isinstance(n, nn.Linear) for n in mods[i + 1:]):
            pending = {"x": cur.detach()}
            cur = m(cur)
            cur.retain_grad()
            pending["u"] = cur
        elif pending is not None and isinstance(m, nn.BatchNorm1d) and "z" not in pending:
            cur = m(cur)  # folded into the Linear: the analysed layer's output u is the BatchNorm's
            cur.retain_grad()
            pending["u"] = cur
        elif pending is not None and not isinstance(m, (nn.BatchNorm1d, nn.LayerNorm, nn.RMSNorm, nn.Dropout,
                                                        nn.Linear)):
            z = cur if "z" not in pending else pending["z"]
            pending["z"], pending["act"] = z, m
            if z is not pending["u"]:
                z.retain_grad()
            cur = m(z.clone())  # an in-place activation must not overwrite z
            pending["h"] = cur.detach()
            layers.append(pending)
            pending = None
        else:
            cur = m(cur)
    out = cur.reshape(y.shape)
    F.mse_loss(out, y).backward()
    for lay in layers:
        zz = lay["z"].detach().requires_grad_(True)
        (lay["deriv"],) = torch.autograd.grad(lay["act"](zz.clone()).sum(), zz)
        lay["g_z"], lay["g_u"] = lay["z"].grad, lay["u"].grad
    return layers


def check_against_reference(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, rtol: float = 1e-4) -> None:
    result = probe.analyze(model, x, y, circuit=False)
    ref = reference(model, x, y)
    assert len(result.diagnostics.layers) == len(ref)
    for got, want in zip(result.diagnostics.layers, ref):
        z, g_z, g_u, h = want["z"].detach(), want["g_z"], want["g_u"], want["h"]
        neg = z <= 0
        a, g = got.activity, got.gradient
        assert a.dead_units == int(((~neg).sum(0) == 0).sum())
        assert a.act_mean == pytest.approx(float(h.double().mean()), rel=rtol, abs=1e-7)
        assert a.local_slope_neg == pytest.approx(float(want["deriv"][neg].double().mean()), rel=rtol, abs=1e-7)
        ratio = g_z.abs()[neg].double().mean() / g_z.abs()[~neg].double().mean()
        assert g.grad_ratio == pytest.approx(float(ratio), rel=rtol)
        g_neg = want["x"].T.double() @ (g_u * neg).double()
        g_pos = want["x"].T.double() @ (g_u * ~neg).double()
        share = g_neg.norm() / (g_neg.norm() + g_pos.norm())
        assert g.neg_grad_share == pytest.approx(float(share), rel=1e-3)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: repr(a))
def test_every_activation_against_autograd(act: nn.Module) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), act, nn.Linear(16, 8), type(act)(**_kwargs(act)), nn.Linear(8, 1))
    x, y = torch.randn(300, 4), torch.randn(300, 1)
    check_against_reference(model, x, y)
    layer = probe.analyze(model, x, y, circuit=False).diagnostics.layers[0]
    if isinstance(act, (nn.ReLU, nn.LeakyReLU, nn.RReLU)):
        slope = 0.0 if isinstance(act, nn.ReLU) else getattr(act, "negative_slope", 0.2)
        assert layer.negative_slope == pytest.approx(slope)
        assert layer.activity.local_slope_neg == pytest.approx(slope)
    else:
        assert layer.negative_slope is None and layer.gradient.upstream_ratio is None


def _kwargs(act: nn.Module) -> dict:
    known = {"LeakyReLU": ("negative_slope",), "ELU": ("alpha",), "CELU": ("alpha",), "Softplus": ("beta",),
             "GELU": ("approximate",), "RReLU": ("lower", "upper")}
    return {k: getattr(act, k) for k in known.get(type(act).__name__, ())}


def test_rrelu_analysed_at_its_eval_slope() -> None:
    layer = probe.analyze(nn.Sequential(nn.Linear(3, 8), nn.RReLU(0.1, 0.3), nn.Linear(8, 1)),
                          torch.randn(200, 3), torch.randn(200, 1), circuit=False).diagnostics.layers[0]
    assert layer.negative_slope == pytest.approx(0.2) and layer.activity.local_slope_neg == pytest.approx(0.2)


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_norm_layers_stay_in_the_chain(norm: str) -> None:
    torch.manual_seed(1)
    make = (lambda w: nn.LayerNorm(w)) if norm == "layer" else (lambda w: nn.RMSNorm(w, eps=1e-6))
    model = nn.Sequential(nn.Linear(5, 12), make(12), nn.LeakyReLU(0.1), nn.Dropout(0.2),
                          nn.Linear(12, 12), make(12), nn.GELU(), nn.Linear(12, 1))
    with torch.no_grad():
        for m in model:
            if hasattr(m, "weight") and m.weight is not None and m.weight.dim() == 1:
                m.weight.uniform_(0.5, 1.5)
    x, y = torch.randn(256, 5), torch.randn(256, 1)
    check_against_reference(model, x, y)
    mlp = module_to_mlp(model)
    assert [n is not None for n in mlp.norms] == [True, True]
    assert mlp.describe().endswith(f"+ {norm}norm")


def test_batchnorm_before_the_activation_is_folded_exactly() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Linear(10, 1))
    _randomise_bn(model[1], 0)
    x, y = torch.randn(400, 4), torch.randn(400, 1)
    check_against_reference(model, x, y)
    mlp = module_to_mlp(model)
    assert len(mlp) == 3 and "folded" in mlp.notes[0]
    # the folded layer's full weight gradient is dL/dz x^T; autograd on the original gives
    # dL/dW = s * dL/dz x^T with s = gamma / sqrt(var + eps): divide it back out
    bn = model[1]
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    model.zero_grad()
    model.eval()
    F.mse_loss(model(x), y).backward()
    want = (model[0].weight.grad / s[:, None]).norm()  # nonzero: the check below is not vacuous
    assert float(want) > 0
    probe_total = _total_weight_grad(model, x, y)
    assert torch.allclose(probe_total, model[0].weight.grad / s[:, None], rtol=1e-4, atol=1e-6)


def _total_weight_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The folded first layer's weight gradient, by autograd on probe's canonical model."""
    mlp = module_to_mlp(model)
    F.mse_loss(mlp(x), y).backward()
    return mlp[0].weight.grad


def test_batchnorm_after_the_activation_folds_into_the_next_linear() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 8), nn.SiLU(), nn.BatchNorm1d(8), nn.Linear(8, 2))
    _randomise_bn(model[0], 1)
    _randomise_bn(model[3], 2)
    mlp = module_to_mlp(model)
    assert len(mlp.notes) == 2 and len(mlp) == 3
    x = torch.randn(50, 4)
    assert torch.allclose(mlp(x), model.eval()(x), atol=1e-5)


def test_batchnorm_without_running_stats_is_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(ModelLoadError, match="running statistics"):
        module_to_mlp(model)


def test_per_channel_prelu_reports_a_distribution() -> None:
    torch.manual_seed(4)
    act = nn.PReLU(32)
    with torch.no_grad():
        act.weight.copy_(torch.linspace(-0.3, 0.2, 32))
    model = nn.Sequential(nn.Linear(6, 32), act, nn.Linear(32, 1))
    x, y = torch.randn(500, 6), torch.randn(500, 1)
    layer = probe.analyze(model, x, y, circuit=False).diagnostics.layers[0]
    slopes = act.weight.detach().double()
    assert layer.negative_slope is None
    assert layer.prelu_slopes == {"count": 32, "mean_abs": pytest.approx(float(slopes.abs().mean())),
                                  "min": pytest.approx(-0.3), "max": pytest.approx(0.2),
                                  "negative": int((slopes < 0).sum())}
    check_against_reference(model, x, y)


class Squeezed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 6), nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.elu(self.fc1(x), alpha=0.7)).squeeze(-1)


def test_output_squeeze_and_functional_elu() -> None:
    model = Squeezed()
    mlp = module_to_mlp(model)
    assert isinstance(mlp[1], nn.ELU) and mlp[1].alpha == pytest.approx(0.7)
    assert any("reshape" in note for note in mlp.notes)
    x, y = torch.randn(64, 3), torch.randn(64)
    result = probe.analyze(model, x, y, circuit=False)
    assert result.diagnostics.layers[0].activity.samples == 64


def test_checkpoint_round_trip_with_norms(tmp_path) -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.PReLU(8), nn.Linear(8, 8), nn.RMSNorm(8),
                          nn.PReLU(8), nn.Linear(8, 2))
    mlp = module_to_mlp(model)
    path = save_checkpoint(mlp, tmp_path / "m.pt")
    loaded = load_mlp(path)
    x = torch.randn(20, 4)
    assert torch.allclose(loaded.mlp(x), model.eval()(x), atol=1e-6)
    assert loaded.to_dict()["norms"][0]["kind"] == "layer"


@pytest.mark.parametrize("model, cause", [
    (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.LayerNorm(2)), "after the output layer"),
    (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.LayerNorm(4), nn.Linear(4, 1)), "directly follow a Linear"),
    (nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 1)), "Sigmoid"),
])
def test_refusals_name_the_cause(model: nn.Module, cause: str) -> None:
    with pytest.raises(ModelLoadError, match=cause):
        module_to_mlp(model)


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(3, 5), nn.GELU(approximate="tanh"), nn.Linear(5, 1)),
    lambda: nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.ELU(0.5), nn.Linear(5, 1)),
    lambda: nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 1)),
    lambda: nn.Sequential(nn.Linear(3, 5), nn.RMSNorm(5), nn.SiLU(), nn.Dropout(), nn.Linear(5, 2)),
], ids=["gelu_tanh", "layernorm_elu", "batchnorm_tanh", "rmsnorm_silu"])
def test_torchscript_with_norms_and_smooth_activations(tmp_path, make) -> None:
    torch.manual_seed(6)
    model = make().eval()
    for m in model:
        if isinstance(m, nn.BatchNorm1d):
            _randomise_bn(m, 3)
    torch.jit.save(torch.jit.script(model), tmp_path / "m.pt")
    loaded = load_mlp(tmp_path / "m.pt", trust=True)
    x = torch.randn(40, 3)
    assert torch.allclose(loaded.mlp(x), model(x), atol=1e-5)
    assert (len(loaded.mlp.notes) == 1) == any(isinstance(m, nn.BatchNorm1d) for m in model)


@pytest.mark.parametrize("spec, module", [("gelu", nn.GELU()), ("elu:0.5", nn.ELU(0.5)), ("softplus:2", nn.Softplus(2.0))])
def test_state_dict_with_a_smooth_activation_spec(tmp_path, spec: str, module: nn.Module) -> None:
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 6), module, nn.Linear(6, 1))
    torch.save(model.state_dict(), tmp_path / "s.pt")
    loaded = load_mlp(tmp_path / "s.pt", spec)
    x = torch.randn(30, 4)
    assert torch.allclose(loaded.mlp(x), model(x), atol=1e-6)
    assert any("--activation" in w or "ctivation" in w for w in loaded.warnings)


@pytest.mark.parametrize("make, method", [
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 1)), "ig"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 1)), "ig"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.ELU(), nn.Linear(8, 1)), "deeplift"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.RReLU(0.1, 0.3), nn.Linear(8, 1)), "deeplift"),
    (lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Softplus(), nn.Linear(8, 1)), "deeplift"),
], ids=["gelu", "layernorm", "elu", "rrelu", "tanh_softplus"])
def test_circuit_picks_a_complete_method(make, method: str) -> None:
    torch.manual_seed(8)
    model = make()
    x, y = torch.randn(200, 4), torch.randn(200, 1)
    circuit = probe.analyze(model, x, y, circuit=True).circuit.to_dict()
    assert circuit["method"] == method
    # DeepLift is exact; integrated gradients up to its integration error, reported with it
    assert circuit["completeness"]["max_rel_error"] < (1e-5 if method == "deeplift" else 0.1)
    # inputs, every hidden activation and the output: a norm is no layer of the circuit
    assert len(circuit["groups"]["negative"]["layers"]) == len(model) - sum(
        isinstance(m, (nn.Linear, nn.LayerNorm)) for m in model) + 2


def test_deeplift_refused_where_it_is_not_exact() -> None:
    from probe.circuit.validate import CircuitError, check_method

    mlp = module_to_mlp(nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.Linear(4, 1)))
    with pytest.raises(CircuitError, match="SiLU"):
        check_method("deeplift", mlp)


def test_terminal_shows_the_prelu_slope_distribution_and_ignored_targets() -> None:
    from probe.report.analyze_view import prelu_lines, sanity_line

    act = nn.PReLU(8)
    with torch.no_grad():
        act.weight.copy_(torch.tensor([-0.4, -0.1, 0.1, 0.2, 0.25, 0.3, 0.05, 0.15]))
    model = nn.Sequential(nn.Linear(3, 8), act, nn.Linear(8, 1))
    x, y = torch.randn(100, 3), torch.randn(100, 1)
    result = probe.analyze(model, x, y)
    line = prelu_lines(result.diagnostics)[0].plain
    assert "8 channels" in line and "2 negative" in line and "min -0.4" in line
    ignored = probe.analyze(model, x, y, loss="sum")
    assert "ignores the targets" in sanity_line(ignored)
    assert any("ignores the targets" in w for w in ignored.warnings)
