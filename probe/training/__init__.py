"""The ensemble trainer: many MLPs (variants x seeds) trained at once as batched tensors.

Modules: :mod:`~probe.training.init` (initial parameters),
:mod:`~probe.training.ensemble` (the batched model), :mod:`~probe.training.trainer`
(the training loop), :mod:`~probe.training.diagnose` (diagnostics per member) and
:mod:`~probe.training.convergence` (convergence measures).
"""

from probe.training.ensemble import Ensemble
from probe.training.init import INITS, init_digest, init_params
from probe.training.trainer import TrainConfig, TrainOutcome, epoch_order, train

__all__ = ["INITS", "Ensemble", "TrainConfig", "TrainOutcome", "epoch_order", "init_digest",
           "init_params", "train"]
