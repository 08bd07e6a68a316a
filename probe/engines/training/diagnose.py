"""Diagnostics of every member of an :class:`Ensemble`, fed through :class:`probe.diagnostics.Collector`.

Three uses, from cheapest to fullest:

* :func:`activity_at` — one forward pass: the per-layer dead rate and whether
  each member is *collapsed* (some hidden layer with every unit at ``z <= 0`` on
  every sample; "born dead" when measured at initialisation).
* :func:`probe_batch_stats` — forward and backward on a fixed probe batch each
  epoch: dead rate and ``grad_ratio`` per layer (definitions as in
  :mod:`probe.diagnostics.activity` and :mod:`probe.diagnostics.gradients`).
* :func:`member_diagnostics` — everything ``probe analyze`` reports, per member,
  over the evaluation set, with full-set gradients.
"""

from __future__ import annotations

import torch

from probe.core.losses import batch_share, member_mse, squared_error
from probe.diagnostics import Collector, NetworkDiagnostics
from probe.engines.training.ensemble import Ensemble


def _batches(n: int, size: int):
    return ((lo, min(lo + size, n)) for lo in range(0, n, size))


def _dead_rates(collector: Collector) -> torch.Tensor:
    """``[M, L]`` fraction of units active on no sample, read from the activity counts."""
    return torch.stack([a.dead_rates() for a in collector.activity], 1)


@torch.no_grad()
def activity_at(ens: Ensemble, X: torch.Tensor, batch_size: int = 8192
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dead rate per layer and collapse flag of every member on inputs ``X`` ``[N, F]``.

    Returns:
        ``(dead_rate [M, L] float64, collapsed [M] bool)`` on the CPU.
    """
    collector = Collector(ens.n_hidden, gradients=False)
    X = X.to(ens.device)
    for lo, hi in _batches(X.shape[0], batch_size):
        ens.forward(X[lo:hi], collector)
    dead = _dead_rates(collector).cpu()
    return dead, (dead == 1.0).any(1)


def probe_batch_stats(ens: Ensemble, X: torch.Tensor, y: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dead rate and ``grad_ratio`` per layer on one fixed batch, for every member.

    ``grad_ratio`` = mean ``|dL/dz|`` over entries with ``z <= 0`` divided by the
    mean over entries with ``z > 0`` (NaN where either side is empty or the
    positive side has zero gradient). ``L`` is each member's batch MSE.

    Returns:
        ``(dead_rate [M, L], grad_ratio [M, L])``, float64 on the CPU.
    """
    collector = Collector(ens.n_hidden, gradients=True, weight_grads=False)
    with torch.enable_grad():
        out, zs, pending = ens.forward(X, collector)
        loss = member_mse(out, y).sum()
        grads = torch.autograd.grad(loss, zs)
    for p, g in zip(pending, grads):
        collector.backward(p, g)
    ratios = [gs.grad_ratios() for gs in collector.gradients]
    return _dead_rates(collector).cpu(), torch.stack(ratios, 1).cpu()


@torch.no_grad()
def dataset_loss(ens: Ensemble, X: torch.Tensor, y: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Mean squared error of every member over a whole set, ``[M]`` float64 on the CPU."""
    X, y = X.to(ens.device), y.to(ens.device)
    total = torch.zeros(ens.members, dtype=torch.float64, device=ens.device)
    for lo, hi in _batches(X.shape[0], batch_size):
        out, _, _ = ens.forward(X[lo:hi])
        total += squared_error(out, y[lo:hi]).sum(1).double()
    return (total / X.shape[0]).cpu()


def member_diagnostics(ens: Ensemble, X: torch.Tensor, y: torch.Tensor,
                       batch_size: int = 4096) -> list[NetworkDiagnostics]:
    """``probe analyze``'s diagnostics of every member over ``(X, y)``, one per member.

    The loss is the MSE over the whole set, split into batch shares exactly as
    :func:`probe.core.losses.batch_share` does, so the accumulated ``dL/dz`` are full-set
    gradients; the member losses are summed, which leaves each member's
    gradient its own. Parameter gradients are not touched.
    """
    X, y = X.to(ens.device), y.to(ens.device)
    final_w, final_b = ens.weights[-1].detach(), ens.biases[-1].detach()
    collector = Collector(ens.n_hidden, final_w, final_b)
    n, m = X.shape[0], ens.members
    for lo, hi in _batches(n, batch_size):
        with torch.enable_grad():
            out, zs, pending = ens.forward(X[lo:hi], collector)
            k = out.shape[2]
            loss = batch_share("mse", out.reshape(-1, k), y[lo:hi].repeat(m, 1), n)
            grads = torch.autograd.grad(loss, zs)
        for p, g in zip(pending, grads):
            collector.backward(p, g)
    return [collector.result(i) for i in range(m)]
