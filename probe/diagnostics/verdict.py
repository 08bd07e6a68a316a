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

    Uses the layer-averaged (unweighted) grad_ratio and neg_grad_share.
    """
    ratios = [lay.gradient.grad_ratio for lay in diag.layers
              if lay.gradient is not None and lay.gradient.grad_ratio is not None]
    shares = [lay.gradient.neg_grad_share for lay in diag.layers
              if lay.gradient is not None and lay.gradient.neg_grad_share is not None]
    parts = []
    if diag.collapsed:
        parts.append("A hidden layer is entirely dead on this data (collapsed).")
    if ratios:
        mean_ratio = sum(ratios) / len(ratios)
        if mean_ratio <= 0:
            parts.append("Negative-region gradients are exactly zero (ReLU): nothing is learned "
                         "through the negative side.")
        else:
            slopes = [lay.negative_slope for lay in diag.layers]
            nominal = sum(slopes) / len(slopes)
            parts.append(f"Negative-region gradients are {_fmt_times(mean_ratio)} positive-region ones "
                         f"(nominal slope {nominal:.3g}, i.e. {1 / nominal:.0f}x)." if nominal > 0 else
                         f"Negative-region gradients are {_fmt_times(mean_ratio)} positive-region ones.")
    if shares:
        parts.append(f"{100 * sum(shares) / len(shares):.1f}% of the weight gradient flows through "
                     "the negative region (mean over layers).")
    return " ".join(parts) or "No hidden-layer gradients were measured."
