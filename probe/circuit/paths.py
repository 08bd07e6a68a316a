"""The strongest input-to-output paths of a group's circuit graph, by dynamic programming.

Edge ``j -> k`` into layer ``l`` carries the group-mean contribution
``c[k, j] = W[k, j] * mean(a_j)``. Its *share* is ``r[k, j] = |c[k, j]| /
sum_j' |c[k, j']|``: the fraction of unit ``k``'s absolute incoming mass that
comes from ``j``. A path ``x_j0 -> h1_j1 -> ... -> y_K`` has

* ``strength = prod of r`` along it: the share of the output's incoming mass
  that traces back along this path when every unit splits its mass among its
  inputs in proportion to ``|c|`` (the strengths of all paths sum to 1);
* ``sign = prod of sign(c)`` along it.

Maximising the product is a shortest-path problem with edge cost ``-log r``
on a layered DAG; the ``k`` best paths are found exactly by keeping the ``k``
best partial paths per node, layer by layer: ``O(k * edges)``, a few
milliseconds for 64-wide layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def node_id(layer: int, unit: int) -> str:
    """The graph node name of unit ``unit`` of layer ``layer``: ``"layer:unit"``."""
    return f"{layer}:{unit}"


@dataclass(frozen=True)
class CircuitPath:
    """One input-to-output path.

    Attributes:
        units: The unit index in every layer, inputs first, output ``K`` last.
        strength: Product of the edge shares (in (0, 1]).
        sign: Product of the signs of the edge contributions (+1 or -1).
    """

    units: tuple[int, ...]
    strength: float
    sign: int

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(node_id(layer, u) for layer, u in enumerate(self.units))

    def to_dict(self) -> dict:
        return {"units": list(self.units), "nodes": list(self.nodes),
                "strength": self.strength, "sign": self.sign}


def edge_shares(contrib: np.ndarray) -> np.ndarray:
    """``|c| / sum over senders of |c|`` per receiver (rows); zero rows stay zero."""
    mag = np.abs(contrib)
    total = mag.sum(axis=1, keepdims=True)
    return np.divide(mag, total, out=np.zeros_like(mag), where=total > 0)


def _top_k_stable(flat: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the ``k`` largest values, largest first, ties to the lower index.

    The same as ``np.argsort(-flat, axis=1, kind="stable")[:, :k]``, without
    sorting whole rows: a partition finds each row's k-th largest value, and only
    the entries at or above it (every tie included, at least ``k`` per row) are
    sorted, all rows in one ``lexsort`` by (row, value descending, index).
    """
    n_rows, n_cols = flat.shape
    if n_cols <= k or flat.size <= 4096:  # small: one sort costs less than the selection's steps
        return np.argsort(-flat, axis=1, kind="stable")[:, :k]
    kth = -np.partition(-flat, k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero(flat >= kth[:, None])
    order = np.lexsort((cols, -flat[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n_rows))[rows]
    keep = rank < k
    out = np.empty((n_rows, k), dtype=np.int64)
    out[rows[keep], rank[keep]] = cols[keep]
    return out


def top_paths(contribs: list[np.ndarray], output: int, k: int = 10) -> tuple[CircuitPath, ...]:
    """The ``k`` paths from any input to output ``output`` with the largest strength.

    Args:
        contribs: Group-mean contributions per Linear layer, ``[receivers, senders]``.
        output: The output unit the paths end at.
        k: How many paths (fewer when fewer paths have a non-zero strength).

    Ties are broken by the lower unit indices, so the result is deterministic.
    """
    with np.errstate(divide="ignore"):
        logs = [np.log(edge_shares(c)) for c in contribs]  # -inf for a zero edge
    n_in = contribs[0].shape[1]
    # best[u, t]: log strength of the t-th best partial path ending at unit u; back[u, t] = (prev unit, rank)
    best = np.full((n_in, k), -np.inf)
    best[:, 0] = 0.0
    backs = []
    for li, log_r in enumerate(logs):
        receivers = [output] if li == len(logs) - 1 else range(log_r.shape[0])
        cand = best[None, :, :] + log_r[list(receivers), :, None]  # [recv, senders, k]
        flat = cand.reshape(cand.shape[0], -1)
        order = _top_k_stable(flat, k)  # [recv, <= k]
        new_best = np.full((log_r.shape[0], k), -np.inf)
        back = np.zeros((log_r.shape[0], k, 2), dtype=np.int64)
        rows, kept = np.asarray(list(receivers)), order.shape[1]
        new_best[rows, :kept] = np.take_along_axis(flat, order, axis=1)
        back[rows, :kept, 0], back[rows, :kept, 1] = np.divmod(order, k)
        best = new_best
        backs.append(back)
    finite = np.isfinite(best[output])  # the ranks are sorted: the finite ones come first
    found = int(finite.sum())
    unit, rank = np.full(found, output), np.arange(found)
    columns = [unit]
    for back in reversed(backs):  # every path traced back at once
        unit, rank = back[unit, rank, 0], back[unit, rank, 1]
        columns.append(unit)
    units = np.stack(columns[::-1], axis=1)  # [found, layers]: inputs first, the output last
    signs = np.ones(found, dtype=np.int64)
    for li, c in enumerate(contribs):
        signs *= np.where(c[units[:, li + 1], units[:, li]] >= 0, 1, -1)
    strengths = np.exp(best[output, :found])
    paths = [CircuitPath(tuple(u), float(st), int(sg))
             for u, st, sg in zip(units.tolist(), strengths.tolist(), signs.tolist())]
    return tuple(paths)
