"""probe.track: every record against plain autograd on that step's batch, the window, borrowed hooks, crashes."""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import probe
from probe.core.errors import ModelLoadError, ProbeError
from probe.engines.analysis import diagnose
from probe.engines.track import Tracker, track
from probe.engines.track_batch import LayerStep
from probe.engines.track_window import AlertMonitor, DeadWindow
from probe.experiment.history import read_history
from probe.models.borrowed_hooks import InertHook
from probe.models.loading import load_mlp

# -- an independent recomputation: plain autograd on a copy of the network --------------------------


def _slopes(model: nn.Sequential) -> list[torch.Tensor]:
    out = []
    for m in model:
        if isinstance(m, nn.PReLU):
            out.append(m.weight.detach().clone())
        elif isinstance(m, nn.LeakyReLU):
            out.append(torch.tensor(m.negative_slope))
        elif isinstance(m, nn.ReLU):
            out.append(torch.tensor(0.0))
    return out


def reference(model: nn.Sequential, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Every recorded quantity, from the definitions, on a copy of ``model`` as it was before the step.

    ``batches`` are the step's (x, y) pairs, each with its own sum-of-squares loss
    backpropagated, as a loop with gradient accumulation does.
    """
    net = copy.deepcopy(model).double()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    slopes = [s.double() for s in _slopes(model)]
    xs, zs, gs = [[] for _ in slopes], [[] for _ in slopes], [[] for _ in slopes]
    hs_last, outs = [], []
    for x, y in batches:
        h = x.double()
        kept = []
        for i, lin in enumerate(linears[:-1]):
            xs[i].append(h.detach())
            z = h @ lin.weight.T + lin.bias
            z.retain_grad()
            kept.append(z)
            h = torch.where(z > 0, z, slopes[i] * z)
        hs_last.append(h.detach())
        out = h @ linears[-1].weight.T + linears[-1].bias
        outs.append(out.detach())
        ((out - y.double()) ** 2).sum().backward()
        for i, z in enumerate(kept):
            zs[i].append(z.detach())
            gs[i].append(z.grad.detach())
    layers = []
    for i in range(len(slopes)):
        x, z, g = torch.cat(xs[i]), torch.cat(zs[i]), torch.cat(gs[i])
        n, units = z.shape
        neg = z <= 0
        active = (~neg).sum(0)
        frac = active.double() / n
        h = torch.where(z > 0, z, slopes[i] * z)
        mean_abs = h.abs().mean(0)
        layer_mean = float(mean_abs.mean())
        g_neg_w = x.T @ (g * neg)
        g_pos_w = x.T @ (g * ~neg)
        full_neg = torch.cat([g_neg_w, (g * neg).sum(0)[None]])  # weights and bias
        full = torch.cat([g_neg_w + g_pos_w, g.sum(0)[None]])
        norm_neg, norm_pos = float(torch.linalg.norm(g_neg_w)), float(torch.linalg.norm(g_pos_w))
        neg_g, pos_g = g.abs()[neg], g.abs()[~neg]
        neg_h, pos_h = h.abs()[neg], h.abs()[~neg]
        slope = float(f"{float(slopes[i].mean()):.6g}")
        ratio = float(neg_g.mean() / pos_g.mean()) if neg_g.numel() and pos_g.numel() and pos_g.sum() > 0 else None
        layers.append({
            "layer": i + 1, "units": units, "samples": n, "negative_slope": slope,
            "dead_units": int((active == 0).sum()), "dead_rate": float((active == 0).double().mean()),
            "near_dead_units": int((frac < 0.01).sum()),
            "dormant_units": units if layer_mean == 0 else int((mean_abs / layer_mean <= 0.025).sum()),
            "active_fraction_mean": float(frac.mean()),
            "active_fraction_quantiles": dict(zip(("min", "p10", "median", "p90", "max"), torch.quantile(
                frac, torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)).tolist())),
            "active_fraction_histogram": [int(v) for v in torch.histc(frac.float(), 10, 0.0, 1.0)],
            "act_neg_mean_abs": float(neg_h.mean()) if neg_h.numel() else None,
            "act_pos_mean_abs": float(pos_h.mean()) if pos_h.numel() else None,
            "neg_region_fraction": float(neg.double().mean()),
            "act_mean": float(h.mean()),
            "grad_neg_mean_abs": float(neg_g.mean()) if neg_g.numel() else None,
            "grad_pos_mean_abs": float(pos_g.mean()) if pos_g.numel() else None,
            "grad_ratio": ratio,
            "upstream_ratio": ratio / slope if ratio is not None and slope > 0 else None,
            "neg_grad_share": norm_neg / (norm_neg + norm_pos) if norm_neg + norm_pos > 0 else None,
            "neg_grad_fraction": float((full_neg * full).sum() / (full * full).sum()),
            "weight_grad_norm_neg": norm_neg, "weight_grad_norm_pos": norm_pos,
            "active_mask": (active > 0).tolist(),
        })
    w, b = linears[-1].weight.detach(), linears[-1].bias.detach()
    h, out = torch.cat(hs_last), torch.cat(outs)
    sign = []
    for k in range(w.shape[0]):
        def masses(rows):
            c = w[k][None, :] * h[rows]
            pos_w, pos_h = w[k][None, :] > 0, h[rows] > 0
            d = {"samples": int(rows.sum()),
                 "pos_pos": float(c[pos_w & pos_h].abs().sum()), "neg_pos": float(c[~pos_w & pos_h].abs().sum()),
                 "pos_neg": float(c[pos_w & (h[rows] < 0)].abs().sum()),
                 "neg_neg": float(c[~pos_w & (h[rows] < 0)].abs().sum())}
            down, net = d["neg_pos"] + d["pos_neg"], float(c.sum(1).abs().sum())
            d["activation_route_share"] = d["pos_neg"] / down if down > 0 else None
            d["bias_pos"], d["bias_neg"] = d["samples"] * max(float(b[k]), 0.0), d["samples"] * max(-float(b[k]), 0.0)
            everything_down = down + d["bias_neg"]
            d["downward_shares"] = None if everything_down <= 0 else {
                "negative_weights": d["neg_pos"] / everything_down,
                "negative_activations": d["pos_neg"] / everything_down, "bias": d["bias_neg"] / everything_down}
            total = d["pos_pos"] + d["neg_pos"] + d["pos_neg"] + d["neg_neg"]
            d["cancellation"] = total / net if net > 0 else None
            return d
        entry = {"output": k, **masses(torch.ones(len(h), dtype=torch.bool))}
        entry["negative_predictions"] = masses(out[:, k] < 0)
        sign.append(entry)
    return {"layers": layers, "sign": sign}


def assert_close(got: object, want: object, where: str) -> None:
    if isinstance(want, dict):
        for key, value in want.items():
            assert_close(got[key], value, f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            assert_close(a, b, f"{where}[{i}]")
    elif want is None or isinstance(want, (bool, int, str)) and not isinstance(want, float):
        assert got == want, f"{where}: {got} != {want}"
    else:
        assert got is not None and math.isclose(got, want, rel_tol=2e-5, abs_tol=1e-9), f"{where}: {got} != {want}"


def forced_dead(activation: str) -> nn.Sequential:
    """4 -> 6 -> 5 -> 2 with units 0 and 3 of layer 1 and unit 4 of layer 2 dead on every input."""
    torch.manual_seed(0)
    act = {"relu": nn.ReLU, "leaky": lambda: nn.LeakyReLU(0.1), "prelu": lambda: nn.PReLU(1, 0.2),
           "relu_": lambda: nn.ReLU(inplace=True)}[activation]
    model = nn.Sequential(nn.Linear(4, 6), act(), nn.Linear(6, 5), act(), nn.Linear(5, 2))
    with torch.no_grad():
        for unit in (0, 3):
            model[0].weight[unit].zero_()
            model[0].bias[unit] = -50.0
        model[2].weight[4].zero_()
        model[2].bias[4] = -50.0
    return model


def data(n: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    return x, torch.stack([x[:, 0] - x[:, 1], x[:, 2] * x[:, 3]], 1)


@pytest.mark.parametrize("activation", ["relu", "leaky", "prelu", "relu_"])
def test_every_record_matches_plain_autograd_on_its_batch(activation: str) -> None:
    model = forced_dead(activation)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    X, Y = data()
    masks: list[list[list[bool]]] = []
    with track(model, every=1, window=3) as tracker:
        for step in range(6):
            x, y = X[8 * step:8 * step + 8], Y[8 * step:8 * step + 8]
            want = reference(model, [(x, y)])  # the parameters as they are before opt.step()
            loss = ((model(x) - y) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            record = tracker.step(loss)
            assert record["step"] == step and record["samples"] == 8
            assert record["loss"] == pytest.approx(loss.item())
            for got, layer in zip(record["layers"], want["layers"]):
                expected = {k: v for k, v in layer.items() if k != "active_mask"}
                assert_close(got, expected, f"step {step} layer {layer['layer']}")
            assert_close(record["sign"], want["sign"], f"step {step} sign")
            masks.append([layer["active_mask"] for layer in want["layers"]])
            for i, got in enumerate(record["layers"]):  # window of the last 3 records
                recent = [m[i] for m in masks[-3:]]
                window_dead = sum(not any(unit) for unit in zip(*recent))
                assert got["window_dead_units"] == window_dead
                assert got["window_dead_share"] == pytest.approx(window_dead / got["units"])
                assert got["window_records"] == len(recent)
            assert record["layers"][0]["dead_units"] >= 2 and record["layers"][1]["dead_units"] >= 1


def test_records_equal_analyze_on_the_same_batch_and_parameters() -> None:
    model = forced_dead("leaky")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    X, Y = data(32)
    with track(model) as tracker:
        for step in range(3):
            before = copy.deepcopy(model)
            loss = F.mse_loss(model(X), Y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            record = tracker.step()
            analyzed = diagnose(before, X, Y).to_dict()
            assert "loss" not in record
            assert record["collapsed"] == analyzed["collapsed"]
            window_keys = {"window_dead_units", "window_dead_share", "revived_units", "window_records"}
            for got, want in zip(record["layers"], analyzed["layers"]):
                assert [key for key in got if key not in window_keys] == list(want)  # analyze's keys, in order
                assert_close(got, want, f"step {step}")
            assert [set(s) for s in record["sign"]] == [set(s) for s in analyzed["sign"]]
            assert_close(record["sign"], analyzed["sign"], f"step {step} sign")


@pytest.mark.parametrize("activation", ["relu", "relu_", "leaky"])
def test_biases_absent_or_frozen_equal_analyze(activation: str) -> None:
    """A Linear without bias and one with a frozen bias: the bias gradient is probe's own sum, not autograd's."""
    torch.manual_seed(1)
    act = {"relu": nn.ReLU, "relu_": lambda: nn.ReLU(inplace=True), "leaky": lambda: nn.LeakyReLU(0.1)}[activation]
    model = nn.Sequential(nn.Linear(4, 6, bias=False), act(), nn.Linear(6, 5), act(), nn.Linear(5, 2))
    model[2].bias.requires_grad_(False)
    X, Y = data(32)
    with track(model) as tracker:
        before = copy.deepcopy(model)
        F.mse_loss(model(X), Y).backward()
        record = tracker.step()
    analyzed = diagnose(before, X, Y).to_dict()
    for got, want in zip(record["layers"], analyzed["layers"]):
        assert_close(got, want, "layer")
    assert_close(record["sign"], analyzed["sign"], "sign")


@pytest.mark.parametrize("activation", ["relu", "relu_"])
@pytest.mark.parametrize("other_use", ["penalty", "hook", "hook_in_place", "none"])
def test_a_relu_gradient_that_is_not_relus_own_is_measured_in_full(other_use: str, activation: str) -> None:
    """ReLU's backward leaves g exactly 0 where z <= 0, and probe then skips that side.

    Only where g is the very tensor ReLU's backward made, unchanged: another term
    of the loss on ``z``, or a hook that changes ``g`` (in place or not), gives
    ``g`` a negative side, measured here against plain autograd on the same batch.
    """
    model = forced_dead(activation)
    X, Y = data(16)
    seen: dict = {}

    def shift_in_place(g: torch.Tensor) -> None:
        g.add_(0.25)

    def layer_2(module: nn.Module, inputs: tuple, z: torch.Tensor) -> None:  # before an in-place ReLU
        seen["x"], seen["neg"] = inputs[0].detach().double(), (z <= 0).detach()
        if other_use == "penalty":  # linear in z: nothing saved that the in-place ReLU would change
            seen["penalty"] = 0.1 * z.sum()
        elif other_use == "hook":
            z.register_hook(lambda g: g + 0.25)
        elif other_use == "hook_in_place":  # the very tensor ReLU's backward made, changed
            z.register_hook(shift_in_place)
        z.register_hook(lambda g: seen.__setitem__("g", g.detach().double()))  # dL/dz, as the layer gets it

    keep = model[2].register_forward_hook(layer_2)
    with track(model) as tracker:
        loss = ((model(X) - Y) ** 2).sum() + seen.get("penalty", 0.0)
        loss.backward()
        record = tracker.step()
    keep.remove()
    x, g, neg = seen["x"], seen["g"], seen["neg"]
    got = record["layers"][1]
    g_neg, g_pos = x.T @ (g * neg), x.T @ (g * ~neg)
    want_neg = float(g.abs()[neg].mean())
    assert (want_neg == 0) == (other_use == "none")
    assert got["grad_neg_mean_abs"] == pytest.approx(want_neg, rel=2e-5, abs=1e-9)
    assert got["grad_pos_mean_abs"] == pytest.approx(float(g.abs()[~neg].mean()), rel=2e-5)
    assert got["weight_grad_norm_neg"] == pytest.approx(float(torch.linalg.norm(g_neg)), rel=2e-5, abs=1e-9)
    assert got["weight_grad_norm_pos"] == pytest.approx(float(torch.linalg.norm(g_pos)), rel=2e-5)


@pytest.mark.parametrize("activation", ["relu", "relu_", "leaky"])
def test_a_plain_relu_never_computes_its_negative_side(activation: str, monkeypatch) -> None:
    """The shortcut is taken where it holds (a cost guard: the values are tested above)."""
    measured: list[bool] = []
    finish = LayerStep.finish
    monkeypatch.setattr(LayerStep, "finish", lambda self: measured.append(self.neg_abs_written) or finish(self))
    model = forced_dead(activation)
    X, Y = data(16)
    with track(model) as tracker:
        ((model(X) - Y) ** 2).sum().backward()
        tracker.step()
    assert measured == [activation == "leaky"] * 2


def test_the_step_ledger_and_sign_routes_over_batches_of_both_kinds() -> None:
    """Parts in another dtype get their own tensor; sign sums over a ReLU batch then a signed one equal analyze's."""
    from probe.diagnostics.sign import SignRoutes
    from probe.engines.track_ledger import Scratch, StepLedger, sign_layout
    from probe.engines.track_record import sign_results
    from probe.engines.track_sign import SignStep

    ledger = StepLedger(Scratch(), [3, 4, sign_layout(2, 5)[1]])
    first = ledger.part(0, torch.zeros(1))
    first.copy_(torch.tensor([1.0, 2.0, 3.0]))
    other = ledger.part(1, torch.zeros(1, dtype=torch.float64))
    other.copy_(torch.tensor([4.0, 5.0, 6.0, 7.0], dtype=torch.float64))
    assert not ledger.shared and ledger.part(0, torch.zeros(1)) is first
    torch.manual_seed(0)
    final = nn.Linear(5, 2)
    step = SignStep(Scratch(), ledger, 2, 2, 5)
    ledger.part(2, torch.zeros(1)).fill_(7.0)  # a kept ledger holds an earlier step's numbers
    routes = SignRoutes(final.weight.detach()[None], final.bias.detach()[None])
    for h, relu in ((torch.randn(7, 5).relu(), True), (torch.randn(9, 5), False)):
        step.forward(final, h, relu)
        routes.update(h[None])
    host = ledger.host()
    assert host[0].tolist() == [1.0, 2.0, 3.0] and host[1].tolist() == [4.0, 5.0, 6.0, 7.0]
    got = [r.to_dict() for r in sign_results(step, host[2])]
    assert_close(got, [r.to_dict() for r in routes.result()], "sign")


class FunctionalGelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.gelu(self.a(x)))


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 8), nn.ELU(0.5),
                          nn.Linear(8, 1)),
    lambda: nn.Sequential(nn.Linear(4, 8), nn.RMSNorm(8), nn.LeakyReLU(0.1), nn.Linear(8, 1)),
    lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.SiLU(), nn.Linear(8, 1), nn.Flatten(0)),
], ids=["layernorm_gelu_elu", "rmsnorm_leaky", "tanh_silu_squeezed"])
def test_general_models_equal_analyze_on_the_same_batch(make) -> None:
    """Norms and smooth activations: the records still equal probe.diagnose, key for key."""
    torch.manual_seed(3)
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    X, Y = data(32)
    Y = Y[:, :1]  # one output
    squeezed = isinstance(model[-1], nn.Flatten)
    with track(model) as tracker:
        assert tracker.general
        for step in range(3):
            before = copy.deepcopy(model)
            out = model(X)
            loss = F.mse_loss(out, Y.reshape(out.shape))
            opt.zero_grad()
            loss.backward()
            opt.step()
            record = tracker.step(loss)
            analyzed = diagnose(before, X, Y.reshape(-1) if squeezed else Y).to_dict()
            window_keys = {"window_dead_units", "window_dead_share", "revived_units", "window_records"}
            for got, want in zip(record["layers"], analyzed["layers"]):
                assert set(got) - window_keys == set(want)
                assert_close(got, want, f"step {step}")
            assert_close(record["sign"], analyzed["sign"], f"step {step} sign")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_general_models_need_activation_modules() -> None:
    with pytest.raises(ModelLoadError, match="activation modules"):
        track(FunctionalGelu())


