"""Per-segment quantiles and histograms of unit values laid end to end, in a few array operations.

A segment is one layer's units (``probe.track``: every hidden layer of one
network at once) or one member's units (an ensemble's layer: every member at
once). The values are the definitions of :class:`probe.diagnostics.ActivityStats`
on one segment: ``torch.histc(x.float(), HIST_BINS, 0, 1)`` on the CPU, bin
for bin, and ``torch.quantile``'s linear rule to within one unit in the last
place (torch's vectorised interpolation uses a fused multiply-add, numpy does
not). ``tests/test_diagnostics.py`` checks both against torch.
"""

from __future__ import annotations

import functools

import numpy as np

HIST_BINS = 10
QUANTILES = ("min", "p10", "median", "p90", "max")
QUANTILE_AT = np.array([0.0, 0.1, 0.5, 0.9, 1.0])


class SegmentLayout:
    """What depends only on the segments' lengths, computed once per shape."""

    def __init__(self, units: tuple[int, ...]) -> None:
        self.units = np.array(units)
        self.count = len(units)
        self.layer = np.repeat(np.arange(self.count), self.units)
        self.starts = np.concatenate([[0], np.cumsum(self.units)[:-1]])
        self.equal = len(set(units)) == 1
        # torch.quantile: sorted values at ranks q * (n - 1), interpolated from the nearer end
        ranks = QUANTILE_AT[None, :] * (self.units[:, None] - 1)
        below = np.floor(ranks).astype(np.int64)
        self.lo = self.starts[:, None] + below
        self.hi = self.starts[:, None] + np.ceil(ranks).astype(np.int64)
        self.weight = ranks - below
        self.bin_offset = self.layer * HIST_BINS
        self.indicator = np.zeros((int(self.units.sum()), self.count))  # [unit, its segment] = 1: sums by product
        self.indicator[np.arange(self.indicator.shape[0]), self.layer] = 1.0


@functools.lru_cache(maxsize=16)
def segment_layout(units: tuple[int, ...]) -> SegmentLayout:
    """The (cached) layout of segments of these lengths."""
    return SegmentLayout(units)


def segment_quantiles(frac: np.ndarray, layout: SegmentLayout) -> np.ndarray:
    """``torch.quantile(frac_s, QUANTILE_AT)`` (linear, to 1 ulp) of every segment ``s``: ``[segments, 5]``."""
    if layout.equal:
        ordered = np.sort(frac.reshape(layout.count, -1), axis=1).reshape(-1)
    else:
        ordered = np.concatenate([np.sort(frac[a:a + n]) for a, n in zip(layout.starts, layout.units)])
    lo, hi, w = ordered[layout.lo], ordered[layout.hi], layout.weight
    return np.where(w < 0.5, lo + w * (hi - lo), hi - (hi - lo) * (1 - w))


def segment_histograms(frac: np.ndarray, layout: SegmentLayout) -> np.ndarray:
    """``torch.histc(frac_s.float(), HIST_BINS, 0, 1)`` of every segment: bin ``floor(x * bins)`` in float32."""
    bins = np.minimum((frac.astype(np.float32) * np.float32(HIST_BINS)).astype(np.int64), HIST_BINS - 1)
    return np.bincount(layout.bin_offset + bins, minlength=layout.count * HIST_BINS).reshape(-1, HIST_BINS)
