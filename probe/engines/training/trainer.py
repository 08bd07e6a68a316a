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


#: parameter bytes of one CPU training chunk: a chunk's parameters, gradients and Adam state then stay
#: in a large last-level cache. Measured with 32 MiB of cache: at width 1024 and 100 members, chunks of
#: 2 to 5 members (8 to 21 MiB) 1.5x faster than the whole stack, 10 members 1.2x; at width 512, chunks
#: of 20 members (21 MiB) 3% faster than 10 and 15% faster than 50 or 100. In practice: one chunk up to
#: width ~128 at 350 members, ~22 members at width 512, ~5 at width 1024.
CHUNK_BYTES = 24 * 2**20


def seed_chunks(ens: Ensemble) -> list[tuple[int, int]]:
    """Seed ranges ``(lo, hi)`` trained as one batched chunk each: all seeds at once off the CPU."""
    n = len(ens.seeds)
    if ens.device.type != "cpu":
        return [(0, n)]
    per_seed = len(ens.variants) * sum(p[0].numel() * p.element_size() for p in ens.parameters())
    size = max(1, CHUNK_BYTES // max(per_seed, 1))
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


class _Run:
    """The training state of one chunk: its optimiser, live members, frozen parameters, rollback point."""

    def __init__(self, ens: Ensemble, config: TrainConfig, steps: int,
                 probe: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self.ens, self.config, self.probe = ens, config, probe
        m, dev = ens.members, ens.device
        self.step_losses = torch.full((steps, m), torch.nan, device=dev)
        self.step_acc = torch.full_like(self.step_losses, torch.nan) if config.loss == "cross_entropy" else None
        self.history = [probe_batch_stats(ens, *probe, loss=config.loss)] if probe is not None else None
        self.opt = make_optimizer(ens.parameters(), config)
        self.seed_idx = ens.seed_index().to(dev)
        self.alive = torch.ones(m, dtype=torch.bool, device=dev)
        self.frozen: list[torch.Tensor] | None = None  # parameters diverged members are held at
        self.diverged: list[int | None] = [None] * m
        self.snapshot = ens.state()  # the end of the last epoch that every chunk completed

    def epoch(self, epoch: int, X: torch.Tensor, y: torch.Tensor, steps_per_epoch: int) -> None:
        """Every step of ``epoch``, then the divergence check (see the module docstring)."""
        ens, bs, n = self.ens, self.config.batch_size, X.shape[0]
        classify = self.step_acc is not None
        orders = torch.stack([epoch_order(s, epoch, n) for s in ens.seeds]).to(ens.device)
        idx = orders[self.seed_idx]  # [M, N]: each member's data order, that of its seed
        xe, ye = X[idx], y[idx]  # [M, N, F]: one gather per epoch
        base = epoch * steps_per_epoch
        for s in range(steps_per_epoch):
            xb, yb = xe[:, s * bs:(s + 1) * bs], ye[:, s * bs:(s + 1) * bs]
            out, _, _ = ens.forward(xb, training=True)
            if classify:
                per, correct = member_sample_losses(self.config.loss, out, yb)
                losses = per.mean(1)
            else:
                losses = member_mse(out, yb)
            objective = (torch.where(self.alive, losses, 0.0) if self.frozen is not None else losses).sum()
            self.opt.zero_grad(set_to_none=True)
            objective.backward()
            self.opt.step()
            if self.frozen is not None:
                ens.restore(self.frozen, ~self.alive)
            self.step_losses[base + s] = losses.detach()
            if classify:
                self.step_acc[base + s] = correct.mean(1)
        rows = slice(base, base + steps_per_epoch)
        if self.frozen is not None:  # losses of members frozen in earlier epochs mean nothing
            self.step_losses[rows, ~self.alive] = torch.nan
            if classify:
                self.step_acc[rows, ~self.alive] = torch.nan
        bad = self.alive & ~torch.isfinite(self.step_losses[rows]).all(0)
        if bool(bad.any()):
            for i in bad.nonzero().flatten().tolist():
                self.diverged[i] = epoch + 1
            self.alive &= ~bad
            ens.restore(self.snapshot, bad)
            self.frozen = ens.state() if self.frozen is None else _merge(self.frozen, ens.state(), bad)

    def measure(self) -> None:
        """The probe batch's dead rates and gradient ratios at the end of an epoch, when asked for."""
        if self.history is not None:
            self.history.append(probe_batch_stats(self.ens, *self.probe, loss=self.config.loss))


def train(ens: Ensemble, X: torch.Tensor, y: torch.Tensor, config: TrainConfig, *,
          probe: tuple[torch.Tensor, torch.Tensor] | None = None,
          progress: Progress | None = None) -> TrainOutcome:
    """Train all members on ``(X [N, F], y [N, K])`` for ``config.epochs`` epochs.

    On the CPU, an ensemble whose tensors outgrow :data:`CHUNK_BYTES` is
    trained by seed chunks (:func:`seed_chunks`), epoch by epoch: each epoch
    runs every chunk's steps in turn, so a chunk's parameters and optimiser
    state stay in cache through its steps. Members are independent and every
    operation is per member and independent of an entry's place in the stack
    (:class:`~probe.engines.training.optim.Adam`), so the result is that of one
    batch of all members, bit for bit (``tests/test_training.py``).

    Args:
        ens: The ensemble (trained in place).
        X: Training inputs. ``y``: training targets.
        config: Optimiser, learning rate, batch size, epochs.
        probe: A fixed ``(X, y)`` batch for per-epoch diagnostics, or None to skip them.
        progress: Called as ``progress(epochs_done, epochs_total)`` after every epoch.
    """
    dev = ens.device
    X, y = X.to(dev), y.to(dev)
    steps_per_epoch = -(-X.shape[0] // config.batch_size)
    chunks = seed_chunks(ens)
    subs = [ens] if len(chunks) == 1 else [ens.subset(lo, hi) for lo, hi in chunks]
    runs = [_Run(sub, config, config.epochs * steps_per_epoch, probe) for sub in subs]
    done, interrupted = 0, False
    try:
        for epoch in range(config.epochs):
            for run in runs:
                run.epoch(epoch, X, y, steps_per_epoch)
            for run in runs:
                run.measure()
            # every chunk finished the epoch: it becomes the rollback point (states first, then swapped in);
            # after the last epoch nothing can roll back (a copy of every parameter saved)
            if epoch + 1 < config.epochs:
                for run, state in zip(runs, [run.ens.state() for run in runs]):
                    run.snapshot = state
            done = epoch + 1
            if progress is not None:
                progress(done, config.epochs)
    except KeyboardInterrupt:
        for run in runs:  # back to the end of the last epoch that every chunk completed
            if done < config.epochs:  # (after the last one, in the progress callback: nothing to undo)
                run.ens.restore(run.snapshot)
            if run.history is not None:
                run.history = run.history[:done + 1]
            # a chunk that finished the interrupted epoch may have marked a divergence in it
            run.diverged = [d if d is not None and d <= done else None for d in run.diverged]
        interrupted = True
    if len(chunks) > 1:
        for (lo, hi), sub in zip(chunks, subs):
            ens.absorb(sub, lo, hi)
    order = torch.cat([ens.seed_members(lo, hi) for lo, hi in chunks])  # chunk member -> ensemble member
    inverse = torch.argsort(order)

    def gather(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
        return torch.cat([p.cpu() for p in parts], dim).index_select(dim, inverse)

    rows = done * steps_per_epoch
    diverged = [d for run in runs for d in run.diverged]
    histories = [run.history for run in runs]
    return TrainOutcome(
        step_losses=gather([run.step_losses[:rows] for run in runs], 1),
        steps_per_epoch=steps_per_epoch,
        diverged_epoch=[diverged[i] for i in inverse.tolist()],
        dead_rate=None if probe is None else torch.stack(
            [gather([h[e][0] for h in histories], 0) for e in range(done + 1)]),
        grad_ratio=None if probe is None else torch.stack(
            [gather([h[e][1] for h in histories], 0) for e in range(done + 1)]),
        epochs_completed=done,
        interrupted=interrupted,
        step_accuracy=None if runs[0].step_acc is None else gather([run.step_acc[:rows] for run in runs], 1),
    )


def _merge(old: list[torch.Tensor], new: list[torch.Tensor], members: torch.Tensor) -> list[torch.Tensor]:
    """``old`` with the slices of ``members`` taken from ``new``."""
    out = [o.clone() for o in old]
    for o, n in zip(out, new):
        o[members] = n[members]
    return out
