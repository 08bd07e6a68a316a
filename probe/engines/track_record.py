"""The host side of a recorded step: from the sums the hooks gathered to analyze's result objects.

Every hidden layer is done at once (its units laid end to end, per-layer sums
by segment), so building a record costs a few dozen array operations whatever
the depth. The definitions are those of :class:`probe.diagnostics.ActivityStats`,
:class:`probe.diagnostics.GradientStats` and :class:`probe.diagnostics.SignRoutes`:
quantiles by ``torch.quantile``'s linear rule (to 1 ulp), the histogram bin for bin as
``torch.histc`` on the CPU, ratios undefined (None) where a denominator is 0.
"""

from __future__ import annotations

import numpy as np
import torch

from probe.diagnostics.activity import ActivityResult
from probe.diagnostics.collector import nominal_slope, reported_slope
from probe.diagnostics.gradients import GradientResult
from probe.diagnostics.results import LayerDiagnostics
from probe.diagnostics.segments import QUANTILES, segment_histograms, segment_layout, segment_quantiles
from probe.diagnostics.sign import SignResult, route_masses
from probe.engines.track_batch import LayerStep, SignStep

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


def activity_results(blocks: list[np.ndarray], samples: list[int], slopes: list[np.ndarray],
                     near_dead_threshold: float, dormant_tau: float) -> list[ActivityResult]:
    """:class:`ActivityResult` per layer from its per-unit sums ``[3, units]``.

    The rows: the number of samples with ``z <= 0``, the sum of ``relu(z)``, the
    sum of ``-min(z, 0)``; ``samples[l]`` rows were fed to layer ``l``, whose
    negative slope is ``slopes[l]`` (one, or one per unit). On the negative side
    ``h = a z``: ``|h|`` sums to ``|a|`` times the third row, ``h`` to ``-a`` times it.
    """
    layout = segment_layout(tuple(b.shape[1] for b in blocks))
    units, layer, starts, count = layout.units, layout.layer, layout.starts, layout.count
    neg_units, pos_abs, neg_z = np.concatenate(blocks, axis=1)
    slope = np.concatenate([np.broadcast_to(a, (u,)) for a, u in zip(slopes, layout.units.tolist())])
    neg_abs = neg_z * np.abs(slope)
    signed = np.add.reduceat(pos_abs - neg_z * slope, starts).tolist()
    n = float(samples[0]) if len(set(samples)) == 1 else np.repeat(np.asarray(samples, dtype=np.float64), units)
    active = n - np.rint(neg_units)
    frac = active / n
    mean_abs = (pos_abs + neg_abs) / n
    layer_mean = np.add.reduceat(mean_abs, starts) / units
    dormant_unit = mean_abs / np.where(layer_mean == 0, 1.0, layer_mean)[layer] <= dormant_tau
    dormant = np.where(layer_mean == 0, units, np.bincount(layer, dormant_unit, count)).tolist()
    dead = np.bincount(layer, active == 0, count).tolist()
    near = np.bincount(layer, frac < near_dead_threshold, count).tolist()
    frac_mean = (np.add.reduceat(frac, starts) / units).tolist()
    neg_count = np.rint(np.add.reduceat(neg_units, starts)).tolist()
    neg_sum, pos_sum = np.add.reduceat(neg_abs, starts).tolist(), np.add.reduceat(pos_abs, starts).tolist()
    deriv = np.add.reduceat(neg_units * slope, starts).tolist()  # f'(z) = the slope where z <= 0
    qs, hist = segment_quantiles(frac, layout).tolist(), segment_histograms(frac, layout).tolist()
    out = []
    for i, u in enumerate(units.tolist()):
        m, n_neg = int(samples[i]), int(neg_count[i])
        neg_mean, pos_mean = _ratio(neg_sum[i], n_neg), _ratio(pos_sum[i], m * u - n_neg)
        out.append(ActivityResult(
            units=u, samples=m, dead_units=int(dead[i]), dead_rate=int(dead[i]) / u,
            near_dead_units=int(near[i]), near_dead_threshold=near_dead_threshold,
            dormant_units=int(dormant[i]), dormant_tau=dormant_tau, active_fraction_mean=frac_mean[i],
            active_fraction_quantiles=dict(zip(QUANTILES, qs[i])), active_fraction_histogram=hist[i],
            act_neg_mean_abs=neg_mean, act_pos_mean_abs=pos_mean,
            act_ratio=None if neg_mean is None or pos_mean is None else _ratio(neg_mean, pos_mean),
            neg_region_fraction=n_neg / (m * u), act_mean=signed[i] / (m * u),
            local_slope_neg=_ratio(deriv[i], n_neg)))
    return out


