"""``ProbeCallback``: ``probe.track`` for a PyTorch Lightning ``Trainer``.

::

    from probe.integrations.lightning import ProbeCallback

    trainer = lightning.Trainer(callbacks=[ProbeCallback("runs/history.jsonl", every=10)])
    trainer.fit(model, loader)          # then: probe history runs/history.jsonl

The callback opens a :class:`probe.engines.track.Tracker` on the LightningModule
(or on the submodule named by ``module``, e.g. ``"net"``) when fitting starts,
closes the current training step after each training batch (after Lightning's
backward and optimizer step) with the batch's loss, and removes every hook when
fitting ends or fails. Steps are the training batches seen by this ``fit``.
Needs the ``lightning`` extra: ``pip install "probe-mlp[lightning]"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

try:
    from lightning.pytorch import Callback
except ImportError:  # the older standalone package
    try:
        from pytorch_lightning import Callback
    except ImportError:
        raise ImportError("probe.integrations.lightning needs PyTorch Lightning: "
                          "pip install \"probe-mlp[lightning]\"") from None

from probe.engines.track import Tracker


class ProbeCallback(Callback):
    """Records probe's diagnostics during ``Trainer.fit``.

    Args:
        path: JSON-lines history file (replaced at each fit); None keeps the records
            in memory (:attr:`history` after fitting).
        module: Dotted name of the submodule to track (``"net"``, ``"model.mlp"``);
            None tracks the LightningModule itself (its ``forward`` must be the MLP).
        every, window, alert_dead_share, alert_growth, on_alert, **options: As in
            :func:`probe.track`.
    """

    def __init__(self, path: str | Path | None = None, *, module: str | None = None, every: int = 1,
                 window: int = 20, alert_dead_share: float | None = 0.25, alert_growth: float | None = 0.10,
                 on_alert: Callable[[dict], object] | None = None, **options) -> None:
        super().__init__()
        self.path, self.module = path, module
        self.options = dict(every=every, window=window, alert_dead_share=alert_dead_share,
                            alert_growth=alert_growth, on_alert=on_alert, **options)
        self.tracker: Tracker | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._close()
        target = pl_module if self.module is None else pl_module.get_submodule(self.module)
        self.tracker = Tracker(target, self.path, **self.options).open()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.tracker is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        self.tracker.step(loss)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._close()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._close()

    def _close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()

    @property
    def history(self) -> list[dict]:
        """The records of the last fit (see :attr:`probe.engines.track.Tracker.history`)."""
        return [] if self.tracker is None else self.tracker.history
