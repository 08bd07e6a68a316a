"""Train every member of an :class:`Ensemble` at once with one torch optimiser.

Each step takes the next minibatch of every member (members of the same seed
see the same order, see :func:`epoch_order`), computes each member's loss
(mean squared error, or cross-entropy for a classifier, with the share of
correct predictions tracked next to it), sums them and steps one Adam/SGD
(``torch.optim``'s arithmetic, :mod:`probe.engines.training.optim`) over the
batched tensors. Because the member losses are independent and both optimisers
are element-wise, this is exactly per-member training.

Divergence: at the end of every epoch, a member whose step losses in that
epoch include a NaN or inf is marked diverged in that epoch (1-based), its
parameters are rolled back to the start of that epoch and held there (its
loss no longer enters the objective, its parameters are restored after every
step); the other members carry on.

Interruption: a ``KeyboardInterrupt`` during training rolls every member back
to the end of the last completed epoch and returns normally with
``interrupted=True`` and ``epochs_completed`` set, so callers can report
partial results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from probe.core.losses import member_mse
from probe.engines.training.diagnose import probe_batch_stats
from probe.engines.training.ensemble import Ensemble
from probe.engines.training.optim import SGD, Adam
from probe.engines.training.layers import mix_seed
from probe.engines.training.objective import member_sample_losses

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe (see :class:`probe.experiment.scenarios.TrainSpec`)."""

    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    momentum: float = 0.0
    loss: str = "mse"


@dataclass(frozen=True)
class TrainOutcome:
    """What training produced, as tensors (member dimension last or first as noted).

    Attributes:
        step_losses: ``[steps_done, M]`` minibatch losses (NaN after a divergence).
        step_accuracy: ``[steps_done, M]`` minibatch accuracies under cross-entropy, else None.
        steps_per_epoch: Optimiser steps per epoch.
        diverged_epoch: Per member, the 1-based epoch of divergence or None.
        dead_rate: ``[epochs_done + 1, M, L]`` on the probe batch (row 0: at init),
            or None without diagnostics.
        grad_ratio: Same shape as ``dead_rate`` (NaN where undefined), or None.
        epochs_completed: Epochs fully done (less than asked when interrupted).
        interrupted: True when a KeyboardInterrupt stopped training.
    """

    step_losses: torch.Tensor
    steps_per_epoch: int
    diverged_epoch: list[int | None]
    dead_rate: torch.Tensor | None
    grad_ratio: torch.Tensor | None
    epochs_completed: int
    interrupted: bool
    step_accuracy: torch.Tensor | None = None


_mix = mix_seed


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order in which a run with this seed visits the ``n`` training samples in ``epoch`` (0-based)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(_mix(seed, epoch + 1)))


def make_optimizer(params: list[torch.Tensor], config: TrainConfig) -> Adam | SGD:
    """probe's Adam or SGD: ``torch.optim``'s arithmetic without its import of ``torch._dynamo``."""
    if config.optimizer == "adam":
        return Adam(params, lr=config.lr)
    if config.optimizer == "sgd":
        return SGD(params, lr=config.lr, momentum=config.momentum)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def train(ens: Ensemble, X: torch.Tensor, y: torch.Tensor, config: TrainConfig, *,
          probe: tuple[torch.Tensor, torch.Tensor] | None = None,
          progress: Progress | None = None) -> TrainOutcome:
    """Train all members on ``(X [N, F], y [N, K])`` for ``config.epochs`` epochs.

    Args:
        ens: The ensemble (trained in place).
        X: Training inputs. ``y``: training targets.
        config: Optimiser, learning rate, batch size, epochs.
        probe: A fixed ``(X, y)`` batch for per-epoch diagnostics, or None to skip them.
        progress: Called as ``progress(epochs_done, epochs_total)`` after every epoch.
    """
    dev = ens.device
    X, y = X.to(dev), y.to(dev)
    n, m, bs = X.shape[0], ens.members, config.batch_size
    steps_per_epoch = -(-n // bs)
    step_losses = torch.full((config.epochs * steps_per_epoch, m), torch.nan, device=dev)
    classify = config.loss == "cross_entropy"
    step_acc = torch.full_like(step_losses, torch.nan) if classify else None
    history = [probe_batch_stats(ens, *probe, loss=config.loss)] if probe is not None else None
    params = ens.parameters()
    opt = make_optimizer(params, config)
    seed_idx = ens.seed_index().to(dev)
    alive = torch.ones(m, dtype=torch.bool, device=dev)
    frozen: list[torch.Tensor] | None = None  # parameters diverged members are held at
    diverged: list[int | None] = [None] * m
    done, interrupted = 0, False
    snapshot = ens.state()
    try:
        for epoch in range(config.epochs):
            orders = torch.stack([epoch_order(s, epoch, n) for s in ens.seeds]).to(dev)
            idx = orders[seed_idx]  # [M, N]: each member's data order, that of its seed
            xe, ye = X[idx], y[idx]  # [M, N, F]: one gather per epoch
            base = epoch * steps_per_epoch
            for s in range(steps_per_epoch):
                xb, yb = xe[:, s * bs:(s + 1) * bs], ye[:, s * bs:(s + 1) * bs]
                out, _, _ = ens.forward(xb, training=True)
                if classify:
                    per, correct = member_sample_losses(config.loss, out, yb)
                    losses = per.mean(1)
                else:
                    losses = member_mse(out, yb)
                objective = (torch.where(alive, losses, 0.0) if frozen is not None else losses).sum()
                opt.zero_grad(set_to_none=True)
                objective.backward()
                opt.step()
                if frozen is not None:
                    ens.restore(frozen, ~alive)
                step_losses[base + s] = losses.detach()
                if classify:
                    step_acc[base + s] = correct.mean(1)
            if frozen is not None:  # losses of members frozen in earlier epochs mean nothing
                step_losses[base:base + steps_per_epoch, ~alive] = torch.nan
                if classify:
                    step_acc[base:base + steps_per_epoch, ~alive] = torch.nan
            bad = alive & ~torch.isfinite(step_losses[base:base + steps_per_epoch]).all(0)
            if bool(bad.any()):
                for i in bad.nonzero().flatten().tolist():
                    diverged[i] = epoch + 1
                alive &= ~bad
                ens.restore(snapshot, bad)
                frozen = ens.state() if frozen is None else _merge(frozen, ens.state(), bad)
            if history is not None:
                history.append(probe_batch_stats(ens, *probe, loss=config.loss))
            snapshot = ens.state()
            done = epoch + 1
            if progress is not None:
                progress(done, config.epochs)
    except KeyboardInterrupt:
        ens.restore(snapshot)
        interrupted = True
        if history is not None:
            history = history[:done + 1]
    return TrainOutcome(
        step_losses=step_losses[:done * steps_per_epoch].cpu(),
        steps_per_epoch=steps_per_epoch,
        diverged_epoch=diverged,
        dead_rate=torch.stack([h[0] for h in history]) if history else None,
        grad_ratio=torch.stack([h[1] for h in history]) if history else None,
        epochs_completed=done,
        interrupted=interrupted,
        step_accuracy=None if step_acc is None else step_acc[:done * steps_per_epoch].cpu(),
    )


def _merge(old: list[torch.Tensor], new: list[torch.Tensor], members: torch.Tensor) -> list[torch.Tensor]:
    """``old`` with the slices of ``members`` taken from ``new``."""
    out = [o.clone() for o in old]
    for o, n in zip(out, new):
        o[members] = n[members]
    return out
