"""The evaluation rows a circuit is traced on: a seeded sample stratified by the sign of the target.

Attribution costs far more per row than the diagnostics' forward+backward, so
on large evaluation sets the circuit runs on at most ``max_samples`` rows
(default :data:`DEFAULT_MAX_SAMPLES`). The sample is stratified by the sign of
the traced quantity (the prediction ``f_K(x)``, or the logit margin for
``target="margin"``): the negative and the positive group keep their
proportions of the whole set, by largest remainder, except that a group with
at least one row keeps at least one (so a rare negative group is never
dropped). Within each group the rows are drawn without replacement by a
``torch.Generator`` seeded with ``seed`` and returned in their original order:
the same data gives the same rows on every run and every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DEFAULT_MAX_SAMPLES = 2000
SAMPLE_SEED = 0


@dataclass(frozen=True)
class SampleInfo:
    """Which share of the evaluation rows the circuit saw.

    Attributes:
        used: Rows traced.
        of: Rows in the evaluation data.
        stratified_by: ``prediction sign`` or ``margin sign`` (``None`` when every row was used).
        seed: Seed of the draw.
    """

    used: int
    of: int
    stratified_by: str | None
    seed: int = SAMPLE_SEED

    @property
    def capped(self) -> bool:
        return self.used < self.of

    def describe(self) -> str:
        """One line for the terminal and the reports."""
        if not self.capped:
            return f"Circuit traced on all {self.of} evaluation rows."
        return (f"Circuit traced on a sample of {self.used} of {self.of} evaluation rows, stratified by "
                f"{self.stratified_by} (seed {self.seed}; --circuit-samples N changes the cap, 0 = all rows).")

    def to_dict(self) -> dict:
        return {"used": self.used, "of": self.of, "stratified_by": self.stratified_by, "seed": self.seed}


def group_quotas(counts: list[int], cap: int) -> list[int]:
    """Rows to draw per group: proportional by largest remainder, each non-empty group at least one.

    Args:
        counts: Rows per group.
        cap: Rows to draw in all (``< sum(counts)``).
    """
    total = sum(counts)
    exact = [cap * c / total for c in counts]
    quotas = [math.floor(e) for e in exact]
    order = sorted(range(len(counts)), key=lambda g: (-(exact[g] - quotas[g]), g))
    for g in order[:cap - sum(quotas)]:
        quotas[g] += 1
    for g, c in enumerate(counts):  # a rare group keeps one row, taken from the largest quota
        if c > 0 and quotas[g] == 0 and cap >= len(counts):
            donor = max(range(len(counts)), key=lambda h: (quotas[h], -h))
            quotas[donor] -= 1
            quotas[g] = 1
    return quotas


def stratified_rows(negative: torch.Tensor, max_samples: int | None,
                    seed: int = SAMPLE_SEED) -> torch.Tensor | None:
    """Sorted row indices of the stratified sample, or None when every row is used.

    Args:
        negative: ``[rows]`` bool, True where the traced quantity is negative.
        max_samples: The cap (None: all rows).
        seed: Seed of the draw.
    """
    n = int(negative.shape[0])
    if max_samples is None or n <= max_samples:
        return None
    negative = negative.cpu()
    groups = [torch.nonzero(negative).flatten(), torch.nonzero(~negative).flatten()]
    quotas = group_quotas([len(g) for g in groups], max_samples)
    generator = torch.Generator().manual_seed(seed)
    picked = [g[torch.randperm(len(g), generator=generator)[:q]] for g, q in zip(groups, quotas)]
    return torch.sort(torch.cat(picked)).values
