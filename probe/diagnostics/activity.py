"""Unit activity: dead, near-dead and dormant units, and output magnitude per side.

Definitions (hidden layer whose activation ``h = f(z)`` has input ``z``; for
the ReLU family with negative slope ``a``, ``h = z`` where ``z > 0`` and
``h = a * z`` elsewhere):

* A unit is *active* on a sample when ``z > 0``. The negative region is
  ``z <= 0`` (PyTorch's convention at exactly 0).
* ``dead``: active on no sample of the evaluation set.
* ``near_dead``: active on fewer than ``near_dead_threshold`` (default 1%) of
  the samples; dead units are included, so ``near_dead_units >= dead_units``.
* ``dormant`` (ReDo, Sokar et al. 2023): the unit's mean ``|h|`` divided by the
  layer's mean over units of that quantity is at most ``tau`` (0.025). When the
  whole layer outputs zeros every unit is dormant.
* Output magnitude: mean ``|h|`` over negative-region entries against mean
  ``|h|`` over positive-region entries (entries = sample x unit pairs).
* ``local_slope_neg``: the mean of the activation's derivative ``f'(z)`` over
  the negative-region entries: the slope itself for a leaky ReLU (0 for ReLU),
  ``alpha * exp(z)`` averaged over the data for ELU, and so on.
* ``act_mean``: the mean of ``h`` over all entries, signed. ReLU outputs are
  never negative, so it is positive; negative values pull it towards 0, the
  "bias shift" that Clevert et al. 2016 argue slows learning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from probe.diagnostics.segments import QUANTILES, segment_histograms, segment_layout, segment_quantiles


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


@dataclass(frozen=True)
class ActivityResult:
    """Activity diagnostics of one hidden layer of one network."""

    units: int
    samples: int
    dead_units: int
    dead_rate: float
    near_dead_units: int
    near_dead_threshold: float
    dormant_units: int
    dormant_tau: float
    active_fraction_mean: float
    active_fraction_quantiles: dict[str, float]
    active_fraction_histogram: list[int]
    act_neg_mean_abs: float | None
    act_pos_mean_abs: float | None
    act_ratio: float | None
    neg_region_fraction: float
    act_mean: float
    local_slope_neg: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def negative_mask(z: torch.Tensor) -> torch.Tensor:
    """``[z <= 0]`` as 0/1 in ``z``'s dtype, written in one pass (no boolean intermediate)."""
    return torch.le(z, 0, out=torch.empty_like(z))


