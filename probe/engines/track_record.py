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

import functools

import numpy as np
import torch

from probe.diagnostics.collector import nominal_slope, reported_slope
from probe.diagnostics.results import LayerDiagnostics
from probe.diagnostics.segments import QUANTILES, segment_histograms, segment_layout, segment_quantiles
from probe.diagnostics.sign import RouteMasses, SignResult, route_sums
from probe.engines.track_batch import LayerStep
from probe.engines.track_sign import SignStep


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _slope_values(raw: float | torch.Tensor | None) -> np.ndarray:
    if raw is None:
        return np.zeros(1)
    return np.array([raw]) if isinstance(raw, float) else raw.detach().double().cpu().numpy().reshape(-1)


def layer_records(steps: list[LayerStep], ledgers: list[np.ndarray], near_dead_threshold: float,
                  dormant_tau: float) -> tuple[list[dict], np.ndarray]:
    """Every hidden layer's analyze keys, and its units active on some sample (laid end to end).

    The definitions are :class:`ActivityResult`'s and :class:`GradientResult`'s
    (the keys in the same order, as ``LayerDiagnostics.to_dict`` writes them).
    Every layer's units are laid end to end: the per-unit arithmetic is done
    once for all of them, and the per-layer sums are one product with the
    layout's ``[units, layers]`` indicator. On the negative side ``h = a z``, so
    ``|h|`` sums to ``|a|`` times ``sum -min(z, 0)`` (``= sum relu(z) - sum z``)
    and ``h`` to ``-a`` times it; a model of ReLUs has no negative side at all.
    """
    layout = segment_layout(tuple(s.units for s in steps))
    units, count = layout.units, layout.count
    forward = np.concatenate([led[s.parts["forward"]].reshape(3, s.units) for s, led in zip(steps, ledgers)],
                             axis=1)
    neg_units, pos_abs = forward[0], forward[1]
    samples = [s.samples for s in steps]
    n = float(samples[0]) if len(set(samples)) == 1 else np.repeat(np.asarray(samples, dtype=np.float64), units)
    active = n - np.rint(neg_units)
    frac = active / n
    raw_slopes = [_slope_values(s.slope) for s in steps]
    sloped = any(s.rows == 3 for s in steps)
    rows = [None, active == 0, frac < near_dead_threshold, frac, neg_units, pos_abs]
    if sloped:  # |h| and h on the negative side, and f'(z) = the slope where z <= 0
        if all(a.size == 1 for a in raw_slopes):
            slope = np.repeat(np.concatenate(raw_slopes), units)
        else:
            slope = np.concatenate([np.broadcast_to(a, (u,)) for a, u in zip(raw_slopes, units.tolist())])
        neg_z = np.maximum(pos_abs - forward[2], 0.0)
        if not all(s.rows == 3 for s in steps):  # a ReLU layer's third row is not written
            neg_z[np.repeat([s.rows == 2 for s in steps], units)] = 0.0
        neg_abs = neg_z * np.abs(slope)
        mean_abs = (pos_abs + neg_abs) / n
        rows += [neg_abs, pos_abs - neg_z * slope, neg_units * slope]
    else:
        mean_abs = pos_abs / n
    layer_mean = mean_abs @ layout.indicator / units
    rows[0] = mean_abs / np.where(layer_mean == 0, 1.0, layer_mean)[layout.layer] <= dormant_tau
    per_layer = (np.stack(rows) @ layout.indicator).tolist()
    dormant, dead, near, frac_sum, neg_count, pos_sum = per_layer[:6]
    neg_sum, signed, deriv = per_layer[6:] if sloped else ([0.0] * count, pos_sum, [0.0] * count)
    qs, hist = segment_quantiles(frac, layout).tolist(), segment_histograms(frac, layout).tolist()
    out = []
    for i, (step, led, u) in enumerate(zip(steps, ledgers, units.tolist())):
        m, n_neg, n_dead = samples[i], int(round(neg_count[i])), int(round(dead[i]))
        if raw_slopes[i].size == 1:  # as nominal_slope reports one slope, without making a tensor of it
            nominal, spread = reported_slope(float(raw_slopes[i][0])), None
        else:
            nominal, spread = nominal_slope(torch.from_numpy(raw_slopes[i])[None], 0)  # as analyze reports it
        neg_mean, pos_mean = _ratio(neg_sum[i], n_neg), _ratio(pos_sum[i], m * u - n_neg)
        doc = {"layer": i + 1, "negative_slope": nominal, "prelu_slopes": spread, "units": u, "samples": m,
               "dead_units": n_dead, "dead_rate": n_dead / u, "near_dead_units": int(round(near[i])),
               "near_dead_threshold": near_dead_threshold,
               "dormant_units": u if layer_mean[i] == 0 else int(round(dormant[i])),
               "dormant_tau": dormant_tau, "active_fraction_mean": frac_sum[i] / u,
               "active_fraction_quantiles": dict(zip(QUANTILES, qs[i])), "active_fraction_histogram": hist[i],
               "act_neg_mean_abs": neg_mean, "act_pos_mean_abs": pos_mean,
               "act_ratio": None if neg_mean is None or pos_mean is None else _ratio(neg_mean, pos_mean),
               "neg_region_fraction": n_neg / (m * u), "act_mean": signed[i] / (m * u),
               "local_slope_neg": _ratio(deriv[i], n_neg)}
        if step.grad_slabs:
            n_grad_neg = int(round(step.negative_entries(neg_count[i])))
            doc.update(_gradient_keys(step, led, n_grad_neg, nominal or 0.0))
        out.append(doc)
    return out, neg_units < n - 0.5  # fewer than all samples at z <= 0: active on some sample


