"""The ensemble trainer: many MLPs (variants x seeds) trained at once as batched tensors.

Modules: :mod:`~probe.engines.training.init` (initial parameters),
:mod:`~probe.engines.training.ensemble` (the batched model), :mod:`~probe.engines.training.layers`
(its per-member activations, norms and dropout), :mod:`~probe.engines.training.objective` (the
per-member losses), :mod:`~probe.engines.training.trainer`
(the training loop), :mod:`~probe.engines.training.diagnose` (diagnostics per member) and
:mod:`~probe.engines.training.convergence` (convergence measures).
"""

from probe.engines.training.ensemble import Ensemble
from probe.engines.training.init import INITS, init_digest, init_params
from probe.engines.training.trainer import TrainConfig, TrainOutcome, epoch_order, train

__all__ = ["INITS", "Ensemble", "TrainConfig", "TrainOutcome", "epoch_order", "init_digest",
           "init_params", "train"]
