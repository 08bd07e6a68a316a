"""probe.track's sign routes of a classifier's logit margins (sign_target="margin"), against probe analyze."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from probe.core.errors import ProbeError
from probe.engines.analysis import diagnose
from probe.engines.track import track
from tests.test_track import assert_close


@pytest.mark.parametrize("act", [nn.ReLU, lambda: nn.LeakyReLU(0.1), nn.GELU])  # fast path twice, general path
def test_margin_routes_equal_analyze_on_the_same_batches(act) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 12), act(), nn.Linear(12, 12), act(), nn.Linear(12, 3))
    X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with track(model, sign_target="margin") as tracker:
        for step in range(3):
            before = copy.deepcopy(model)
            opt.zero_grad()
            for half in (slice(0, 40), slice(40, 64)):  # two micro-batches: the routes stream over both
                F.cross_entropy(model(X[half]), y[half]).backward()
            opt.step()
            record = tracker.step()
            analyzed = diagnose(before, X, y, loss="cross_entropy").to_dict()
            assert [(s["output"], s["target"]) for s in record["sign"]] == [(k, "margin") for k in range(3)]
            assert [set(s) for s in record["sign"]] == [set(s) for s in analyzed["sign"]]
            assert_close(record["sign"], analyzed["sign"], f"step {step} sign")
    assert tracker.header["sign_target"] == "margin"


def test_logit_routes_stay_the_default_and_margins_need_classes() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with track(model) as tracker:
        model(torch.randn(8, 4)).sum().backward()
        assert {s["target"] for s in tracker.step()["sign"]} == {"logit"}
    with pytest.raises(ProbeError, match="'logit' or 'margin'"):
        track(model, sign_target="margins")
    with pytest.raises(ProbeError, match="needs a classifier's logits"):
        track(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)), sign_target="margin")
