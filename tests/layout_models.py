"""Models built with torch itself for the state_dict layout and layer-order tests."""

from __future__ import annotations

import torch
from torch import nn

from probe.models import MLP


class Shuffled(nn.Module):
    """Registers fc1, fc3, fc2, out; calls fc1 -> fc2 -> fc3 -> out (``order`` picks the calls)."""

    def __init__(self, widths: tuple[int, ...], order: tuple[str, ...] = ("fc1", "fc2", "fc3", "out")) -> None:
        super().__init__()
        w = widths
        self.fc1 = nn.Linear(w[0], w[1])
        self.fc3 = nn.Linear(w[2], w[3])
        self.fc2 = nn.Linear(w[1], w[2])
        self.out = nn.Linear(w[3], w[4])
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order[:-1]:
            x = torch.relu(getattr(self, name)(x))
        return getattr(self, self.order[-1])(x)


def same(mlp: MLP, reference: nn.Module) -> None:
    x = torch.randn(64, mlp.widths[0]) * 2
    with torch.no_grad():
        assert torch.allclose(mlp(x), reference.eval()(x), atol=1e-5)


def order_warnings(loaded) -> list[str]:
    return [w for w in loaded.warnings if w.startswith("Layer order not verified")]


def sequential(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def save(obj: object, path) -> object:
    torch.save(obj, path)
    return path