@pytest.mark.parametrize("activation", ["relu", "leaky"])
def test_gradient_accumulation_and_frozen_weights_and_float64(activation: str) -> None:
    """Two micro-batches per step are one record; a frozen layer and float64 take the other paths."""
    model = forced_dead(activation).double()
    model[0].weight.requires_grad_(False)  # its x^T g is not computed by autograd: probe computes it
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    X, Y = data(32)
    X, Y = X.double(), Y.double()
    with track(model) as tracker:
        for step in range(2):
            parts = [(X[16 * step:16 * step + 8], Y[16 * step:16 * step + 8]),
                     (X[16 * step + 8:16 * step + 16], Y[16 * step + 8:16 * step + 16])]
            want = reference(model, parts)
            opt.zero_grad()
            for x, y in parts:
                ((model(x) - y) ** 2).sum().backward()
            opt.step()
            record = tracker.step()
            assert record["samples"] == 16
            for got, layer in zip(record["layers"], want["layers"]):
                assert_close(got, {k: v for k, v in layer.items() if k != "active_mask"}, f"step {step}")
            assert_close(record["sign"], want["sign"], "sign")


@pytest.mark.parametrize("activation", ["relu", "leaky"])
@pytest.mark.parametrize("change", ["hook", "hook_data", "between", "between_data"])
@pytest.mark.parametrize("micro_batches", [1, 2])
def test_a_gradient_changed_in_place_never_gives_a_wrong_split(micro_batches: int, change: str,
                                                              activation: str) -> None:
    """The split is autograd's x^T g of the step, read before anything scales it; never a changed one.

    The first batch's x^T g becomes the weight's ``.grad``; a weight hook, or code
    between micro-batches, may scale it in place, with or without bumping its
    version (``.data``). With one batch its norms are taken as it is computed
    (exact). The first step with two batches finds the kept tensor changed and
    leaves the split out (None) rather than wrong; from then on the tracker sums
    the batches in scratch as they come, and the split is exact again.
    """
    model = forced_dead(activation)
    linears = (model[0], model[2])
    if change.startswith("hook"):
        for lin in linears:
            lin.weight.register_hook((lambda g: g.data.mul_(0.5)) if change == "hook_data" else (lambda g: g.mul_(0.5)))
    X, Y = data(32)
    with track(model) as tracker:
        for step in range(2):
            parts = [(X[16 * step + 8 * i:16 * step + 8 * i + 8], Y[16 * step + 8 * i:16 * step + 8 * i + 8])
                     for i in range(micro_batches)]
            want = reference(model, parts)
            model.zero_grad()
            for x, y in parts:
                ((model(x) - y) ** 2).sum().backward()
                for lin in linears if change.startswith("between") else ():
                    (lin.weight.grad.data if change == "between_data" else lin.weight.grad).mul_(0.5)
            record = tracker.step()
            for got, layer in zip(record["layers"], want["layers"]):
                if micro_batches == 2 and step == 0:
                    assert got["neg_grad_share"] is None and got["neg_grad_fraction"] is None
                    assert_close(got["grad_ratio"], layer["grad_ratio"], "two batches, first step")
                else:
                    assert_close(got, {k: v for k, v in layer.items() if k != "active_mask"}, f"step {step}")


