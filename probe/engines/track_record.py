"""The host side of a recorded step: from the sums the hooks gathered to analyze's keys.

Every hidden layer is done at once (its units laid end to end, per-layer sums
by segment), so building a record costs a few dozen array operations whatever
the depth, and the layers' dicts are written directly, without analyze's
result objects in between. The definitions are those of
:class:`probe.diagnostics.ActivityStats`, :class:`probe.diagnostics.GradientStats`
and :class:`probe.diagnostics.SignRoutes`: quantiles by ``torch.quantile``'s
linear rule (to 1 ulp), the histogram bin for bin as ``torch.histc`` on the CPU,
ratios undefined (None) where a denominator is 0. ``tests/test_track.py`` checks
the keys, their order and their values against ``probe.diagnose``, so a field
added to those results and not here fails the tests.
"""

from __future__ import annotations

import numpy as np
import torch

from probe.diagnostics.collector import nominal_slope, reported_slope
from probe.diagnostics.results import LayerDiagnostics
from probe.diagnostics.segments import QUANTILES, segment_histograms, segment_layout, segment_quantiles
from probe.diagnostics.sign import SignResult, route_masses
from probe.engines.track_batch import LayerStep
from probe.engines.track_sign import SignStep


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


def _slope_values(raw: float | torch.Tensor | None) -> np.ndarray:
    if raw is None:
        return np.zeros(1)
    return np.array([raw]) if isinstance(raw, float) else raw.detach().double().cpu().numpy().reshape(-1)


def layer_records(steps: list[LayerStep], ledgers: list[np.ndarray], near_dead_threshold: float,
                  dormant_tau: float) -> tuple[list[dict], list[np.ndarray]]:
    """Every hidden layer's analyze keys, and its units active on some sample, from the ledgers.

    The definitions are :class:`ActivityResult`'s and :class:`GradientResult`'s
    (the keys in the same order, as ``LayerDiagnostics.to_dict`` writes them);
    every layer's per-unit arithmetic is done at once, units laid end to end. On
    the negative side ``h = a z``, so ``|h|`` sums to ``|a|`` times ``sum -min(z, 0)``
    (``= sum relu(z) - sum z``) and ``h`` to ``-a`` times it.
    """
    layout = segment_layout(tuple(s.units for s in steps))
    units, layer, starts, count = layout.units, layout.layer, layout.starts, layout.count
    forward = [led[s.parts["forward"]].reshape(3, s.units) for s, led in zip(steps, ledgers)]
    neg_units = np.concatenate([f[0] for f in forward])
    pos_abs = np.concatenate([f[1] for f in forward])
    neg_z = np.concatenate([np.zeros(s.units) if s.rows == 2 else np.maximum(f[1] - f[2], 0.0)
                            for s, f in zip(steps, forward)])
    raw_slopes = [_slope_values(s.slope) for s in steps]
    if all(a.size == 1 for a in raw_slopes):
        slope = np.repeat(np.concatenate(raw_slopes), units)
    else:
        slope = np.concatenate([np.broadcast_to(a, (u,)) for a, u in zip(raw_slopes, units.tolist())])
    samples = [s.samples for s in steps]
    n = float(samples[0]) if len(set(samples)) == 1 else np.repeat(np.asarray(samples, dtype=np.float64), units)
    active = n - np.rint(neg_units)
    frac = active / n
    neg_abs = neg_z * np.abs(slope)
    mean_abs = (pos_abs + neg_abs) / n
    layer_mean = np.add.reduceat(mean_abs, starts) / units
    dormant_unit = mean_abs / np.where(layer_mean == 0, 1.0, layer_mean)[layer] <= dormant_tau
    per_layer = np.stack([
        np.where(layer_mean == 0, units, np.bincount(layer, dormant_unit, count)),
        np.bincount(layer, active == 0, count), np.bincount(layer, frac < near_dead_threshold, count),
        np.add.reduceat(frac, starts) / units, np.rint(np.add.reduceat(neg_units, starts)),
        np.add.reduceat(neg_abs, starts), np.add.reduceat(pos_abs, starts),
        np.add.reduceat(pos_abs - neg_z * slope, starts),
        np.add.reduceat(neg_units * slope, starts)])  # f'(z) = the slope where z <= 0
    dormant, dead, near, frac_mean, neg_count, neg_sum, pos_sum, signed, deriv = per_layer.tolist()
    qs, hist = segment_quantiles(frac, layout).tolist(), segment_histograms(frac, layout).tolist()
    out, masks = [], []
    for i, (step, led, u) in enumerate(zip(steps, ledgers, units.tolist())):
        m, n_neg, n_dead = samples[i], int(neg_count[i]), int(dead[i])
        if raw_slopes[i].size == 1:  # as nominal_slope reports one slope, without making a tensor of it
            nominal, spread = reported_slope(float(raw_slopes[i][0])), None
        else:
            nominal, spread = nominal_slope(torch.from_numpy(raw_slopes[i])[None], 0)  # as analyze reports it
        neg_mean, pos_mean = _ratio(neg_sum[i], n_neg), _ratio(pos_sum[i], m * u - n_neg)
        doc = {"layer": i + 1, "negative_slope": nominal, "prelu_slopes": spread, "units": u, "samples": m,
               "dead_units": n_dead, "dead_rate": n_dead / u, "near_dead_units": int(near[i]),
               "near_dead_threshold": near_dead_threshold, "dormant_units": int(dormant[i]),
               "dormant_tau": dormant_tau, "active_fraction_mean": frac_mean[i],
               "active_fraction_quantiles": dict(zip(QUANTILES, qs[i])), "active_fraction_histogram": hist[i],
               "act_neg_mean_abs": neg_mean, "act_pos_mean_abs": pos_mean,
               "act_ratio": None if neg_mean is None or pos_mean is None else _ratio(neg_mean, pos_mean),
               "neg_region_fraction": n_neg / (m * u), "act_mean": signed[i] / (m * u),
               "local_slope_neg": _ratio(deriv[i], n_neg)}
        if step.grad_slabs:
            n_grad_neg = int(round(step.negative_entries(neg_count[i])))
            doc.update(_gradient_keys(step, led, n_grad_neg, nominal or 0.0))
        out.append(doc)
        masks.append(forward[i][0] < m - 0.5)  # fewer than all samples at z <= 0: active on some sample
    return out, masks


