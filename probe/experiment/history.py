"""Reading what ``probe.track`` wrote: one training run's records, their series and summary.

A history file is JSON lines (:mod:`probe.engines.track_io`): a header, then one
record per recorded step. :func:`read_history` checks it and keeps the records;
:class:`History` hands out series on the step axis (NaN where a record lacks a
value); :meth:`History.summary` reduces it to what ``probe history`` prints.

Summary definitions, per hidden layer:

* ``first_step``, ``last_step``: the first and last recorded steps;
* ``peak_window_dead_share``, ``peak_step``: the largest ``window_dead_share``
  over the records, and the first step at which it was reached;
* ``grad_ratio_start``, ``grad_ratio_end``: ``grad_ratio`` at the first and at
  the last record that defines it (None when none does);
* ``dead_rate_start``, ``dead_rate_end``, ``window_dead_share_end``: dead on the
  first and last recorded batch, window-dead at the last record.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from probe.core.errors import ProbeError
from probe.engines.track_io import read_lines


@dataclass(frozen=True)
class LayerSummary:
    """One hidden layer over a run (see the module docstring)."""

    layer: int
    units: int
    negative_slope: float | None
    first_step: int
    last_step: int
    peak_window_dead_share: float
    peak_step: int
    grad_ratio_start: float | None
    grad_ratio_end: float | None
    dead_rate_start: float
    dead_rate_end: float
    window_dead_share_end: float


@dataclass(frozen=True)
class HistorySummary:
    """What ``probe history`` reports about one run."""

    path: str
    label: str
    model: str | None
    every: int | None
    records: int
    first_step: int | None
    last_step: int | None
    loss_start: float | None
    loss_end: float | None
    alerts: int
    layers: tuple[LayerSummary, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["notes"] = list(self.notes)
        return doc


def _number(value: object) -> float:
    """A record's value as a float, NaN when missing or null."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _first_last(values: np.ndarray) -> tuple[float | None, float | None]:
    defined = values[~np.isnan(values)]
    return (float(defined[0]), float(defined[-1])) if defined.size else (None, None)