@pytest.mark.parametrize("activation", ["relu", "leaky"])
def test_once_a_run_accumulates_every_later_step_is_exact(activation: str) -> None:
    """Micro-batches 1, 2, 1, 2, 2 with the gradient halved in place by a weight hook.

    Only the run's first two-batch step leaves its split out; every later step,
    of one batch or two, sums in scratch and is exact.
    """
    model = forced_dead(activation)
    for lin in (model[0], model[2]):
        lin.weight.register_hook(lambda g: g.mul_(0.5))
    X, Y = data(64)
    at = 0
    with track(model) as tracker:
        for step, count in enumerate([1, 2, 1, 2, 2]):
            parts = [(X[at + 8 * i:at + 8 * i + 8], Y[at + 8 * i:at + 8 * i + 8]) for i in range(count)]
            at += 8 * count
            want = reference(model, parts)
            model.zero_grad()
            for x, y in parts:
                ((model(x) - y) ** 2).sum().backward()
            record = tracker.step()
            for got, layer in zip(record["layers"], want["layers"]):
                if step == 1:
                    assert got["neg_grad_share"] is None
                else:
                    assert_close(got, {k: v for k, v in layer.items() if k != "active_mask"}, f"step {step}")


def test_a_step_cut_short_by_close_cannot_write_into_the_reopened_tracker() -> None:
    model = forced_dead("leaky")
    X, Y = data(16)
    tracker = Tracker(model)
    tracker.open()
    old = ((model(X[:8]) - Y[:8]) ** 2).sum()  # a forward pass of a step never recorded
    tracker.close()
    tracker.open()
    want = reference(model, [(X[8:], Y[8:])])
    ((model(X[8:]) - Y[8:]) ** 2).sum().backward()
    old.backward()  # the closed step's hooks fire now
    record = tracker.step()
    tracker.close()
    for got, layer in zip(record["layers"], want["layers"]):
        assert_close(got, {k: v for k, v in layer.items() if k != "active_mask"}, "reopened")


