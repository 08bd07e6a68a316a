"""One grid cell as a task: a JSON-able payload in, a JSON-able record out, and its content hash.

:func:`run_cell` is what every executor runs, in this process or on a Ray
worker: it validates the cell's scenario document again (a worker trusts
nothing it is sent) and calls :func:`probe.compare.run.compare_variants`, the
same code as ``probe compare``. Its record is the compare JSON (``runs``,
``summaries``, ``comparisons``, ...), passed through a JSON round trip so that
a record computed here, one from a Ray worker and one read from the cache are
equal value for value.
"""

from __future__ import annotations

import hashlib
import json

from probe.core.io import finite_json
from probe.core.version import __version__
from probe.sweep.grid import Cell


class CellInterrupted(KeyboardInterrupt):
    """A cell's training was stopped by Ctrl-C: its partial result is not a result."""


def cell_payload(cell: Cell, variants: tuple[str, ...], *, device: str = "cpu", circuits: bool = True,
                 max_memory: int | None = None) -> dict:
    """Everything a worker needs to run ``cell``, as plain JSON values."""
    return {"scenario": cell.raw, "where": f"{cell.scenario.name} cell {cell.index}", "variants": list(variants),
            "device": device, "circuits": circuits, "max_memory": max_memory}


def cell_key(cell: Cell, variants: tuple[str, ...], *, device: str = "cpu", circuits: bool = True) -> str:
    """Content hash of the cell's full settings and probe's version (the cache key).

    It covers the resolved scenario (every key, defaults filled in; not the
    file's path), the variants, the seeds, the device, whether circuits are
    traced, and ``probe.core.version.__version__``.
    """
    scenario = {k: v for k, v in cell.scenario.to_dict().items() if k != "path"}
    doc = {"scenario": scenario, "variants": list(variants), "device": device, "circuits": circuits,
           "probe": __version__}
    text = json.dumps(finite_json(doc), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def as_json_record(doc: dict) -> dict:
    """``doc`` as it reads back from strict JSON (tuples as lists, NaN/inf as None)."""
    return json.loads(json.dumps(finite_json(doc), allow_nan=False, default=str))


def run_cell(payload: dict) -> dict:
    """Train one cell (every variant x seed as one ensemble) and return its compare record.

    torch's thread count is left as the caller set it (executors pin it).

    Raises:
        ScenarioError, VariantError: The payload does not describe a valid run.
        CellInterrupted: Ctrl-C stopped training (the partial result is dropped).
    """
    from probe.compare.run import compare_variants
    from probe.experiment.scenarios import parse_scenario

    sc = parse_scenario(payload["scenario"], payload["where"], max_memory=payload.get("max_memory"))
    result = compare_variants(payload["variants"], sc, device=payload["device"], circuits=payload["circuits"],
                              max_memory=payload.get("max_memory"), threads=None)
    if result.interrupted:
        raise CellInterrupted
    doc = result.to_dict()
    doc.pop("definitions", None)  # once per sweep, not per cell
    return as_json_record(doc)
