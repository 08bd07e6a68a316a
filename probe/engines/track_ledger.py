"""Where the sums of a recorded step of ``probe.track`` live: kept work tensors and one flat ledger.

Each hidden layer writes its sums into its part of one flat tensor per step
(:class:`StepLedger`), laid out by :func:`ledger_layout`, and the final layer's
sign routes write theirs after them (:func:`sign_layout`), so the record moves
one tensor to the host (one synchronisation on a GPU) and reads every number
from one float64 array.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np
import torch

# One hidden layer's part, piece by piece: (name, entries per unit, fixed entries). forward:
# [3, units] (n(z<=0), sum relu(z), sum z; the last row only for a nonzero slope); grad: sum |g|,
# sum |g| at z<=0; split: ||G_neg||, ||G_pos||, <G_neg, G_pos> (only ||G_pos|| is written while
# G_neg is exactly 0); b_all: sum g per unit (the bias gradient); b_neg: sum g * [z<=0] per unit
# (written once not exactly 0). A piece that a step does not write keeps an older step's
# numbers: the record reads only what the step's flags say was written.
LEDGER = (("forward", 3, 0), ("grad", 0, 2), ("split", 0, 3), ("b_all", 1, 0), ("b_neg", 1, 0))


def _layout(pieces: tuple[tuple[str, int], ...]) -> tuple[dict[str, slice], int]:
    parts, at = {}, 0
    for name, size in pieces:
        parts[name] = slice(at, at + size)
        at += size
    return parts, at


@functools.lru_cache(maxsize=64)
def ledger_layout(units: int) -> tuple[dict[str, slice], int]:
    """Each piece's slice of the part of a hidden layer this wide, and the part's size."""
    return _layout(tuple((name, per_unit * units + fixed) for name, per_unit, fixed in LEDGER))


@functools.lru_cache(maxsize=16)
def sign_layout(outputs: int, units: int) -> tuple[dict[str, slice], int]:
    """The sign routes' part: with ``A = [1, P]`` (:class:`probe.engines.track_sign.SignStep`),
    ``A^T max(h, 0)`` and ``A^T min(h, 0)`` (``[1 + outputs, units]`` each), ``A^T |h W^T|``
    (``[1 + outputs, outputs]``), the counts ``sum_i A``, and the weight and bias of the
    step's forward pass."""
    rows = outputs + 1
    return _layout((("hp", rows * units), ("hn", rows * units), ("net", rows * outputs), ("counts", rows),
                    ("weight", outputs * units), ("bias", outputs)))


class Scratch:
    """Work tensors kept from one recorded step to the next.

    Recording must not allocate a fresh batch-sized tensor per step: on the CPU,
    the allocator hands such sizes back to the system, and touching new pages
    costs more than the arithmetic. Memory per hidden layer: a slab of 2 or 3
    ``[samples, units]`` planes per batch of a step and, for a nonzero slope or
    several batches, up to three ``[fan_in, units]`` gradient sums; plus one
    ledger for the step; constant over a run.
    """

    def __init__(self) -> None:
        self._pool: dict[object, torch.Tensor] = {}
        self._views: dict[object, tuple[torch.Tensor, object]] = {}
        self.several_batches = False  # a recorded step of this run summed x^T g over several batches

    def get(self, key: object, shape: tuple[int, ...], like: torch.Tensor,
            init: Callable[[torch.Tensor], object] | None = None) -> torch.Tensor:
        """The tensor kept under ``key``, new (and passed to ``init``) when shape, dtype or device change."""
        buf = self._pool.get(key)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._pool[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
            if init is not None:
                init(buf)
        return buf

    def views(self, key: object, base: torch.Tensor, make: Callable[[torch.Tensor], object]) -> object:
        """``make(base)`` (views into ``base``), made once and kept for as long as ``base`` is the same tensor.

        A recorded step reads and writes dozens of slices of its kept tensors;
        slicing anew on every step costs more than some of the arithmetic.
        """
        got = self._views.get(key)
        if got is None or got[0] is not base:
            got = self._views[key] = (base, make(base))
        return got[1]


class StepLedger:
    """The flat tensor of one recorded step: each hidden layer's part, then the sign routes'.

    The tensor is kept in ``scratch`` from step to step, in the dtype of the
    step's first work tensor; a part asked for in another dtype or on another
    device (a model of mixed precision) gets a tensor of its own, and the record
    then gathers the parts one by one.

    Args:
        scratch: Where the tensor is kept.
        sizes: Each part's size, in order.
    """

    def __init__(self, scratch: Scratch, sizes: list[int]) -> None:
        self.scratch = scratch
        self.bounds = [0, *itertools.accumulate(sizes)]
        self.flat: torch.Tensor | None = None
        self.parts: list[torch.Tensor | None] = [None] * len(sizes)
        self.shared = True  # every part asked for is a slice of flat

    def part(self, index: int, like: torch.Tensor) -> torch.Tensor:
        """Part ``index`` (the same tensor for the whole step), for work tensors like ``like``."""
        got = self.parts[index]
        if got is not None:
            return got
        if self.flat is None:
            self.flat = self.scratch.get("ledger", (self.bounds[-1],), like, torch.Tensor.zero_)
        if self.flat.dtype == like.dtype and self.flat.device == like.device:
            got = self.scratch.views("ledger", self.flat, self._slices)[index]
        else:
            a, b = self.bounds[index], self.bounds[index + 1]
            got = self.scratch.get(("ledger", index), (b - a,), like, torch.Tensor.zero_)
            self.shared = False
        self.parts[index] = got
        return got

    def _slices(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [flat[a:b] for a, b in itertools.pairwise(self.bounds)]

    def host(self) -> list[np.ndarray | None]:
        """Every part as a float64 array (None for a part never asked for), in one transfer if they share the tensor."""
        if self.flat is None:
            return [None] * len(self.parts)
        if self.shared:
            flat = self.flat.cpu().numpy().astype(np.float64)
            return [None if p is None else flat[a:b]
                    for p, a, b in zip(self.parts, self.bounds, self.bounds[1:])]
        return [None if p is None else p.cpu().numpy().astype(np.float64) for p in self.parts]