class ActivityStats:
    """Streams per-unit counts and sums; memory is O(members x units).

    Args:
        near_dead_threshold: Active fraction below which a unit is near-dead.
        dormant_tau: ReDo threshold on the normalised mean ``|h|``.
    """

    def __init__(self, near_dead_threshold: float = 0.01, dormant_tau: float = 0.025) -> None:
        self.near_dead_threshold = near_dead_threshold
        self.dormant_tau = dormant_tau
        self.samples = 0
        self.active: torch.Tensor | None = None  # [M, U] count of z > 0
        self.abs_h: torch.Tensor | None = None  # [M, U] sum of |h|
        self.neg_abs = self.neg_count = self.pos_abs = self.pos_count = None  # [M]
        self.h_sum: torch.Tensor | None = None  # [M] signed sum of h
        self.neg_deriv: torch.Tensor | None = None  # [M] sum of f'(z) over negative-region entries

    def update(self, z: torch.Tensor, slope: torch.Tensor, neg: torch.Tensor | None = None) -> None:
        """Feed one batch.

        Args:
            z: Pre-activations, ``[members, batch, units]``.
            slope: Negative slope broadcastable to ``z`` (``[members, 1, 1]`` or
                ``[members, 1, units]``).
            neg: The mask ``z <= 0`` as 0/1 in ``z``'s dtype, if the caller has it.
        """
        z = z.detach()
        if neg is None:
            neg = negative_mask(z)
        # Per-unit sums over the batch in float32 (one column of one batch), accumulated
        # in float64 across batches. |h| is relu(z) on the positive side and
        # slope * (relu(z) - z) on the negative side. Float masks and plain reductions:
        # boolean reductions are several times slower on the CPU.
        z_sum = z.sum(dim=1)
        pos_sum = torch.relu(z).sum(dim=1)
        # |slope|: a learned PReLU slope may be negative, and |h| = |slope| * |z| there
        neg_z = (pos_sum - z_sum).double().clamp(min=0)  # [M, U] sum of -min(z, 0)
        neg_sum = neg_z * slope[:, 0, :].double().abs()  # [M, U]
        signed = (pos_sum.double() - neg_z * slope[:, 0, :].double()).sum(dim=1)  # [M] sum of h
        pos_sum = pos_sum.double()
        neg_units = neg.sum(dim=1)  # [M, U]
        # f'(z) = slope on the negative side: per unit, (negative entries) x (that unit's slope)
        deriv = (neg_units.double() * slope[:, 0, :].double()).sum(dim=1)
        self._add(z, neg_units, pos_sum, neg_sum, signed, deriv)

    def update_general(self, z: torch.Tensor, h: torch.Tensor, deriv: torch.Tensor, neg: torch.Tensor) -> None:
        """Feed one batch of any elementwise activation, given its output and derivative.

        Args:
            z: Activation inputs ``[members, batch, units]``.
            h: ``f(z)``, same shape.
            deriv: ``f'(z)``, same shape.
            neg: The mask ``z <= 0`` as 0/1 in ``z``'s dtype.
        """
        h_abs = h.abs()
        neg_abs = (h_abs * neg).sum(dim=1).double()
        pos_abs = h_abs.sum(dim=1).double() - neg_abs
        self._add(z, neg.sum(dim=1), pos_abs, neg_abs, h.sum(dim=(1, 2)).double(),
                  (deriv * neg).sum(dim=(1, 2)).double())

    def _add(self, z: torch.Tensor, neg_units: torch.Tensor, pos_sum: torch.Tensor, neg_sum: torch.Tensor,
             signed: torch.Tensor, deriv: torch.Tensor) -> None:
        """Accumulate one batch: per-unit ``|h|`` sums by side ``[M, U]``, signed ``h`` and ``f'`` sums ``[M]``."""
        active = z.shape[1] - neg_units.round().long()  # [M, U]
        n_pos = active.sum(dim=1)
        n_all = z.shape[1] * z.shape[2]
        if self.active is None:
            m, u = z.shape[0], z.shape[2]
            self.active = torch.zeros(m, u, dtype=torch.long, device=z.device)
            self.abs_h = torch.zeros(m, u, dtype=torch.float64, device=z.device)
            self.pos_abs = torch.zeros(m, dtype=torch.float64, device=z.device)
            self.neg_abs = torch.zeros_like(self.pos_abs)
            self.pos_count = torch.zeros(m, dtype=torch.long, device=z.device)
            self.h_sum = torch.zeros(m, dtype=torch.float64, device=z.device)
            self.neg_count = torch.zeros_like(self.pos_count)
            self.neg_deriv = torch.zeros_like(self.pos_abs)
        self.neg_deriv += deriv
        self.active += active
        self.h_sum += signed
        self.abs_h += pos_sum + neg_sum
        self.pos_abs += pos_sum.sum(dim=1)
        self.neg_abs += neg_sum.sum(dim=1)
        self.pos_count += n_pos
        self.neg_count += n_all - n_pos
        self.samples += z.shape[1]

    def dead_rates(self) -> torch.Tensor:
        """Share of units active on no sample, for every member at once: ``[members]``."""
        if self.active is None:
            raise ValueError("ActivityStats.dead_rates() called before any update()")
        return (self.active == 0).double().mean(dim=1)

    def result(self, member: int = 0) -> ActivityResult:
        """The diagnostics of one member over everything fed so far (see :meth:`results`)."""
        return self.results()[member]

    def results(self) -> list[ActivityResult]:
        """The diagnostics of every member over everything fed so far, computed for all members at once.

        Histograms are ``torch.histc``'s and quantiles ``torch.quantile``'s (to
        1 ulp; :mod:`probe.diagnostics.segments`); the sums are read back from the
        device once.
        """
        if self.active is None:
            raise ValueError("ActivityStats.result() called before any update()")
        n = self.samples
        active = self.active.cpu()
        m, units = active.shape
        frac = active.double() / n
        dead = (active == 0).sum(1).tolist()
        near = (frac < self.near_dead_threshold).sum(1).tolist()
        mean_abs = self.abs_h.cpu() / n
        layer_mean = mean_abs.mean(1, keepdim=True)
        dormant = torch.where(layer_mean[:, 0] == 0.0, units,
                              (mean_abs / layer_mean <= self.dormant_tau).sum(1)).tolist()
        layout = segment_layout((units,) * m)
        flat = frac.numpy().reshape(-1)
        quantiles, hist = segment_quantiles(flat, layout).tolist(), segment_histograms(flat, layout).tolist()
        frac_mean = frac.mean(1).tolist()
        neg_abs, pos_abs = self.neg_abs.tolist(), self.pos_abs.tolist()
        neg_count, pos_count = self.neg_count.tolist(), self.pos_count.tolist()
        h_sum, neg_deriv = self.h_sum.tolist(), self.neg_deriv.tolist()
        out = []
        for i in range(m):
            neg_mean, pos_mean = _ratio(neg_abs[i], neg_count[i]), _ratio(pos_abs[i], pos_count[i])
            out.append(ActivityResult(
                units=units,
                samples=n,
                dead_units=dead[i],
                dead_rate=dead[i] / units,
                near_dead_units=near[i],
                near_dead_threshold=self.near_dead_threshold,
                dormant_units=dormant[i],
                dormant_tau=self.dormant_tau,
                active_fraction_mean=frac_mean[i],
                active_fraction_quantiles=dict(zip(QUANTILES, quantiles[i])),
                active_fraction_histogram=hist[i],
                act_neg_mean_abs=neg_mean,
                act_pos_mean_abs=pos_mean,
                act_ratio=None if neg_mean is None or pos_mean is None else _ratio(neg_mean, pos_mean),
                neg_region_fraction=neg_count[i] / (n * units),
                act_mean=h_sum[i] / (n * units),
                local_slope_neg=_ratio(neg_deriv[i], neg_count[i]),
            ))
        return out