@dataclass(frozen=True)
class History:
    """The records of one ``probe.track`` run, in step order.

    Attributes:
        path: Where it was read from.
        label: A short name for tables and legends (the file name without ``.jsonl``).
        header: The header line (model, ``every``, ``window``, thresholds).
        records: One dict per recorded step.
        notes: What was skipped while reading (a cut-short last line).
    """

    path: str
    label: str
    header: dict
    records: tuple[dict, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def layers(self) -> int:
        """Hidden layers (from the first record; 0 without records)."""
        return len(self.records[0]["layers"]) if self.records else 0

    def steps(self) -> np.ndarray:
        return np.array([r["step"] for r in self.records], dtype=np.int64)

    def series(self, key: str, layer: int | None = None) -> np.ndarray:
        """A top-level value (``loss``) per record, or hidden layer ``layer``'s (0-based) value."""
        if layer is None:
            return np.array([_number(r.get(key)) for r in self.records])
        return np.array([_number(r["layers"][layer].get(key)) if layer < len(r["layers"]) else math.nan
                         for r in self.records])

    def sign_series(self, key: str = "activation_route_share", output: int = 0,
                    negative_only: bool = False) -> np.ndarray:
        """A sign-route value of ``output`` per record (over negative predictions with ``negative_only``)."""
        out = []
        for r in self.records:
            signs = r.get("sign") or []
            entry = signs[output] if output < len(signs) else {}
            out.append(_number((entry.get("negative_predictions") or {}).get(key) if negative_only
                               else entry.get(key)))
        return np.array(out)

    def summary(self) -> HistorySummary:
        steps = self.steps()
        loss = _first_last(self.series("loss"))
        layers = []
        for i in range(self.layers):
            share = np.nan_to_num(self.series("window_dead_share", i), nan=-1.0)
            peak = int(np.argmax(share))
            dead = self.series("dead_rate", i)
            ratio = _first_last(self.series("grad_ratio", i))
            first = self.records[0]["layers"][i]
            layers.append(LayerSummary(
                layer=i + 1, units=int(first.get("units", 0)), negative_slope=first.get("negative_slope"),
                first_step=int(steps[0]), last_step=int(steps[-1]),
                peak_window_dead_share=float(max(share[peak], 0.0)), peak_step=int(steps[peak]),
                grad_ratio_start=ratio[0], grad_ratio_end=ratio[1],
                dead_rate_start=float(dead[0]), dead_rate_end=float(dead[-1]),
                window_dead_share_end=float(max(share[-1], 0.0))))
        return HistorySummary(
            path=self.path, label=self.label, model=self.header.get("model"), every=self.header.get("every"),
            records=len(self.records), first_step=int(steps[0]) if steps.size else None,
            last_step=int(steps[-1]) if steps.size else None, loss_start=loss[0], loss_end=loss[1],
            alerts=sum(len(r.get("alerts") or ()) for r in self.records), layers=tuple(layers),
            notes=self.notes)


def _check_record(path: Path, number: int, record: dict, layers: int | None) -> None:
    problem = None
    if not isinstance(record.get("step"), int) or isinstance(record.get("step"), bool):
        problem = "no integer 'step'"
    elif not isinstance(record.get("layers"), list) or not all(isinstance(x, dict) for x in record["layers"]):
        problem = "no 'layers' list"
    elif layers is not None and len(record["layers"]) != layers:
        problem = f"{len(record['layers'])} hidden layers where the first record has {layers}"
    if problem is not None:
        raise ProbeError(f"{path} is not a probe.track history (record {number})",
                         expected="records with 'step' and one 'layers' entry per hidden layer",
                         found=problem, fix="pass the .jsonl file that probe.track(model, path=...) wrote")


def read_history(path: str | Path, label: str | None = None) -> History:
    """Read and check one history file.

    A last line cut short by a crash is skipped with a note; records are sorted by step.

    Raises:
        ProbeError: Missing, not text, corrupt, or not written by ``probe.track``.
    """
    path = Path(path)
    header, records, notes = read_lines(path)
    if header is None:
        found = ("an empty file" if not records and not notes else "only a line cut short" if not records
                 else "records without the header line probe.track writes first")
        raise ProbeError(f"{path} is not a probe.track history", expected="a first line with format probe-track/1",
                         found=found, fix="pass the .jsonl file that probe.track(model, path=...) wrote, unedited")
    if header.get("format") != "probe-track/1":
        raise ProbeError(f"{path} is not a probe.track history", expected="a header with format probe-track/1",
                         found=f"format {header.get('format')!r}",
                         fix="pass the .jsonl file that probe.track(model, path=...) wrote")
    layers = None
    for number, record in enumerate(records, start=1):
        _check_record(path, number, record, layers)
        layers = len(record["layers"])
    if not records:
        notes = [*notes, f"{path}: no recorded step yet"]
    records = sorted(records, key=lambda r: r["step"])
    name = path.name[:-len(".jsonl")] if path.name.endswith(".jsonl") else path.stem
    return History(str(path), label or name, header, tuple(records), tuple(notes))


def read_histories(paths: list[str | Path]) -> list[History]:
    """Several histories, labelled by file name (with the folder too where two names clash)."""
    paths = [Path(p) for p in paths]
    seen: dict[Path, Path] = {}
    for p in paths:
        if p.exists() and seen.setdefault(p.resolve(), p) is not p:
            raise ProbeError(f"The history {p} is given twice", expected="each history once",
                             found=f"{seen[p.resolve()]} and {p}", fix="pass each .jsonl file once")
    names = [p.name for p in paths]
    out = []
    for p in paths:
        label = None
        if names.count(p.name) > 1:
            label = f"{p.parent.name}/{p.name[:-len('.jsonl')] if p.name.endswith('.jsonl') else p.stem}"
        out.append(read_history(p, label))
    return out
