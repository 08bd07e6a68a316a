"""Dead over a window of recorded steps, revived units, and the alerts on them.

A unit dead on one batch may merely have seen no input that excites it; a unit
dead on every batch of the last ``window`` recorded steps is dead. Both are
recorded; the alerts watch the second.

Definitions, per hidden layer, at recorded step ``t`` (the last ``window``
recorded steps, ``t`` included, are the *window*):

* ``window_dead_units``: units with ``z <= 0`` on every sample of every batch
  recorded in the window. Early in a run the window holds fewer records
  (``window_records`` says how many).
* ``window_dead_share``: ``window_dead_units`` / units.
* ``revived_units``: units that were window-dead at the previous record and are
  active (``z > 0`` on some sample) on this record's batch.

Memory: one boolean per unit and recorded step in the window, no more.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from probe.diagnostics.segments import segment_layout


@dataclass(frozen=True)
class WindowCounts:
    """One layer's window diagnostics at one record."""

    window_dead_units: int
    window_dead_share: float
    revived_units: int
    window_records: int

    def to_dict(self) -> dict:
        return asdict(self)


class DeadWindow:
    """Masks of the units active on each of the last ``window`` recorded batches, every layer's laid end to end.

    Alongside the masks, per unit, the number of records in the window on which
    it was active, updated as a record enters and the oldest leaves; per-layer
    counts come from one reduction by segment.

    Args:
        window: Recorded steps in the window (>= 1).
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._masks: deque[np.ndarray] = deque()
        self._counts: np.ndarray | None = None
        self._sizes: tuple[int, ...] = ()
        self._starts: np.ndarray | None = None

    def update(self, active: np.ndarray, sizes: tuple[int, ...]) -> list[WindowCounts]:
        """Add one record's masks (True: active on some sample), every layer's end to end; the counts after it."""
        mask = active.astype(bool, copy=False)
        if self._counts is None or sizes != self._sizes:
            self._masks.clear()
            self._counts = np.zeros(mask.size, dtype=np.int64)
            self._sizes = sizes
            self._starts = segment_layout(sizes).starts
        was_dead = self._counts == 0 if self._masks else None
        self._masks.append(mask)
        self._counts += mask
        if len(self._masks) > self.window:
            self._counts -= self._masks.popleft()
        dead = np.add.reduceat(self._counts == 0, self._starts, dtype=np.int64).tolist()
        revived = ([0] * len(sizes) if was_dead is None
                   else np.add.reduceat(was_dead & mask, self._starts, dtype=np.int64).tolist())
        records = len(self._masks)
        return [WindowCounts(d, d / n, r, records) for d, n, r in zip(dead, sizes, revived)]


@dataclass(frozen=True)
class Alert:
    """A layer's window-dead share crossed the threshold, or grew too fast within the window.

    ``kind`` is ``dead_share`` (the share reached ``threshold``) or ``dead_growth``
    (it grew by more than ``threshold``, in share points, from ``previous``: its
    lowest value within the window).
    """

    kind: str
    step: int
    layer: int
    window_dead_share: float
    threshold: float
    previous: float | None
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


class AlertMonitor:
    """Watches each layer's window-dead share; each condition alerts once when it starts to hold.

    A condition that stops holding re-arms: a layer whose share falls below the
    threshold and crosses it again alerts again.

    Args:
        window: Recorded steps over which growth is measured.
        dead_share: Alert when the share reaches this (None: never).
        growth: Alert when the share exceeds its lowest value in the window by
            more than this many share points (None: never).
    """

    def __init__(self, window: int, dead_share: float | None = 0.25, growth: float | None = 0.10) -> None:
        self.window, self.dead_share, self.growth = window, dead_share, growth
        self._shares: list[deque[float]] = []
        self._holding: dict[tuple[str, int], bool] = {}

    def update(self, step: int, shares: list[float]) -> list[Alert]:
        """Feed one record's per-layer window-dead shares; the alerts that start now."""
        if not self._shares:
            self._shares = [deque(maxlen=self.window) for _ in shares]
        alerts = []
        for i, share in enumerate(shares):
            history = self._shares[i]
            history.append(share)
            low = min(history)
            if self.dead_share is not None and self._starts(("dead_share", i), share >= self.dead_share):
                alerts.append(Alert("dead_share", step, i + 1, share, self.dead_share, None,
                                    f"step {step}: hidden layer {i + 1} has {100 * share:.1f}% window-dead "
                                    f"units (alert at {100 * self.dead_share:g}%)"))
            if self.growth is not None and self._starts(("dead_growth", i), share - low > self.growth):
                alerts.append(Alert("dead_growth", step, i + 1, share, self.growth, low,
                                    f"step {step}: hidden layer {i + 1}'s window-dead units grew from "
                                    f"{100 * low:.1f}% to {100 * share:.1f}% within {len(history)} records "
                                    f"(alert above {100 * self.growth:g} points)"))
        return alerts

    def _starts(self, key: tuple[str, int], holds: bool) -> bool:
        started = holds and not self._holding.get(key, False)
        self._holding[key] = holds
        return started
