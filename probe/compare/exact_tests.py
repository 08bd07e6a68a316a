"""The two paired tests compare needs, computed here instead of importing ``scipy.stats``.

``scipy.stats`` costs about 0.8 s to import on a small CPU, more than half of
what ``probe compare`` spends on its own work, for two p-values on at most a
few hundred numbers. Both functions return exactly what scipy 1.17 returns
with the arguments probe uses (``tests/test_stats.py`` compares them on
hand-built and random cases in every regime):

* :func:`sign_test_p` = ``scipy.stats.binomtest(k, n, 0.5).pvalue`` (two-sided):
  ``min(1, 2 * P(X <= min(k, n - k)))`` for ``X ~ Bin(n, 1/2)``, the
  distribution being symmetric.
* :func:`signed_rank_p` = ``scipy.stats.wilcoxon(d, zero_method="wilcox").pvalue``
  (two-sided, ``method="auto"``, no continuity correction). Zeros are dropped;
  ``T+`` is the sum of the average ranks of ``|d|`` over the positive ``d``;
  ``n`` the non-zero count. scipy's ``auto`` then picks, by ``len(d)``
  (zeros included):

  - ``len(d) <= 50``, no zeros and no tied ``|d|``: the exact null
    distribution of ``T+`` (every sign pattern of ranks ``1..n`` equally
    likely), ``p = min(1, 2 * min(P(T+ >= floor t), P(T+ <= ceil t)))``;
  - ``len(d) <= 13`` with zeros or ties: the same over the actual (average)
    ranks, enumerating all sign patterns;
  - otherwise the normal approximation ``z = (t - n(n+1)/4) / se`` with
    ``se^2 = (n(n+1)(2n+1) - sum(c^3 - c) / 2) / 24`` over the tie counts
    ``c``, ``p = erfc(|z| / sqrt 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def sign_test_p(wins_a: int, wins_b: int) -> float | None:
    """Two-sided exact sign test: p of a split at least this uneven if each pair were a coin toss."""
    n = wins_a + wins_b
    if n == 0:
        return None
    k = min(wins_a, wins_b)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2 ** n)


def _average_ranks(values: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Ranks 1..n of ``values`` (ties get their average rank) and the size of each tie group."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sizes = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[order[j + 1]] == values[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        sizes.append(j - i + 1)
        i = j + 1
    return ranks, sizes


def _sign_pattern_counts(doubled_ranks: Sequence[int]) -> list[int]:
    """``counts[s]``: the number of sign patterns whose positive ranks sum to ``s / 2`` (ranks doubled)."""
    counts = [1] + [0] * sum(doubled_ranks)
    top = 0
    for r in doubled_ranks:
        top += r
        for s in range(top, r - 1, -1):
            counts[s] += counts[s - r]
    return counts


def signed_rank_p(diffs: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (as scipy's, above); None if all are 0."""
    d = np.asarray(diffs, dtype=float)
    nonzero = d[d != 0]
    n = len(nonzero)
    if n == 0:
        return None
    ranks, sizes = _average_ranks(np.abs(nonzero))
    t_plus = float(ranks[nonzero > 0].sum())
    ties = any(c > 1 for c in sizes)
    zeros = n < len(d)
    if (len(d) <= 50 and not ties and not zeros) or (len(d) <= 13 and (ties or zeros)):
        doubled = [int(round(2 * r)) for r in ranks]  # average ranks are multiples of 1/2
        counts = _sign_pattern_counts(doubled)
        total = 2 ** n
        observed = 2 * t_plus
        if ties or zeros:  # the permutation test: P(T >= t) and P(T <= t) at the observed value
            upper = sum(counts[s] for s in range(len(counts)) if s >= observed - 1e-9)
            lower = sum(counts[s] for s in range(len(counts)) if s <= observed + 1e-9)
        else:  # the exact distribution, statistic rounded outwards (an integer here)
            upper = sum(counts[int(2 * math.floor(t_plus)):])
            lower = sum(counts[:int(2 * math.ceil(t_plus)) + 1])
        return min(1.0, 2 * min(upper, lower) / total)
    mean = n * (n + 1) / 4
    var = (n * (n + 1) * (2 * n + 1) - sum(c ** 3 - c for c in sizes) / 2) / 24
    z = (t_plus - mean) / math.sqrt(var)
    return math.erfc(abs(z) / math.sqrt(2))