@pytest.mark.parametrize("activation", ["relu", "leaky"])
def test_backward_passes_that_skip_the_weights_or_come_late(activation: str) -> None:
    """A backward pass that stops at the pre-activations, or a graph of an earlier step backpropagated late.

    The first (``torch.autograd.grad`` with respect to ``z``) computes no weight
    gradient, so no ``x^T g`` and no hook of the tracker: the step's gradient
    keys are those of the other batch, exactly, while its forward keys count
    both batches. The second belongs to a step already recorded: it changes
    nothing in the current step's record.
    """
    model = forced_dead(activation)
    X, Y = data(32)
    zs: list[torch.Tensor] = []
    keep = [lin.register_forward_hook(lambda m, i, o: zs.append(o)) for lin in (model[0], model[2])]
    with track(model) as tracker:
        want_forward = reference(model, [(X[:16], Y[:16])])
        want_backward = reference(model, [(X[:8], Y[:8])])
        zs.clear()
        ((model(X[:8]) - Y[:8]) ** 2).sum().backward()
        zs.clear()
        loss = ((model(X[8:16]) - Y[8:16]) ** 2).sum() + sum((z ** 2).sum() for z in zs)
        torch.autograd.grad(loss, list(zs))  # gradients at z only: no x^T g, and nothing reaches the tracker
        record = tracker.step()
        for got, fwd, bwd in zip(record["layers"], want_forward["layers"], want_backward["layers"]):
            assert got["samples"] == 16
            for key, value in fwd.items():
                if key != "active_mask":
                    assert_close(got[key], bwd[key] if key.startswith(("grad_", "upstream", "neg_grad",
                                                                        "weight_grad")) else value, key)
        model.zero_grad()
        old = ((model(X[:8]) - Y[:8]) ** 2).sum()
        old.backward(retain_graph=True)
        tracker.step()
        want = reference(model, [(X[16:24], Y[16:24])])
        ((model(X[16:24]) - Y[16:24]) ** 2).sum().backward()
        old.backward()  # the recorded step's graph again, during the next one
        record = tracker.step()
    for handle in keep:
        handle.remove()
    for got, layer in zip(record["layers"], want["layers"]):
        assert_close(got, {k: v for k, v in layer.items() if k != "active_mask"}, "late backward")


