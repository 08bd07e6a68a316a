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

    The same as ``np.argsort(-flat, axis=1, kind="stable")[:, :k]``, but only the
    values at or above each row's k-th largest are sorted.
    """
    if flat.shape[1] <= 4 * k or flat.size <= 2**16:  # small: one vectorised sort beats the row loop
        return np.argsort(-flat, axis=1, kind="stable")[:, :k]
    kth = -np.partition(-flat, k - 1, axis=1)[:, k - 1:k]  # each row's k-th largest value
    rows = []
    for values, threshold in zip(flat, kth[:, 0]):
        keep = np.flatnonzero(values >= threshold)  # ascending indices, every tie included
        rows.append(keep[np.argsort(-values[keep], kind="stable")[:k]])
    return np.stack(rows)


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
    paths = []
    for rank in range(k):
        if not np.isfinite(best[output, rank]):
            break
        units, unit, r = [output], output, rank
        for back in reversed(backs):
            unit, r = (int(v) for v in back[unit, r])
            units.append(unit)
        units.reverse()
        sign = 1
        for li, c in enumerate(contribs):
            sign *= 1 if c[units[li + 1], units[li]] >= 0 else -1
        paths.append(CircuitPath(tuple(units), float(np.exp(best[output, rank])), sign))
    return tuple(paths)
