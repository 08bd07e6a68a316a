"""Frozen result objects shared by analyze, compare and the reports."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from probe.diagnostics.activity import ActivityResult
from probe.diagnostics.gradients import GradientResult
from probe.diagnostics.sign import SignResult


@dataclass(frozen=True)
class LayerDiagnostics:
    """Every diagnostic of one hidden layer (index 0 is the first hidden layer)."""

    index: int
    negative_slope: float | None
    activity: ActivityResult
    gradient: GradientResult | None
    prelu_slopes: dict | None = None

    @property
    def units(self) -> int:
        return self.activity.units

    def to_dict(self) -> dict:
        """Flat JSON keys: ``layer``, ``units``, ``negative_slope``, ``dead_units``, ...

        ``negative_slope`` is the nominal slope of a ReLU-family layer with one
        slope (null for smooth activations and per-channel PReLU, whose slopes
        are in ``prelu_slopes``); ``local_slope_neg`` is measured for every kind.

        ``layer`` counts hidden layers from 1, as the tables and the circuit graph do
        (where layer 0 is the inputs).
        """
        d = {"layer": self.index + 1, "negative_slope": self.negative_slope, "prelu_slopes": self.prelu_slopes}
        d.update(self.activity.to_dict())
        if self.gradient is not None:
            d.update(self.gradient.to_dict())
        return d


def collapsed(layers: Iterable[tuple[int, int]]) -> bool:
    """True when some hidden layer, given as ``(dead_units, units)``, has every unit dead (``z <= 0`` always).

    For a ReLU network the output is then constant over the data (Lu et al.
    2019: "born dead" when it holds at initialisation). For a leaky network the
    layer is merely linear with the negative slope.
    """
    return any(dead == units for dead, units in layers)


@dataclass(frozen=True)
class NetworkDiagnostics:
    """The diagnostics of one network: hidden layers in forward order, sign per output."""

    layers: tuple[LayerDiagnostics, ...]
    sign: tuple[SignResult, ...]

    @property
    def collapsed(self) -> bool:
        """True when some hidden layer has every unit dead (see :func:`collapsed`)."""
        return collapsed((layer.activity.dead_units, layer.units) for layer in self.layers)

    def layer_mean(self, name: str) -> float | None:
        """Unweighted mean over hidden layers of one per-layer number, skipping undefined ones.

        ``name`` is a field of :class:`LayerDiagnostics` (``negative_slope``), of its
        activity or of its gradient results (``dead_rate``, ``grad_ratio``, ...).
        None when no layer defines it. The one place a "layer mean" is taken.
        """
        values = []
        for layer in self.layers:
            for source in (layer, layer.activity, layer.gradient):
                if source is not None and hasattr(source, name):
                    value = getattr(source, name)
                    if value is not None:
                        values.append(float(value))
                    break
        return sum(values) / len(values) if values else None

    def layer_geomean(self, name: str) -> float | None:
        """Geometric mean over hidden layers of a positive per-layer ratio (``grad_ratio``).

        Ratios multiply: a layer at 1/100 and one at 1/10 average to 1/31.6, not
        1/18 as the arithmetic mean says. 0 when some layer's ratio is exactly 0
        (a ReLU layer); None when no layer defines it.
        """
        values = [float(getattr(layer.gradient, name)) for layer in self.layers
                  if layer.gradient is not None and getattr(layer.gradient, name) is not None]
        if not values:
            return None
        if min(values) <= 0:
            return 0.0
        return float(math.exp(sum(math.log(v) for v in values) / len(values)))

    def to_dict(self) -> dict:
        return {
            "collapsed": self.collapsed,
            "layers": [layer.to_dict() for layer in self.layers],
            "sign": [s.to_dict() for s in self.sign],
        }
