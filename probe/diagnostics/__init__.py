"""Streaming diagnostics: accumulators fed batch by batch, results as frozen dataclasses."""

from probe.diagnostics.activity import ActivityResult, ActivityStats
from probe.diagnostics.collector import Collector
from probe.diagnostics.gradients import GradientResult, GradientStats
from probe.diagnostics.margin import MarginRoutes
from probe.diagnostics.results import LayerDiagnostics, NetworkDiagnostics
from probe.diagnostics.sign import RouteMasses, SignResult, SignRoutes

__all__ = [
    "ActivityResult", "ActivityStats", "Collector", "GradientResult", "GradientStats",
    "LayerDiagnostics", "MarginRoutes", "NetworkDiagnostics", "RouteMasses", "SignResult", "SignRoutes",
]