class _Same(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * 1.0


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")
@pytest.mark.parametrize("how", ["plain", "autocast", "parametrized", "frozen_weight", "general"])
def test_a_gradient_penalty_pass_is_left_out(how: str) -> None:
    """``torch.autograd.grad`` for a penalty computes no weight gradient: the record is the training pass's.

    Whatever path the hooks take: the backward node of a plain Linear, a hook on
    ``z`` when the weight is reached through autocast's cast or a
    parametrization or is frozen (then the bias's gradient tells), or the
    general path's hooks (LayerNorm, GELU). The same
    loop without the penalty's pass gives the same record, key for key.
    """
    import torch.nn.utils.parametrize as parametrize

    def make() -> nn.Module:
        torch.manual_seed(3)
        if how == "general":
            return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 2))
        model = forced_dead("leaky")
        if how == "parametrized":
            parametrize.register_parametrization(model[0], "weight", _Same())
        if how == "frozen_weight":  # the pass is told by the bias's gradient
            model[0].weight.requires_grad_(False)
        return model

    X, Y = data(16)
    records = []
    for penalty in (True, False):
        model = make()
        with track(model) as tracker:
            x = X.clone().requires_grad_()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=how == "autocast"):
                out = model(x)
            loss = ((out - Y) ** 2).sum()
            if penalty:
                grad_x, = torch.autograd.grad(out.sum(), x, create_graph=True)
                loss = loss + 0 * grad_x.pow(2).sum()
            loss.backward()
            records.append(tracker.step())
    for got, want in zip(records[0]["layers"], records[1]["layers"]):
        assert_close(got, want, how)
    if how in ("parametrized", "frozen_weight"):  # and both are plain autograd's
        want = reference(make(), [(X, Y)])
        for got, layer in zip(records[0]["layers"], want["layers"]):
            assert_close(got, {k: v for k, v in layer.items() if k != "active_mask"}, how)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")
@pytest.mark.parametrize("activation", ["relu", "leaky"])
def test_half_precision_and_create_graph(activation: str) -> None:
    """bfloat16 weights (the sums are taken in float32) and a backward with create_graph=True."""
    model = forced_dead(activation)
    X, Y = data(16)
    want = reference(model, [(X, Y)])
    with track(model) as tracker:
        loss = ((model(X) - Y) ** 2).sum()
        loss.backward(create_graph=True)
        record = tracker.step()
    for got, layer in zip(record["layers"], want["layers"]):
        assert_close(got, {k: v for k, v in layer.items() if k != "active_mask"}, "create_graph")
    model.zero_grad(set_to_none=True)
    half = copy.deepcopy(model)
    tracker = track(half)  # checked in float32 (bfloat16 rounds the forced-dead biases past the check)
    half.bfloat16()
    with tracker:
        for _ in range(2):  # two micro-batches: the sum of x^T g goes through scratch in float32
            ((half(X.bfloat16()) - Y.bfloat16()) ** 2).sum().backward()
        record = tracker.step()
    want = reference(half, [(X, Y), (X, Y)])  # in float64, from the bfloat16 weights
    for got, want_layer in zip(record["layers"], want["layers"]):
        assert got["dead_units"] == want_layer["dead_units"]
        for key in ("grad_ratio", "neg_grad_share", "weight_grad_norm_pos"):
            assert (got[key] is None) == (want_layer[key] is None), key
            if got[key] is not None:
                assert math.isclose(got[key], want_layer[key], rel_tol=0.05, abs_tol=1e-6), key


@pytest.mark.parametrize("activation", ["relu", "leaky"])
@pytest.mark.parametrize("backward_inside", [False, True])
def test_a_forward_pass_under_autocast(backward_inside: bool, activation: str) -> None:
    """bfloat16 autocast on the CPU: the hooks' sums stay in float32 (close to float64 at bf16's precision)."""
    model = forced_dead(activation)
    X, Y = data(16)
    want = reference(model, [(X, Y)])
    with track(model) as tracker:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = ((model(X) - Y) ** 2).sum()
            if backward_inside:
                loss.backward()
        if not backward_inside:
            loss.backward()
        record = tracker.step()
    for got, want_layer in zip(record["layers"], want["layers"]):
        assert got["dead_units"] == want_layer["dead_units"]
        for key in ("grad_ratio", "neg_grad_share", "weight_grad_norm_pos", "act_pos_mean_abs"):
            assert (got[key] is None) == (want_layer[key] is None), key
            if got[key] is not None:
                assert math.isclose(got[key], want_layer[key], rel_tol=0.05, abs_tol=1e-6), key
    assert math.isclose(record["sign"][0]["pos_pos"], want["sign"][0]["pos_pos"], rel_tol=0.05)


def _fast_or_general(general: bool) -> nn.Module:
    """A leaky ReLU chain (the fast path), or a LayerNorm + GELU model (the general path)."""
    torch.manual_seed(2)
    return (nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 2)) if general
            else forced_dead("leaky"))


@pytest.mark.parametrize("general", [False, True])
def test_a_deep_copy_of_the_model_is_not_recorded(general: bool) -> None:
    """An EMA or teacher copied from the tracked model mid-run gets inert hooks, and is not recorded;
    nor is a shallow copy of a layer, which shares the layer's hook table."""
    model = _fast_or_general(general)
    X, Y = data(32)
    before = copy.deepcopy(model)
    with track(model) as tracker:
        twin = copy.deepcopy(model).double()
        assert _inert_hooks(twin) == _hooks(model) > 0
        copy.copy(model[0])(X[16:]).sum().backward()
        ((twin(X[16:].double()) - Y[16:].double()) ** 2).sum().backward()
        F.mse_loss(model(X[:16]), Y[:16]).backward()
        record = tracker.step()
    assert record["samples"] == 16
    analyzed = diagnose(before, X[:16], Y[:16]).to_dict()
    for got, want in zip(record["layers"], analyzed["layers"]):
        assert_close(got, want, "copy")
    assert_close(record["sign"], analyzed["sign"], "sign")


@pytest.mark.parametrize("general", [False, True])
def test_the_users_own_torch_save_works_mid_run(general: bool, tmp_path) -> None:
    """Checkpointing the whole module inside the loop: probe's hooks pickle as inert ones, without probe's state."""
    model = _fast_or_general(general)
    X, Y = data(16)
    with track(model) as tracker:
        saved = io.BytesIO()
        torch.save(model, saved)  # armed for step 0: the hooks are attached
        F.mse_loss(model(X), Y).backward()
        record = tracker.step()
    assert b"Tracker" not in saved.getvalue() and b"Scratch" not in saved.getvalue()
    saved.seek(0)
    loaded = torch.load(saved, weights_only=False)
    assert _inert_hooks(loaded) > 0 and _hooks(model) == 0
    assert record["samples"] == 16 and torch.equal(loaded(X), model(X))
    (tmp_path / "mid.pt").write_bytes(saved.getvalue())  # probe analyze reads it as a plain torch.nn model
    assert torch.allclose(load_mlp(tmp_path / "mid.pt").mlp(X), model(X), atol=1e-6)