def gradient_result(sums: np.ndarray, n_neg: int, entries: int, split: list[np.ndarray],
                    slope: float) -> GradientResult:
    """:class:`GradientResult` from ``[sum |g|, sum |g| at z<=0]``, the entries at z<=0 and the split.

    ``split``: empty when the weight-gradient split was not measured; else
    ``[||G_pos||]`` and the bias gradient ``b = sum g`` per unit when ``G_neg`` is
    exactly 0, or ``[||G_neg||, ||G_pos||, <G_neg, G_pos>]``, ``b`` and
    ``b_neg = sum g * [z<=0]``. ``neg_grad_fraction`` =
    ``(<G_neg, G> + <b_neg, b>) / (||G||^2 + ||b||^2)`` with ``G = G_neg + G_pos``.
    """
    all_abs, neg_abs = float(sums[0]), float(sums[1])
    n_pos = entries - n_neg
    neg_mean = neg_abs / n_neg if n_neg else None
    pos_mean = (all_abs - neg_abs) / n_pos if n_pos else None
    ratio = neg_mean / pos_mean if neg_mean is not None and pos_mean else None
    norm_neg = norm_pos = 0.0
    share = fraction = None
    if split:
        norms, b_all = split[0], split[1]
        norm_neg, norm_pos, cross = (0.0, float(norms[0]), 0.0) if norms.size == 1 else map(float, norms)
        b_neg_dot = float(split[2] @ b_all) if len(split) > 2 else 0.0
        if norm_neg + norm_pos > 0:
            share = norm_neg / (norm_neg + norm_pos)
        total = norm_neg ** 2 + norm_pos ** 2 + 2 * cross + float(b_all @ b_all)
        if total > 0:
            fraction = (norm_neg ** 2 + cross + b_neg_dot) / total
    return GradientResult(
        grad_neg_mean_abs=neg_mean, grad_pos_mean_abs=pos_mean, grad_ratio=ratio,
        upstream_ratio=ratio / slope if ratio is not None and slope > 0 else None,
        neg_grad_share=share, neg_grad_fraction=fraction, weight_grad_norm_neg=norm_neg,
        weight_grad_norm_pos=norm_pos)


def forward_rows(values: np.ndarray, units: int) -> np.ndarray:
    """:meth:`LayerStep.tensors`' forward sums as ``[3, units]`` (a ReLU's negative-side row is zeros)."""
    rows = values.reshape(-1, units)
    return rows if rows.shape[0] == 3 else np.vstack([rows, np.zeros((1, units))])


def _slope_values(raw: float | torch.Tensor | None) -> np.ndarray:
    if raw is None:
        return np.zeros(1)
    return np.array([raw]) if isinstance(raw, float) else raw.detach().double().cpu().numpy().reshape(-1)


def layer_results(steps: list[LayerStep], values: list[list[np.ndarray]], near_dead_threshold: float,
                  dormant_tau: float) -> list[LayerDiagnostics]:
    """Every hidden layer's diagnostics from :meth:`LayerStep.tensors`' values, now on the host."""
    slopes = [_slope_values(s.slope) for s in steps]
    activity = activity_results([forward_rows(v[0], s.units) for s, v in zip(steps, values)],
                                [s.samples for s in steps], slopes, near_dead_threshold, dormant_tau)
    out = []
    for i, (step, vals, act) in enumerate(zip(steps, values, activity)):
        if slopes[i].size == 1:  # as nominal_slope reports one slope, without making a tensor of it
            slope, spread = reported_slope(float(slopes[i][0])), None
        else:
            slope, spread = nominal_slope(torch.from_numpy(slopes[i])[None], 0)  # as analyze reports it
        gradient = None
        if len(vals) > 1:
            n_neg = int(np.rint(vals[2].sum()))
            gradient = gradient_result(vals[1], n_neg, step.grad_entries, vals[3:], slope or 0.0)
        out.append(LayerDiagnostics(i, slope, act, gradient, spread))
    return out


def sign_results(step: SignStep, values: list[np.ndarray]) -> tuple[SignResult, ...]:
    """One :class:`SignResult` per output, from :meth:`SignStep.tensors`' values.

    The sums are ``A^T max(h, 0)``, ``A^T h`` (``[1 + outputs, units]`` each),
    ``A^T |h W^T|`` (``[1 + outputs, outputs]``) and ``sum_i A``: row 0 over all
    samples, row ``1 + k`` over output ``k``'s negative predictions.
    """
    if not values:
        return ()
    k, u = step.weight.shape
    sums, w, b = values[0], values[1].reshape(k, u), values[2]
    hp, h, net, counts = np.split(sums, np.cumsum([(k + 1) * u, (k + 1) * u, (k + 1) * k]))
    hp, h, net = hp.reshape(k + 1, u), h.reshape(k + 1, u), net.reshape(k + 1, k)
    return tuple(SignResult(i, route_masses(w[i], hp[0], hp[0] - h[0], float(net[0, i]), step.samples, b[i:i + 1]),
                            route_masses(w[i], hp[1 + i], hp[1 + i] - h[1 + i], float(net[1 + i, i]),
                                         int(round(counts[1 + i])), b[i:i + 1]))
                 for i in range(k))


def layer_dict(diag: LayerDiagnostics) -> dict:
    """``diag.to_dict()`` (the keys of ``probe analyze --json``), without ``asdict``'s deep copies.

    Tests check that the two agree, key for key, so a result field added in
    :mod:`probe.diagnostics` cannot be missed here.
    """
    doc = {"layer": diag.index + 1, "negative_slope": diag.negative_slope, "prelu_slopes": diag.prelu_slopes,
           **vars(diag.activity)}
    if diag.gradient is not None:
        doc.update(vars(diag.gradient))
    return doc


def sign_dict(sign: SignResult) -> dict:
    """``sign.to_dict()`` (tests check the two agree)."""
    return sign.to_dict()
