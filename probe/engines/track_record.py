"""The host side of a recorded step: from the sums the hooks gathered to analyze's result objects.

Every hidden layer is done at once (its units laid end to end, per-layer sums
by segment), so building a record costs a few dozen array operations whatever
the depth. The definitions are those of :class:`probe.diagnostics.ActivityStats`,
:class:`probe.diagnostics.GradientStats` and :class:`probe.diagnostics.SignRoutes`:
quantiles by ``torch.quantile``'s linear rule, the histogram bin for bin as
``torch.histc`` on the CPU, ratios undefined (None) where a denominator is 0.
"""

from __future__ import annotations

import numpy as np
import torch

from probe.diagnostics.activity import HIST_BINS, ActivityResult
from probe.diagnostics.gradients import GradientResult
from probe.diagnostics.results import LayerDiagnostics
from probe.diagnostics.sign import SignResult, route_masses
from probe.engines.track_batch import LayerStep, SignStep

QUANTILES = ("min", "p10", "median", "p90", "max")
QUANTILE_AT = np.array([0.0, 0.1, 0.5, 0.9, 1.0])


def to_host(groups: list[list[torch.Tensor]]) -> list[list[np.ndarray]]:
    """Every group's tensors as float64 arrays, moved in one transfer (one synchronisation on a GPU)."""
    flat = [t.reshape(-1) for group in groups for t in group]
    if not flat:
        return [[] for _ in groups]
    device = flat[0].device
    host = torch.cat([t.to(device) for t in flat]).cpu().numpy().astype(np.float64)
    out, at = [], 0
    for group in groups:
        parts = []
        for t in group:
            parts.append(host[at:at + t.numel()])
            at += t.numel()
        out.append(parts)
    return out


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _quantiles(frac: np.ndarray, starts: np.ndarray, units: np.ndarray) -> np.ndarray:
    """``torch.quantile(frac_l, QUANTILE_AT)`` of every layer's segment: ``[layers, 5]``.

    Sorted values at ranks ``q * (n - 1)``, interpolated with ``torch.lerp``'s rule
    (from the nearer end), as torch does it.
    """
    ordered = np.concatenate([np.sort(frac[a:a + n]) for a, n in zip(starts, units)])
    ranks = QUANTILE_AT[None, :] * (units[:, None] - 1)
    below, above = np.floor(ranks).astype(np.int64), np.ceil(ranks).astype(np.int64)
    weight = ranks - below
    lo, hi = ordered[starts[:, None] + below], ordered[starts[:, None] + above]
    return np.where(weight < 0.5, lo + weight * (hi - lo), hi - (hi - lo) * (1 - weight))


def _histograms(frac: np.ndarray, layer: np.ndarray, layers: int) -> np.ndarray:
    """``torch.histc(frac_l.float(), HIST_BINS, 0, 1)`` of every layer: bin ``floor(x * bins)`` in float32."""
    bins = np.minimum((frac.astype(np.float32) * np.float32(HIST_BINS)).astype(np.int64), HIST_BINS - 1)
    return np.bincount(layer * HIST_BINS + bins, minlength=layers * HIST_BINS).reshape(layers, HIST_BINS)


def activity_results(blocks: list[np.ndarray], samples: list[int], near_dead_threshold: float,
                     dormant_tau: float) -> list[ActivityResult]:
    """:class:`ActivityResult` per layer from its per-unit sums ``[3, units]``.

    The rows: the number of samples with ``z <= 0``, the sum of ``relu(z)``, the
    sum of the negative side's ``|h|``; ``samples[l]`` rows were fed to layer ``l``.
    """
    units = np.array([b.shape[1] for b in blocks])
    count = len(blocks)
    layer = np.repeat(np.arange(count), units)
    starts = np.concatenate([[0], np.cumsum(units)[:-1]])
    neg_units, pos_abs, neg_abs = np.concatenate(blocks, axis=1)
    n = np.repeat(np.asarray(samples, dtype=np.float64), units)
    active = n - np.rint(neg_units)
    frac = active / n
    mean_abs = (pos_abs + neg_abs) / n
    layer_mean = np.add.reduceat(mean_abs, starts) / units
    with np.errstate(divide="ignore", invalid="ignore"):
        dormant_unit = mean_abs / layer_mean[layer] <= dormant_tau
    dormant = np.where(layer_mean == 0, units, np.bincount(layer, dormant_unit, count))
    dead = np.bincount(layer, active == 0, count)
    near = np.bincount(layer, frac < near_dead_threshold, count)
    frac_mean = np.add.reduceat(frac, starts) / units
    neg_count = np.rint(np.add.reduceat(neg_units, starts))
    neg_sum, pos_sum = np.add.reduceat(neg_abs, starts), np.add.reduceat(pos_abs, starts)
    qs, hist = _quantiles(frac, starts, units).tolist(), _histograms(frac, layer, count).tolist()
    out = []
    for i in range(count):
        u, m, n_neg = int(units[i]), int(samples[i]), int(neg_count[i])
        neg_mean, pos_mean = _ratio(float(neg_sum[i]), n_neg), _ratio(float(pos_sum[i]), m * u - n_neg)
        out.append(ActivityResult(
            units=u, samples=m, dead_units=int(dead[i]), dead_rate=int(dead[i]) / u,
            near_dead_units=int(near[i]), near_dead_threshold=near_dead_threshold,
            dormant_units=int(dormant[i]), dormant_tau=dormant_tau, active_fraction_mean=float(frac_mean[i]),
            active_fraction_quantiles=dict(zip(QUANTILES, qs[i])), active_fraction_histogram=hist[i],
            act_neg_mean_abs=neg_mean, act_pos_mean_abs=pos_mean,
            act_ratio=None if neg_mean is None or pos_mean is None else _ratio(neg_mean, pos_mean),
            neg_region_fraction=n_neg / (m * u)))
    return out