@pytest.mark.parametrize("general", [False, True])
def test_a_jit_trace_mid_run_is_neither_recorded_nor_changed(general: bool, tmp_path) -> None:
    """The tracer's passes are not training passes, and probe's operations stay out of the traced graph."""
    model = _fast_or_general(general)
    X, Y = data(16)

    def kinds(traced: torch.jit.ScriptModule) -> list[str]:
        return [node.kind() for node in traced.inlined_graph.nodes()]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's own warnings
        plain = torch.jit.trace(model, X[:4], check_trace=False)
        with track(model, tmp_path / "h.jsonl") as tracker:
            traced = torch.jit.trace(model, X[:4], check_trace=False)
            F.mse_loss(model(X), Y).backward()
            record = tracker.step()
    assert kinds(traced) == kinds(plain)
    assert record["samples"] == 16 and all(layer["samples"] == 16 for layer in record["layers"])
    assert list(read_history(tmp_path / "h.jsonl").records) == [record]


@pytest.mark.parametrize("general", [False, True])
def test_per_sample_gradients_by_torch_func_mid_run(general: bool) -> None:
    """vmap(grad(...)) over the tracked model works as without probe, and its passes are not recorded."""
    from torch.func import functional_call, grad, vmap

    model = _fast_or_general(general)
    X, Y = data(16)
    params = {name: p.detach() for name, p in model.named_parameters()}

    def per_sample() -> dict[str, torch.Tensor]:
        def loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.mse_loss(functional_call(model, p, (x[None],)), y[None])
        return vmap(grad(loss), in_dims=(None, 0, 0))(params, X, Y)

    want = per_sample()
    with track(model) as tracker:
        got = per_sample()
        F.mse_loss(model(X[:8]), Y[:8]).backward()
        record = tracker.step()
    assert all(torch.equal(got[name], want[name]) for name in want)
    assert record["samples"] == 8 and all(layer["samples"] == 8 for layer in record["layers"])


@pytest.mark.parametrize("general", [False, True])
def test_an_empty_batch_adds_nothing_and_alone_makes_no_record(general: bool, caplog) -> None:
    """model(x[mask]) with an empty mask: before, a step of it alone failed in tracker.step() (bincount)."""
    model = _fast_or_general(general)
    X, Y = data(16)
    records = []
    for with_empty in (False, True):
        with track(model) as tracker:
            if with_empty:
                F.mse_loss(model(X[:0]), Y[:0], reduction="sum").backward()
                with caplog.at_level(logging.WARNING, logger="probe.track"):
                    assert tracker.step() is None
                assert "at least one sample" in caplog.text
                F.mse_loss(model(X[:0]), Y[:0], reduction="sum").backward()
            F.mse_loss(model(X), Y).backward()
            records.append(tracker.step())
    plain, mixed = records
    assert (plain["step"], mixed["step"]) == (0, 1)
    keys = ("samples", "loss", "collapsed", "layers", "sign")
    assert {k: mixed.get(k) for k in keys} == {k: plain.get(k) for k in keys}


@pytest.mark.parametrize("general", [False, True])
def test_torch_export_and_batched_gradients_mid_run(general: bool) -> None:
    """torch.export's pass is not recorded nor changed; a batched backward (Jacobian rows) is no training pass."""
    model = _fast_or_general(general)
    X, Y = data(16)
    want = torch.export.export(model, (X[:4],), strict=False).graph
    with track(model) as tracker:
        F.mse_loss(model(X), Y).backward()
        plain = tracker.step()
        got = torch.export.export(model, (X[:4],), strict=False).graph
        F.mse_loss(model(X), Y).backward()
        rows = torch.eye(2)[:, None, :].expand(2, 16, 2)  # d out_k / d params, k = 0, 1
        torch.autograd.grad(model(X), list(model.parameters()), rows, is_grads_batched=True)
        mixed = tracker.step()
    assert [n.target for n in got.nodes] == [n.target for n in want.nodes]
    keys = ("grad_neg_mean_abs", "grad_pos_mean_abs", "grad_ratio", "neg_grad_share", "weight_grad_norm_neg",
            "weight_grad_norm_pos")
    for a, b in zip(plain["layers"], mixed["layers"]):
        assert {k: b[k] for k in keys} == {k: a[k] for k in keys}


def test_a_half_precision_layer_wholly_negative_has_no_positive_split() -> None:
    """bfloat16 weights, every z of layer 1 <= 0: G_pos is 0, so the split is all negative (no rounding residue)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.LeakyReLU(0.9), nn.Linear(6, 5), nn.LeakyReLU(0.9), nn.Linear(5, 2))
    with torch.no_grad():
        model[0].bias.fill_(-30.0)
    tracker = track(model)
    model.bfloat16()
    X, Y = data(256)
    with tracker:
        ((model(X.bfloat16()) - Y.bfloat16()) ** 2).sum().backward()
        layer = tracker.step()["layers"][0]
    assert layer["dead_units"] == 6
    assert layer["weight_grad_norm_neg"] > 0
    assert layer["weight_grad_norm_pos"] <= 1e-6 * layer["weight_grad_norm_neg"]
    assert layer["neg_grad_share"] == pytest.approx(1.0, abs=1e-6)
    assert layer["neg_grad_fraction"] == pytest.approx(1.0, abs=1e-6)


def test_collapsed_is_analyze_s() -> None:
    """A layer with every unit dead: the record says collapsed, as probe.diagnose does."""
    model = forced_dead("relu")
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.fill_(-1.0)  # every unit of hidden layer 2 dead
    X, Y = data(16)
    with track(model) as tracker:
        ((model(X) - Y) ** 2).sum().backward()
        record = tracker.step()
    assert record["collapsed"] is True and diagnose(model, X, Y).collapsed is True
    assert record["layers"][1]["dead_units"] == record["layers"][1]["units"]


@pytest.mark.parametrize("general", [False, True])
def test_gradient_split_off_leaves_the_split_keys_as_analyze_does_without_it(general: bool) -> None:
    """gradient_split=False: the split's keys as analyze reports an unsplit layer; every other key unchanged."""
    def make() -> nn.Sequential:
        model = forced_dead("leaky")
        return nn.Sequential(model[0], nn.LayerNorm(6), *model[1:]) if general else model
    X, Y = data(16)
    records = []
    for split in (True, False):
        model = make()
        with track(model, gradient_split=split) as tracker:
            ((model(X) - Y) ** 2).sum().backward()
            records.append(tracker.step())
        assert tracker.header["gradient_split"] is split and tracker.general == general
    split_keys = {"neg_grad_share", "neg_grad_fraction", "weight_grad_norm_neg", "weight_grad_norm_pos"}
    for on, off in zip(records[0]["layers"], records[1]["layers"]):
        assert on["neg_grad_share"] is not None and off["neg_grad_share"] is None
        assert off["neg_grad_fraction"] is None
        assert off["weight_grad_norm_neg"] == off["weight_grad_norm_pos"] == 0.0
        assert_close({k: v for k, v in off.items() if k not in split_keys},
                     {k: v for k, v in on.items() if k not in split_keys}, "split off")
    with pytest.raises(ProbeError, match="gradient_split"):
        track(make(), gradient_split="no")


