"""A plain-English verdict on the "negative side is 100x smaller" claim."""

from __future__ import annotations

from probe.diagnostics import NetworkDiagnostics


def _fmt_times(ratio: float) -> str:
    if ratio <= 0:
        return "exactly zero (no gradient passes the negative side)"
    inv = 1 / ratio
    return f"{inv:.0f}x smaller than" if inv >= 1.5 else f"{ratio:.2g}x the size of"


def verdict(diag: NetworkDiagnostics) -> str:
    """One or two sentences summarising gradient flow through the negative region.

    The ratio is the geometric mean of ``grad_ratio`` over hidden layers (ratios
    multiply, so they average geometrically); the share is the mean over layers of
    ``neg_grad_fraction``, the negative region's fraction of the gradient's squared norm.
    """
    mean_ratio = diag.layer_geomean("grad_ratio")
    mean_share = diag.layer_mean("neg_grad_fraction")
    parts = []
    if diag.collapsed:
        parts.append("A hidden layer is entirely dead on this data (collapsed).")
    if mean_ratio is not None:
        if mean_ratio <= 0:
            parts.append("Negative-region gradients are exactly zero (ReLU): nothing is learned "
                         "through the negative side.")
        else:
            nominal = diag.layer_mean("negative_slope")
            parts.append(f"Negative-region gradients are {_fmt_times(mean_ratio)} positive-region ones "
                         f"(geometric mean over layers; nominal slope {nominal:.3g}, i.e. {1 / nominal:.0f}x)."
                         if nominal is not None and nominal > 0 else
                         f"Negative-region gradients are {_fmt_times(mean_ratio)} positive-region ones "
                         "(geometric mean over layers).")
    if mean_share is not None:
        parts.append(f"The negative region contributes {100 * mean_share:.1f}% of the gradient's squared "
                     "norm (weights and biases; mean over layers).")
    return " ".join(parts) or "No hidden-layer gradients were measured."