def gradient_result(sums: np.ndarray, entries: int, norms: np.ndarray | None, slope: float) -> GradientResult:
    """:class:`GradientResult` from ``[sum |g|, sum |g| at z<=0, n(z<=0)]`` and the split's norms.

    ``norms``: ``[||G_neg||, ||G_pos||]``, or ``[||G_pos||]`` alone when ``G_neg``
    is exactly zero, or None when the split was not measured.
    """
    all_abs, neg_abs, n_neg = float(sums[0]), float(sums[1]), int(round(sums[2]))
    n_pos = entries - n_neg
    neg_mean = neg_abs / n_neg if n_neg else None
    pos_mean = (all_abs - neg_abs) / n_pos if n_pos else None
    ratio = neg_mean / pos_mean if neg_mean is not None and pos_mean else None
    if norms is None:
        norm_neg = norm_pos = 0.0
    else:
        norm_neg, norm_pos = (0.0, float(norms[0])) if norms.size == 1 else (float(norms[0]), float(norms[1]))
    share = norm_neg / (norm_neg + norm_pos) if norms is not None and norm_neg + norm_pos > 0 else None
    return GradientResult(
        grad_neg_mean_abs=neg_mean, grad_pos_mean_abs=pos_mean, grad_ratio=ratio,
        upstream_ratio=ratio / slope if ratio is not None and slope > 0 else None,
        neg_grad_share=share, weight_grad_norm_neg=norm_neg, weight_grad_norm_pos=norm_pos)


def layer_results(steps: list[LayerStep], values: list[list[np.ndarray]], near_dead_threshold: float,
                  dormant_tau: float) -> list[LayerDiagnostics]:
    """Every hidden layer's diagnostics from :meth:`LayerStep.tensors`' values, now on the host."""
    activity = activity_results([v[0].reshape(3, s.units) for s, v in zip(steps, values)],
                                [s.samples for s in steps], near_dead_threshold, dormant_tau)
    out = []
    for i, (step, vals, act) in enumerate(zip(steps, values, activity)):
        # 6 significant digits, as analyze: a float32 slope of 0.01 reads 0.01, not 0.0099999998
        slope = 0.0 if step.slope is None else float(f"{float(step.slope.double().mean()):.6g}")
        gradient = None
        if len(vals) > 1:
            gradient = gradient_result(vals[1], step.grad_entries, vals[2] if len(vals) > 2 else None, slope)
        out.append(LayerDiagnostics(i, slope, act, gradient))
    return out


def sign_results(step: SignStep, values: list[np.ndarray]) -> tuple[SignResult, ...]:
    """One :class:`SignResult` per output, from :meth:`SignStep.tensors`' values."""
    if not values:
        return ()
    k, u = step.weight.shape
    sums, w = values[0], values[1].reshape(k, u)
    hp, h, net_abs, neg_hp, neg_h, neg_net_abs, neg_n = np.split(sums, np.cumsum([u, u, k, k * u, k * u, k]))
    neg_hp, neg_h = neg_hp.reshape(k, u), neg_h.reshape(k, u)
    return tuple(SignResult(i, route_masses(w[i], hp, hp - h, float(net_abs[i]), step.samples),
                            route_masses(w[i], neg_hp[i], neg_hp[i] - neg_h[i], float(neg_net_abs[i]),
                                         int(round(neg_n[i]))))
                 for i in range(k))


def layer_dict(diag: LayerDiagnostics) -> dict:
    """``diag.to_dict()`` (the keys of ``probe analyze --json``), without ``asdict``'s deep copies."""
    doc = {"layer": diag.index + 1, "negative_slope": diag.negative_slope, **vars(diag.activity)}
    if diag.gradient is not None:
        doc.update(vars(diag.gradient))
    return doc


def sign_dict(sign: SignResult) -> dict:
    """``sign.to_dict()``, without ``asdict``'s deep copies."""
    return {"output": sign.output, **vars(sign.all_samples),
            "negative_predictions": vars(sign.negative_predictions)}