def _gradient_keys(step: LayerStep, ledger: np.ndarray, n_neg: int, slope: float) -> dict:
    """:class:`GradientResult`'s keys from the ledger's gradient sums and weight-gradient split.

    ``neg_grad_share = ||G_neg|| / (||G_neg|| + ||G_pos||)``; ``neg_grad_fraction`` =
    ``(<G_neg, G> + <b_neg, b>) / (||G||^2 + ||b||^2)`` with ``G = G_neg + G_pos``.
    """
    parts = step.parts
    all_abs, neg_abs = ledger[parts["grad"]].tolist()
    if not step.neg_abs_written:  # every batch's g was a ReLU's own, exactly 0 at z <= 0
        neg_abs = 0.0
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


@functools.lru_cache(maxsize=16)
def _sign_rows(outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output over all samples, then over its negative predictions: its weight row, its sums' row."""
    own = np.arange(outputs)
    return np.concatenate([own, own]), np.concatenate([np.zeros(outputs, dtype=np.int64), own + 1])


def sign_results(step: SignStep, values: np.ndarray | None) -> tuple[SignResult, ...]:
    """One :class:`SignResult` per output, from the sign routes' part of the ledger.

    The part holds ``A^T max(h, 0)``, ``A^T min(h, 0)`` (``[1 + outputs, units]`` each;
    where ``h`` was a ReLU's output the second is 0 and not written),
    ``A^T |h W^T|`` (``[1 + outputs, outputs]``), ``sum_i A``, and the weights: row 0
    over all samples, row ``1 + k`` over output ``k``'s negative predictions
    (:func:`probe.engines.track_ledger.sign_layout`). Every output's masses, over
    both sets of samples, come from one call of :func:`route_sums`.
    """
    if values is None or not step.samples:
        return ()
    k, u, parts = step.outputs, step.units, step.parts
    hp = values[parts["hp"]].reshape(k + 1, u)
    neg = np.zeros_like(hp) if step.nonnegative else -values[parts["hn"]].reshape(k + 1, u)
    net, counts = values[parts["net"]].reshape(k + 1, k), values[parts["counts"]]
    w, b = values[parts["weight"]].reshape(k, u), values[parts["bias"]]
    rows = _sign_rows(k)  # row i: output i over all samples; row k + i: over its negative predictions
    both = np.stack(route_sums(w[rows[0]], hp[rows[1]], neg[rows[1]])).T.tolist()
    b_pos, b_neg = np.maximum(b, 0).tolist(), np.maximum(-b, 0).tolist()
    n_neg = np.rint(counts[1:]).astype(np.int64).tolist()
    net_all, net_sub = net[0].tolist(), np.diagonal(net[1:]).tolist()
    n = step.samples
    return tuple(SignResult(i, RouteMasses.of(n, *both[i], net_all[i], n * b_pos[i], n * b_neg[i]),
                            RouteMasses.of(n_neg[i], *both[k + i], net_sub[i], n_neg[i] * b_pos[i],
                                           n_neg[i] * b_neg[i]))
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

