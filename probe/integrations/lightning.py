"""``ProbeCallback``: ``probe.track`` for a PyTorch Lightning ``Trainer``.

::

    from probe.integrations.lightning import ProbeCallback

    trainer = lightning.Trainer(callbacks=[ProbeCallback("runs/history.jsonl", every=10)])
    trainer.fit(model, loader)          # then: probe history runs/history.jsonl

The callback opens a :class:`probe.engines.track.Tracker` on the LightningModule
(or on the submodule named by ``module``, e.g. ``"net"``) when fitting starts,
closes the current step after each optimizer step, and removes every hook when
fitting ends or fails. Steps are the optimizer steps of this ``fit``: with
``accumulate_grad_batches=N``, one step covers its N training batches, and its
loss is the mean of their losses (Lightning hands each one over divided by N;
the callback undoes that). Needs the ``lightning`` extra: from a checkout of
probe, ``pip install -e ".[lightning]"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch

try:
    from lightning.pytorch import Callback
except ImportError:  # the older standalone package
    try:
        from pytorch_lightning import Callback
    except ImportError:
        raise ImportError("probe.integrations.lightning needs PyTorch Lightning: "
                          "pip install -e \".[lightning]\" in a checkout of probe") from None

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
        self._optimizer_steps = 0  # trainer.global_step when the current step began
        self._losses: list[torch.Tensor | float] = []  # the current step's batch losses, as Lightning gave them

    def on_fit_start(self, trainer, pl_module) -> None:
        self._close()
        target = pl_module if self.module is None else pl_module.get_submodule(self.module)
        self.tracker = Tracker(target, self.path, **self.options).open()
        self._optimizer_steps, self._losses = trainer.global_step, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.tracker is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is not None and self.tracker.recording:
            self._losses.append(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        if trainer.global_step == self._optimizer_steps:
            return  # a batch whose gradients accumulate: its optimizer step is still to come
        self._optimizer_steps = trainer.global_step
        losses, self._losses = self._losses, []
        self.tracker.step(_mean_loss(losses, trainer.accumulate_grad_batches if pl_module.automatic_optimization
                                     else 1))

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._close(failed=True)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._close()

    def _close(self, failed: bool = False) -> None:
        if self.tracker is not None:
            self.tracker.close(failed=failed)

    @property
    def history(self) -> list[dict]:
        """The records of the last fit (see :attr:`probe.engines.track.Tracker.history`)."""
        return [] if self.tracker is None else self.tracker.history


def _mean_loss(losses: list, divided_by: int) -> object:
    """The mean of the step's batch losses, each given divided by ``divided_by`` (None without any)."""
    if not losses:
        return None
    if len(losses) == 1 and divided_by == 1:
        return losses[0]  # as given: Tracker.step checks it
    if all(isinstance(loss, torch.Tensor) and loss.numel() == 1 for loss in losses):
        return torch.stack([loss.reshape(()).float() for loss in losses]).mean() * divided_by
    odd = [loss for loss in losses
           if not isinstance(loss, (int, float)) and not (isinstance(loss, torch.Tensor) and loss.numel() == 1)]
    if odd:
        return odd[0]  # not a number: Tracker.step says what it expected
    return sum(float(loss) for loss in losses) / len(losses) * divided_by
