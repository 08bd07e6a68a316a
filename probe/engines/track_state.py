"""One recorded step of ``probe.track``'s fast path: what its hooks fill, and what its record is made of.

:class:`FastStep` and :class:`probe.engines.track_general.GeneralStep` answer the
tracker alike (``finish``, ``saw_forward``, ``untrained_rows``, ``missing_gradient``,
``parts``, ``close``), so :class:`probe.engines.track.Tracker` builds a record
the same way on either path.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from probe.engines.track_batch import LayerStep
from probe.engines.track_ledger import Scratch, StepLedger
from probe.engines.track_record import layer_records, sign_results
from probe.engines.track_sign import RoutesFeed, SignStep


class FastStep:
    """The hidden layers' :class:`LayerStep` and the final layer's routes, over one ledger kept in ``scratch[-1]``.

    Args:
        layers, final: The hidden Linear layers and the final one.
        scratch: One :class:`Scratch` per hidden layer, then the final layer's.
        split: Split each weight gradient by the sign of ``z``.
        sizes: The ledger's parts (:func:`probe.engines.track_ledger.ledger_layout`, ``sign_layout``).
        margin: Sign routes of logit margins (through analyze's accumulator) rather than of the outputs.
    """

    def __init__(self, layers: list[nn.Linear], final: nn.Linear, scratch: list[Scratch], split: bool,
                 sizes: list[int], margin: bool) -> None:
        self.ledger = StepLedger(scratch[-1], sizes)
        self.layers = [LayerStep(lin.out_features, lin.in_features, pool, self.ledger, i, split)
                       for i, (lin, pool) in enumerate(zip(layers, scratch))]
        self.sign = RoutesFeed(True) if margin else \
            SignStep(scratch[-1], self.ledger, len(layers), final.out_features, final.in_features)

    def finish(self) -> bool:
        """Close every layer's sums; False when a forward pass with autograd reached no hidden layer."""
        return all([layer.finish() is not None for layer in self.layers])  # a list: every layer finishes

    @property
    def saw_forward(self) -> bool:
        """Whether a forward pass with autograd reached the model during this (unfinished) step."""
        return any(layer.batches for layer in self.layers)

    def untrained_rows(self) -> int:
        """Samples of the step's forward passes that no training backward pass reached (0 without any backward).

        By batch: per layer that takes gradients, the samples of its batches that
        no backward pass reached, leaving out those recomputed inside a backward
        pass (activation checkpointing); the least of those over the layers.
        """
        layers = [layer for layer in self.layers if layer.wants_grad]
        if not any(layer.trained for layer in layers):
            return 0
        return min(sum(rows for batch, rows in enumerate(layer.batch_rows)
                       if batch not in layer.trained and batch not in layer.recomputed) for layer in layers)

    @property
    def missing_gradient(self) -> bool:
        """A layer whose ``z`` took gradients got no training backward pass (step() before backward())."""
        return any(layer.wants_grad and not layer.grad_slabs for layer in self.layers)

    def parts(self, near_dead_threshold: float, dormant_tau: float) -> tuple[list[dict], list[dict], np.ndarray, int]:
        """The record's layers, sign entries, units active on some sample (end to end) and samples."""
        host = self.ledger.host()
        layers, active = layer_records(self.layers, host[:-1], near_dead_threshold, dormant_tau)
        routes = self.sign.results() if isinstance(self.sign, RoutesFeed) else sign_results(self.sign, host[-1])
        return layers, [s.to_dict() for s in routes], active, self.layers[0].samples

    def close(self) -> None:
        """Keep hooks of this step that fire late (the tracker closed first) off the kept scratch."""
        for layer in self.layers:
            layer.close()
