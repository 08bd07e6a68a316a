"""Fresh float32 modules holding copies of a source's tensors: nothing else of the source comes along."""

from __future__ import annotations

import torch
from torch import nn


def float_copy(t: torch.Tensor) -> torch.Tensor:
    """A dense float32 copy on the same device (a stride-0 view becomes real memory: check first)."""
    out = torch.empty(tuple(t.shape), dtype=torch.float32, device=t.device)
    with torch.no_grad():
        out.copy_(t.detach())
    return out


def new_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A fresh ``nn.Linear`` holding float32 copies of ``weight`` (out x in) and ``bias``."""
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    lin.weight = nn.Parameter(float_copy(weight))
    if bias is not None:
        lin.bias = nn.Parameter(float_copy(bias))
    return lin


def new_prelu(weight: torch.Tensor) -> nn.PReLU:
    """A fresh ``nn.PReLU`` holding a float32 copy of the slopes ``weight``."""
    act = nn.PReLU(num_parameters=max(weight.numel(), 1))
    act.weight = nn.Parameter(float_copy(weight.reshape(-1)))
    return act
