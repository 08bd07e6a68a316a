"""Convergence measures computed from the per-step training losses of one run.

Notation: ``l_t`` (``t = 1, 2, ...``) is the loss of the ``t``-th minibatch,
evaluated with the parameters *before* the ``t``-th optimiser step; ``P`` is the
number of steps per epoch.

* **Smoothed loss** ``L_t``: the running mean of the last ``P`` step losses,
  ``L_t = mean(l_{max(1, t-P+1)}, ..., l_t)`` (fewer than ``P`` terms during
  the first epoch). At the end of an epoch it equals that epoch's mean loss.
* **steps_to_target**: the smallest ``t`` with ``L_t <= target_loss``; None if
  no step reaches it (or a non-finite loss came first).
* **loss_auc**: the mean of the per-step losses ``l_t`` over all steps, i.e. the
  area under the per-step loss curve divided by the number of steps (lower is
  faster convergence overall); None when there are no steps or one is non-finite.
* **loss_curve**: the mean step loss of each epoch.
"""

from __future__ import annotations

import math

import torch


def smoothed(losses: torch.Tensor, window: int) -> torch.Tensor:
    """Running mean of the last ``window`` entries along dim 0 (``[steps, ...]``), float64."""
    x = losses.double()
    c = torch.cat([torch.zeros_like(x[:1]), x.cumsum(0)])
    t = torch.arange(1, x.shape[0] + 1, device=x.device)
    lo = (t - window).clamp_min(0)
    n = (t - lo).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return (c[t] - c[lo]) / n


def steps_to_target(losses: torch.Tensor, window: int, target: float) -> list[int | None]:
    """First step ``t`` (1-based) whose smoothed loss is ``<= target``, per column of ``[steps, M]``."""
    if losses.shape[0] == 0:
        return [None] * losses.shape[1]
    sm = smoothed(losses, window)
    # cumsum carries a NaN forward, so nothing after a non-finite loss can count
    hit = torch.nan_to_num(sm, nan=math.inf) <= target
    first = torch.where(hit.any(0), hit.double().argmax(0) + 1, torch.zeros_like(hit[0], dtype=torch.long))
    return [int(v) if v > 0 else None for v in first.tolist()]


def loss_auc(losses: torch.Tensor) -> list[float | None]:
    """Mean per-step loss per column of ``[steps, M]``; None when empty or non-finite."""
    if losses.shape[0] == 0:
        return [None] * losses.shape[1]
    mean = losses.double().mean(0)
    return [float(v) if math.isfinite(v) else None for v in mean.tolist()]


def epoch_curve(losses: torch.Tensor, steps_per_epoch: int) -> list[list[float | None]]:
    """Mean step loss of each epoch, ``[member][epoch]``; None where non-finite."""
    if losses.shape[0] == 0:
        return [[] for _ in range(losses.shape[1])]
    per_epoch = losses.double().reshape(-1, steps_per_epoch, losses.shape[1]).mean(1)  # [E, M]
    return [[float(v) if math.isfinite(v) else None for v in col] for col in per_epoch.T.tolist()]
