"""Diagnostics of every member of an :class:`Ensemble`, fed through :class:`probe.diagnostics.Collector`.

Three uses, from cheapest to fullest, all in eval mode (running BatchNorm
statistics, no dropout, RReLU at its mean slope):

* :func:`activity_at` — one forward pass: the per-layer dead rate and whether
  each member is *collapsed* (some hidden layer with every unit at ``z <= 0`` on
  every sample; "born dead" when measured at initialisation).
* :func:`probe_batch_stats` — forward and backward on a fixed probe batch each
  epoch: dead rate and ``grad_ratio`` per layer (definitions as in
  :mod:`probe.diagnostics.activity` and :mod:`probe.diagnostics.gradients`).
* :func:`member_diagnostics` — everything ``probe analyze`` reports, per member,
  over the evaluation set, with full-set gradients.

With variants outside the ReLU family the members form several activation
groups (:attr:`Ensemble.groups`); each group has its own Collector, fed its
slice of the members. A BatchNorm is diagnosed as ``probe analyze`` sees the
saved model, folded into its Linear: ``z`` is the norm's output and ``dL/dz``
splits the folded weight's gradient. A LayerNorm is diagnosed as analyze
diagnoses one in the chain (``dL/dz`` for the ratios, ``dL/du`` for the split).
"""

from __future__ import annotations

import torch

from probe.core.losses import batch_share
from probe.diagnostics import Collector, NetworkDiagnostics
from probe.engines.training.ensemble import Ensemble, Taps
from probe.engines.training.objective import member_loss, member_sample_losses


def _batches(n: int, size: int):
    return ((lo, min(lo + size, n)) for lo in range(0, n, size))


def _collectors(ens: Ensemble, final: bool = False, **kwargs) -> list[Collector]:
    """One Collector per activation group (with its slice of the final layer when ``final``)."""
    out = []
    for g in ens.groups:
        w = ens.weights[-1].detach()[g.slice] if final else None
        b = ens.biases[-1].detach()[g.slice] if final else None
        out.append(Collector(ens.n_hidden, w, b, **kwargs))
    return out


def _dead_rates(collectors: list[Collector]) -> torch.Tensor:
    """``[M, L]`` fraction of units active on no sample, read from the activity counts."""
    return torch.cat([torch.stack([a.dead_rates() for a in c.activity], 1) for c in collectors])


def _feed_backward(ens: Ensemble, collectors: list[Collector], taps: Taps, pending, loss: torch.Tensor) -> None:
    """``dL/dz`` (and ``dL/du`` under a LayerNorm) of every hidden layer, fed group by group."""
    zs = [z for z, _ in taps]
    us = [u for _, u in taps if u is not None]
    grads = torch.autograd.grad(loss, zs + us)
    g_z, g_u = grads[:len(zs)], grads[len(zs):]
    for i, per_group in enumerate(pending):
        for c, g, p in zip(collectors, ens.groups, per_group):
            if g_u:
                c.backward_z(p, g_z[i][g.slice])
                c.backward_u(p, g_u[i][g.slice])
            else:
                c.backward(p, g_z[i][g.slice])


@torch.no_grad()
def activity_at(ens: Ensemble, X: torch.Tensor, batch_size: int = 8192
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dead rate per layer and collapse flag of every member on inputs ``X`` ``[N, F]``.

    Returns:
        ``(dead_rate [M, L] float64, collapsed [M] bool)`` on the CPU.
    """
    collectors = _collectors(ens, gradients=False)
    X = X.to(ens.device)
    for lo, hi in _batches(X.shape[0], batch_size):
        ens.forward(X[lo:hi], collectors)
    dead = _dead_rates(collectors).cpu()
    return dead, (dead == 1.0).any(1)


def probe_batch_stats(ens: Ensemble, X: torch.Tensor, y: torch.Tensor, loss: str = "mse"
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dead rate and ``grad_ratio`` per layer on one fixed batch, for every member.

    ``grad_ratio`` = mean ``|dL/dz|`` over entries with ``z <= 0`` divided by the
    mean over entries with ``z > 0`` (NaN where either side is empty or the
    positive side has zero gradient). ``L`` is each member's batch loss.

    Returns:
        ``(dead_rate [M, L], grad_ratio [M, L])``, float64 on the CPU.
    """
    collectors = _collectors(ens, gradients=True, weight_grads=False)
    with torch.enable_grad():
        out, taps, pending = ens.forward(X, collectors)
        total = member_loss(loss, out, y).sum()
        _feed_backward(ens, collectors, [(z, None) for z, _ in taps], pending, total)
    ratios = torch.cat([torch.stack([gs.grad_ratios() for gs in c.gradients], 1) for c in collectors])
    return _dead_rates(collectors).cpu(), ratios.cpu()


@torch.no_grad()
def dataset_loss(ens: Ensemble, X: torch.Tensor, y: torch.Tensor, batch_size: int = 8192,
                 loss: str = "mse") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean loss of every member over a whole set, and accuracy for a classifier.

    Returns:
        ``(loss [M], accuracy [M] or None)``, float64 on the CPU.
    """
    X, y = X.to(ens.device), y.to(ens.device)
    total = torch.zeros(ens.members, dtype=torch.float64, device=ens.device)
    hits = torch.zeros_like(total)
    for lo, hi in _batches(X.shape[0], batch_size):
        out, _, _ = ens.forward(X[lo:hi])
        per, correct = member_sample_losses(loss, out, y[lo:hi])
        total += per.sum(1).double()
        if correct is not None:
            hits += correct.sum(1).double()
    n = X.shape[0]
    return (total / n).cpu(), (hits / n).cpu() if loss == "cross_entropy" else None


def member_diagnostics(ens: Ensemble, X: torch.Tensor, y: torch.Tensor,
                       batch_size: int = 4096, loss: str = "mse") -> list[NetworkDiagnostics]:
    """``probe analyze``'s diagnostics of every member over ``(X, y)``, one per member.

    The loss (``mse`` or ``cross_entropy``) is the mean over the whole set,
    split into batch shares exactly as :func:`probe.core.losses.batch_share`
    does, so the accumulated ``dL/dz`` are full-set gradients; the member
    losses are summed, which leaves each member's gradient its own. Parameter
    gradients are not touched. Under cross-entropy the sign routes describe
    each class's logit margin, as analyze's do.
    """
    X, y = X.to(ens.device), y.to(ens.device)
    collectors = _collectors(ens, final=True, margin=loss == "cross_entropy")
    n, m = X.shape[0], ens.members
    for lo, hi in _batches(n, batch_size):
        with torch.enable_grad():
            out, taps, pending = ens.forward(X[lo:hi], collectors)
            k = out.shape[2]
            yb = y[lo:hi].repeat(m, 1)
            share = batch_share(loss, out.reshape(-1, k), yb[:, 0].long() if loss == "cross_entropy" else yb, n)
            _feed_backward(ens, collectors, taps, pending, share)
    results = []
    for c, g in zip(collectors, ens.groups):
        results.extend(c.cpu().results())  # one read-back of the sums; every member's results at once
    return results
