"""Tiny networks whose diagnostics can be worked out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probe.models import MLP


def set_linear(layer: nn.Linear, weight: list, bias: list) -> nn.Linear:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return layer


@pytest.fixture
def two_unit_leaky() -> MLP:
    """1 -> 2 -> 1 leaky(0.5): z = [x, -x], y = h1 + h2."""
    mlp = MLP.build([1, 2, 1], "leaky:0.5")
    set_linear(mlp[0], [[1.0], [-1.0]], [0.0, 0.0])
    set_linear(mlp[2], [[1.0, 1.0]], [0.0])
    return mlp


@pytest.fixture
def random_mlp() -> MLP:
    torch.manual_seed(0)
    return MLP.build([5, 16, 12, 2], "leaky:0.1")


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(1234)