def test_forward_passes_without_autograd_are_not_recorded() -> None:
    model = forced_dead("relu")
    X, Y = data(16)
    with track(model) as tracker:
        with torch.no_grad():
            model(torch.randn(100, 4))  # an evaluation pass inside a recorded step
        ((model(X) - Y) ** 2).sum().backward()
        record = tracker.step()
    assert record["samples"] == 16
    assert record["layers"][0]["samples"] == 16


def test_a_step_without_backward_has_no_gradient_keys(caplog) -> None:
    model = forced_dead("relu")
    with caplog.at_level(logging.WARNING, logger="probe.track"), track(model) as tracker:
        model(torch.randn(5, 4))
        record = tracker.step()
        assert tracker.step() is None  # no forward at all: nothing to record
    assert "dead_units" in record["layers"][0] and "grad_ratio" not in record["layers"][0]
    assert "no backward pass" in caplog.text and "no forward pass" in caplog.text


def test_every_and_hooks_only_on_recorded_steps() -> None:
    model = forced_dead("leaky")
    X, Y = data(8)
    attached = []
    with track(model, every=3) as tracker:
        for _ in range(8):
            attached.append(len(model[0]._forward_hooks))
            ((model(X) - Y) ** 2).sum().backward()
            tracker.step()
    assert attached == [1, 0, 0, 1, 0, 0, 1, 0]
    assert [r["step"] for r in tracker.history] == [0, 3, 6]
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def _inert_hooks(model: nn.Module) -> int:
    """The model's hooks, all of which must be probe's inert ones (a copy's or an unpickled model's)."""
    hooks = [h for m in model.modules() for table in (m._forward_hooks, m._forward_pre_hooks)
             for h in table.values()]
    assert all(isinstance(h, InertHook) for h in hooks)
    return len(hooks)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, None])