def _gradient_keys(step: LayerStep, ledger: np.ndarray, n_neg: int, slope: float) -> dict:
    """:class:`GradientResult`'s keys from the ledger's gradient sums and weight-gradient split.

    ``neg_grad_share = ||G_neg|| / (||G_neg|| + ||G_pos||)``; ``neg_grad_fraction`` =
    ``(<G_neg, G> + <b_neg, b>) / (||G||^2 + ||b||^2)`` with ``G = G_neg + G_pos``.
    """
    parts = step.parts
    all_abs, neg_abs = ledger[parts["grad"]].tolist()
    n_pos = step.grad_entries - n_neg
    neg_mean = neg_abs / n_neg if n_neg else None
    pos_mean = (all_abs - neg_abs) / n_pos if n_pos else None
    ratio = neg_mean / pos_mean if neg_mean is not None and pos_mean else None
    norm_neg = norm_pos = 0.0
    share = fraction = None
    if step.split:
        norm_neg, norm_pos, cross = ledger[parts["split"]].tolist()
        if step.g_neg is None:  # G_neg exactly 0: only ||G_pos|| was written
            norm_neg = cross = 0.0
        b_all = ledger[parts["b_all"]]
        b_neg_dot = float(ledger[parts["b_neg"]] @ b_all) if step.has_b_neg else 0.0
        if norm_neg + norm_pos > 0:
            share = norm_neg / (norm_neg + norm_pos)
        total = norm_neg ** 2 + norm_pos ** 2 + 2 * cross + float(b_all @ b_all)
        if total > 0:
            fraction = (norm_neg ** 2 + cross + b_neg_dot) / total
    return {"grad_neg_mean_abs": neg_mean, "grad_pos_mean_abs": pos_mean, "grad_ratio": ratio,
            "upstream_ratio": ratio / slope if ratio is not None and slope > 0 else None,
            "neg_grad_share": share, "neg_grad_fraction": fraction, "weight_grad_norm_neg": norm_neg,
            "weight_grad_norm_pos": norm_pos}


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

