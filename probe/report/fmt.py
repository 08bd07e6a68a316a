"""Number formatting shared by every table, so terminal and markdown agree digit for digit."""

from __future__ import annotations

MISSING = "—"


def fmt(value: float | None, spec: str = ".3g") -> str:
    """Format a number that may be undefined (``None``, e.g. a ratio 0/0) as a dash."""
    return MISSING if value is None else format(value, spec)


def pct(value: float | None) -> str:
    """A share in [0, 1] as a percentage with one decimal."""
    return MISSING if value is None else f"{100 * value:.1f}%"
