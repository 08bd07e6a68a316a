"""probe.track on what users' models do mid-run: slope schedules, frozen first layers, dropout, hooks, checkpoints."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from probe.core.errors import ProbeError
from probe.engines.analysis import diagnose
from probe.engines.track import track
from tests.test_track import assert_close

SPLIT = {"neg_grad_share", "neg_grad_fraction", "weight_grad_norm_neg", "weight_grad_norm_pos"}
GRADIENT = {"grad_neg_mean_abs", "grad_pos_mean_abs", "grad_ratio", "upstream_ratio"} | SPLIT


def _layer_keys(record: dict, analyzed: dict, layers: range, where: str, keys=None) -> None:
    for i in layers:
        got, want = record["layers"][i], analyzed["layers"][i]
        want = {k: v for k, v in want.items() if keys is None or k in keys}
        assert_close({k: got[k] for k in want}, want, f"{where} layer {i}")


@pytest.mark.parametrize("norm", [False, True])  # fast path; general path (a LayerNorm between)
def test_a_slope_changed_mid_run_is_read_at_each_recorded_step(norm: bool) -> None:
    torch.manual_seed(0)
    act = nn.LeakyReLU(0.1)
    model = nn.Sequential(nn.Linear(4, 16), *([nn.LayerNorm(16)] if norm else []), act, nn.Linear(16, 1))
    X, Y = torch.randn(64, 4), torch.randn(64, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with track(model) as tracker:
        for step, slope in enumerate([0.1, 0.3, 0.0]):  # a slope schedule, down to a ReLU
            act.negative_slope = slope
            before = copy.deepcopy(model)
            opt.zero_grad()
            F.mse_loss(model(X), Y).backward()
            opt.step()
            record = tracker.step()
            assert record["layers"][0]["negative_slope"] == slope
            _layer_keys(record, diagnose(before, X, Y).to_dict(), range(1), f"step {step}")


@pytest.mark.parametrize("norm", [False, True])
def test_a_frozen_first_layer_is_recorded_without_its_gradient(norm: bool, caplog) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), *([nn.LayerNorm(16), nn.GELU()] if norm else [nn.ReLU()]),
                          nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    model[0].requires_grad_(False)  # fine-tuning: the first layer fixed
    X, Y = torch.randn(64, 4), torch.randn(64, 1)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    with caplog.at_level(logging.WARNING, logger="probe.track"), track(model) as tracker:
        for step in range(3):
            before = copy.deepcopy(model)
            opt.zero_grad()
            F.mse_loss(model(X), Y).backward()
            opt.step()
            record = tracker.step()
            analyzed = diagnose(before, X, Y).to_dict()
            kept = set(analyzed["layers"][0]) - (SPLIT if norm else GRADIENT)
            _layer_keys(record, analyzed, range(1), f"step {step}", kept)
            _layer_keys(record, analyzed, range(1, 2), f"step {step}")
            # its z takes no gradient (a LayerNorm after it does: the ratios are there, the split is not)
            assert ("grad_ratio" in record["layers"][0]) == norm
            if norm:
                assert record["layers"][0]["neg_grad_share"] is None
    assert "no backward pass" not in caplog.text and "no forward pass" not in caplog.text


class _FunctionalDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(F.dropout(self.fc1(x), 0.5, self.training)))


@pytest.mark.parametrize("functional", [False, True])
def test_a_dropout_before_the_activation_is_measured_where_the_activation_reads(functional: bool) -> None:
    torch.manual_seed(0)
    model = _FunctionalDropout() if functional else \
        nn.Sequential(nn.Linear(4, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 1))
    act = model.act if functional else model[2]
    seen = {}
    act.register_forward_pre_hook(lambda m, inputs: seen.update(z=inputs[0].detach().clone()))
    with track(model) as tracker:
        model(torch.randn(64, 4)).sum().backward()
        record = tracker.step()
    z = seen["z"]  # the activation's input: the Linear's output after dropout
    assert record["layers"][0]["neg_region_fraction"] == pytest.approx(float((z <= 0).float().mean()), abs=1e-9)
    assert record["layers"][0]["dead_units"] == int(((z <= 0).all(0)).sum())


def test_a_per_channel_prelu_on_a_3d_batch_is_refused() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.PReLU(8), nn.Linear(8, 1))
    with track(model) as tracker:
        with pytest.raises(ProbeError, match="per-channel PReLU on inputs of more than 2 dimensions"):
            model(torch.randn(16, 8, 8))
        model(torch.randn(16, 8)).sum().backward()  # [batch, units]: recorded
        assert tracker.step()["samples"] == 16


@pytest.mark.parametrize("general", [False, True])
def test_a_users_masking_hook_is_seen_from_the_step_after_it_is_registered(general: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.GELU() if general else nn.ReLU(), nn.Linear(16, 1))
    X = torch.randn(64, 4)
    mask = torch.arange(16) < 4  # units 4.. silenced by the user's hook: z = 0 there, so 12 dead units
    with track(model) as tracker:
        model(X).sum().backward()
        assert tracker.step()["layers"][0]["dead_units"] < 12
        model[0].register_forward_hook(lambda m, i, out: out * mask)
        model(X).sum().backward()
        tracker.step()  # the step it was registered in
        model(X).sum().backward()
        assert tracker.step()["layers"][0]["dead_units"] >= 12


@pytest.mark.parametrize("general", [False, True])
def test_non_reentrant_checkpointing_is_not_taken_for_an_evaluation(general: bool, caplog) -> None:
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Linear(4, 16), nn.GELU() if general else nn.ReLU(), nn.Linear(16, 1))
    with caplog.at_level(logging.WARNING, logger="probe.track"), track(inner) as tracker:
        checkpoint(inner, torch.randn(32, 4), use_reentrant=False).sum().backward()
        tracker.step()
    assert "no backward pass" not in caplog.text


@pytest.mark.parametrize("general", [False, True])
def test_linear_probing_with_every_hidden_layer_frozen_says_nothing(general: bool, caplog) -> None:
    torch.manual_seed(0)
    act = nn.GELU if general else nn.ReLU
    model = nn.Sequential(nn.Linear(4, 16), act(), nn.Linear(16, 16), act(), nn.Linear(16, 1))
    for layer in (model[0], model[2]):
        layer.requires_grad_(False)
    with caplog.at_level(logging.WARNING, logger="probe.track"), track(model) as tracker:
        model(torch.randn(32, 4)).pow(2).mean().backward()
        record = tracker.step()
    assert record["samples"] == 32 and all("grad_ratio" not in layer for layer in record["layers"])
    assert not caplog.records
