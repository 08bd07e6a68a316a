"""The training losses of the ensemble, per member: ``mse`` or ``cross_entropy``.

The arithmetic is :mod:`probe.core.losses`' (the same names mean the same
numbers everywhere); here it is applied to ``[M, B, K]`` outputs. Targets are
``[M, B, K]`` or ``[B, K]`` floats (shared by every member); for
``cross_entropy`` they are class indices in one column, stored as floats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from probe.core.losses import member_mse, squared_error

TRAIN_LOSSES = ("mse", "cross_entropy")


def _labels(y: torch.Tensor, members: int, batch: int) -> torch.Tensor:
    return y.reshape(-1, batch).long().expand(members, batch).reshape(-1)


def member_sample_losses(loss: str, out: torch.Tensor, y: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample losses ``[M, B]`` and, for ``cross_entropy``, correct predictions ``[M, B]`` (0/1 floats)."""
    if loss == "mse":
        return squared_error(out, y), None
    m, b, k = out.shape
    labels = _labels(y, m, b)
    per = F.cross_entropy(out.reshape(-1, k), labels, reduction="none").reshape(m, b)
    correct = (out.reshape(-1, k).argmax(-1) == labels).reshape(m, b).float()
    return per, correct


def member_loss(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch loss of every member, ``[M]``: the mean over the batch (and outputs, for mse)."""
    if loss == "mse":
        return member_mse(out, y)
    return member_sample_losses(loss, out, y)[0].mean(1)