@pytest.mark.parametrize("training", [True, False])
def test_hooks_are_removed_on_success_exception_and_interrupt(error, training: bool, tmp_path) -> None:
    model = forced_dead("relu_")
    model.train(training)
    X, Y = data(8)
    path = tmp_path / "h.jsonl"
    with pytest.raises(error) if error else _nothing():
        with track(model, path, every=1) as tracker:
            for step in range(4):
                assert _hooks(model) == 3  # one per Linear
                loss = ((model(X) - Y) ** 2).sum()
                loss.backward()
                tracker.step(loss)
                if error is not None and step == 2:
                    model(X)  # a forward whose backward never comes
                    raise error("stop")
    assert _hooks(model) == 0
    assert model.training is training and all(m.training is training for m in model.modules())
    lines = path.read_text().splitlines()
    records = 3 if error else 4  # the step that raised was recorded before it raised
    assert len(lines) == 1 + records and all(json.loads(line) for line in lines)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_crash_mid_run_leaves_a_valid_history(tmp_path) -> None:
    path = tmp_path / "crash.jsonl"
    script = textwrap.dedent(f"""
        import os, torch
        from torch import nn
        import probe
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with probe.track(model, {str(path)!r}, every=2) as tracker:
            for step in range(9):
                loss = model(torch.randn(16, 3)).pow(2).mean()
                opt.zero_grad(); loss.backward(); opt.step()
                tracker.step(loss)
                if step == 6:
                    os._exit(3)  # killed outright: no exit handler, no close()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    lines = path.read_text().splitlines()
    assert [json.loads(line).get("step") for line in lines] == [None, 0, 2, 4, 6]
    history = read_history(path)
    assert [r["step"] for r in history.records] == [0, 2, 4, 6] and not history.notes
    with open(path, "a") as fh:  # a write cut short by the crash
        fh.write('{"step": 8, "layers": [{"dead_u')
    cut = read_history(path)
    assert len(cut.records) == 4 and "cut short" in cut.notes[0]


def test_history_in_memory_equals_the_file(tmp_path) -> None:
    X, Y = data(8)
    runs = []
    for path in (None, tmp_path / "run.jsonl"):
        model = forced_dead("leaky")
        with track(model, path) as tracker:
            for _ in range(3):
                ((model(X) - Y) ** 2).sum().backward()
                tracker.step()
        runs.append([{k: v for k, v in r.items() if k not in ("time", "elapsed")} for r in tracker.history])
    assert runs[0] == json.loads(json.dumps(runs[1]))
    header = json.loads((tmp_path / "run.jsonl").read_text().splitlines()[0])
    assert header["format"] == "probe-track/1" and header["model"] == "4-6-5-2 leaky:0.1"
    assert header["every"] == 1 and header["units"] == [6, 5]


# -- the window of recorded steps -------------------------------------------------------------------


def gate() -> nn.Sequential:
    """1 -> 2 -> 1 ReLU: unit 0 is active when x > 0, unit 1 when x < 0."""
    model = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model[0].bias.zero_()
        model[2].weight.fill_(1.0)
    return model


def test_window_dead_separates_dead_on_this_batch_from_dead() -> None:
    model = gate()
    negative, positive = -torch.rand(6, 1) - 0.1, torch.rand(6, 1) + 0.1
    sequence = [negative, negative, negative, negative, positive, negative, negative, negative]
    with track(model, window=3) as tracker:
        for x in sequence:
            model(x).sum().backward()
            tracker.step()
    unit0 = [(r["layers"][0]["dead_units"], r["layers"][0]["window_dead_units"], r["layers"][0]["revived_units"])
             for r in tracker.history]
    # unit 0 is dead on every negative batch; unit 1 on the positive one
    assert unit0 == [(1, 1, 0), (1, 1, 0), (1, 1, 0), (1, 1, 0), (1, 0, 1), (1, 0, 0), (1, 0, 0), (1, 1, 0)]
    assert [r["layers"][0]["window_records"] for r in tracker.history] == [1, 2, 3, 3, 3, 3, 3, 3]


def test_dead_window_counts_records_not_steps() -> None:
    window = DeadWindow(2)
    t, f = True, False
    seq = [[t, f, f], [f, f, t], [f, f, f], [f, t, f], [f, f, f], [f, f, f]]
    got = [window.update(__import__("numpy").array(m), (len(m),))[0] for m in seq]
    assert [c.window_dead_units for c in got] == [2, 1, 2, 2, 2, 3]
    assert [c.revived_units for c in got] == [0, 1, 0, 1, 0, 0]


def test_alerts_once_per_crossing_and_on_growth(caplog) -> None:
    monitor = AlertMonitor(window=3, dead_share=0.25, growth=0.10)
    shares = [0.0, 0.05, 0.30, 0.30, 0.20, 0.26, 0.26]
    kinds = [[a.kind for a in monitor.update(step, [s])] for step, s in enumerate(shares)]
    assert kinds == [[], [], ["dead_share", "dead_growth"], [], [], ["dead_share"], []]
    model = gate()
    seen = []
    with caplog.at_level(logging.WARNING, logger="probe.track"):
        with track(model, window=2, on_alert=seen.append) as tracker:
            for x in (torch.ones(4, 1), -torch.ones(4, 1), -torch.ones(4, 1)):
                model(x).sum().backward()
                tracker.step()
    # unit 1 is dead on the positive batch: 50% window-dead at step 0; the window then holds
    # both signs (0%) until two negative batches make unit 0 window-dead (50%, up 50 points) again
    assert [(a["step"], a["kind"]) for a in seen] == [(0, "dead_share"), (2, "dead_share"), (2, "dead_growth")]
    assert all(a["layer"] == 1 for a in seen) and seen[2]["previous"] == 0.0
    assert tracker.history[0]["alerts"] == [seen[0]] and tracker.history[1]["alerts"] == []
    assert "step 0: hidden layer 1 has 50.0% window-dead units" in caplog.text


# -- what is accepted and refused --------------------------------------------------------------------


class FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 7), nn.Linear(7, 7), nn.Linear(7, 2)

    def forward(self, x):
        return self.c(F.leaky_relu(self.b(torch.relu(self.a(x))), 0.2))


def test_any_model_analyze_accepts_is_tracked() -> None:
    model = FunctionalNet()
    X, Y = data(8)
    with track(model) as tracker:
        want = reference(nn.Sequential(model.a, nn.ReLU(), model.b, nn.LeakyReLU(0.2), model.c), [(X, Y)])
        ((model(X) - Y) ** 2).sum().backward()
        record = tracker.step()
    assert [lay["negative_slope"] for lay in record["layers"]] == [0.0, 0.2]
    for got, layer in zip(record["layers"], want["layers"]):
        assert_close(got, {k: v for k, v in layer.items() if k != "active_mask"}, "functional")
    mlp = probe.MLP.build([4, 5, 2], "prelu")
    loaded = probe.as_model(mlp)
    with track(loaded) as tracker:  # a LoadedModel: its .mlp is what is trained
        mlp(X).sum().backward()
        assert tracker.step()["layers"][0]["negative_slope"] == 0.25


@pytest.mark.parametrize("model, needle", [
    ("model.pt", "needs the module itself"),
    (nn.Sequential(nn.Conv1d(1, 1, 1)), "not an MLP"),
    (nn.Sequential(nn.Linear(3, 3), nn.Sigmoid(), nn.Linear(3, 1)), "not an MLP"),
    (nn.Sequential(nn.Linear(3, 3), nn.RReLU(), nn.Linear(3, 1)), "cannot record an RReLU"),
])
def test_refuses_what_analyze_refuses(model, needle) -> None:
    with pytest.raises(ModelLoadError, match=needle):
        track(model)


def test_refuses_a_linear_applied_twice_and_bad_options() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.out = nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x):
            return self.out(torch.relu(self.lin(torch.relu(self.lin(x)))))

    with pytest.raises(ModelLoadError, match="more than once"):
        track(Twice())
    model = gate()
    for options in ({"every": 0}, {"window": 1.5}, {"alert_dead_share": 2.0}, {"on_alert": 3}):
        with pytest.raises(ProbeError):
            track(model, **options)
    with track(model) as tracker, pytest.raises(ProbeError, match="not a number"):
        model(torch.ones(2, 1)).sum().backward()
        tracker.step(torch.ones(3))
    with pytest.raises(ProbeError, match="already open"):
        with track(model) as tracker:
            tracker.open()
    assert _hooks(model) == 0


def test_track_is_on_the_package_face() -> None:
    assert probe.track is track and isinstance(track(gate()), Tracker)


def test_the_readme_loop_runs_and_its_history_reads(tmp_path, monkeypatch, capsys) -> None:
    """The README's probe.track example, as printed there, then probe history on what it wrote."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"<!-- track -->\n```python\n(.*?)```", text, re.S)
    assert block, "README has no <!-- track --> python block"
    monkeypatch.chdir(tmp_path)
    logging.getLogger("probe.track").setLevel(logging.ERROR)
    try:
        exec(compile(block.group(1), "README track snippet", "exec"), {"__name__": "readme"})
    finally:
        logging.getLogger("probe.track").setLevel(logging.NOTSET)
    assert "of 64 units in layer 2 are dead" in capsys.readouterr().out
    for name in ("relu", "leaky"):
        history = read_history(tmp_path / "runs" / f"{name}.jsonl")
        assert len(history.records) == 168 and history.records[-1]["step"] == 835


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_a_model_on_the_gpu_gives_the_cpu_reference(device: str) -> None:
    """The CPU run checks the test (SGD at lr 0.05 on 64 samples had diverged to inf by step 2)."""
    model = forced_dead("leaky").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    X, Y = data()
    with track(model) as tracker:
        for step in range(4):
            x, y = X[8 * step:8 * step + 8], Y[8 * step:8 * step + 8]
            want = reference(copy.deepcopy(model).cpu(), [(x, y)])
            loss = ((model(x.to(device)) - y.to(device)) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            record = tracker.step(loss)
            for got, layer in zip(record["layers"], want["layers"]):
                assert_close(got, {k: v for k, v in layer.items() if k != "active_mask"}, f"{device} step {step}")
            assert_close(record["sign"], want["sign"], f"{device} sign")


def test_a_diverging_loop_warns_once_and_writes_strict_json(tmp_path, caplog) -> None:
    """SGD at lr 0.05 on this sum-of-squares loss overflows to inf by step 2 and NaN by step 3."""
    model = forced_dead("leaky")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    X, Y = data(64)
    path = tmp_path / "diverged.jsonl"
    with caplog.at_level(logging.WARNING, logger="probe.track"), track(model, path) as tracker:
        for _ in range(6):
            loss = ((model(X) - Y) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tracker.step(loss)
    warnings = [r.getMessage() for r in caplog.records if "training has diverged" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}: step 3: the loss is nan")

    def refuse(constant: str) -> None:
        raise ValueError(f"non-strict JSON constant {constant}")

    lines = [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]
    assert len(lines) == 7 and lines[4]["loss"] is None and lines[1]["loss"] == pytest.approx(930.035, rel=1e-5)
