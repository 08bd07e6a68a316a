"""The sections of a scenario as validated values: ``[data]``, ``[model]`` and ``[train]``.

``[model]`` takes, besides ``hidden`` and ``init``:

* ``norm = "none" | "batch" | "layer"``: a norm after every hidden Linear,
  per member (:mod:`probe.engines.training.layers`);
* ``dropout = 0.1``: dropout after every hidden activation, in training only.

``[train]`` takes, besides the optimiser recipe:

* ``loss = "mse" | "cross_entropy"``: inferred from the task when absent
  (``cross_entropy`` for classification, with one logit per class);
* ``target_loss`` or, under cross-entropy, ``target_accuracy``: the level whose
  steps to reach are the primary convergence measure (exactly one of them).
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.core.errors import ScenarioError
from probe.engines.training.init import INITS
from probe.engines.training.layers import NORM_KINDS
from probe.engines.training.objective import TRAIN_LOSSES
from probe.experiment.scenario_checks import (_bad, _check_choice, _check_float, _check_int, _check_targets,
                                              _short_repr)
from probe.core.limits import MAX_HIDDEN_LAYERS, MAX_LR, MAX_SEEDS

OPTIMIZERS = ("adam", "sgd")
DEFAULT_N_EVAL = 1024


@dataclass(frozen=True)
class DataSpec:
    """``[data]``: which generator, how many samples, which data seed.

    A scenario on a file (:mod:`probe.experiment.file_data`) has generator
    ``file``, its ``source``, and the sizes read from the file. ``n_classes``
    is the number of classes of a classification task (labels ``0..K-1``),
    0 for regression.
    """

    generator: str
    n_samples: int
    n_features: int
    seed: int = 0
    n_eval: int = DEFAULT_N_EVAL
    noise: float = 0.0
    source: object = None  # a probe.experiment.file_data.FileSource for a file scenario
    n_classes: int = 0

    @property
    def task(self) -> str:
        return "classification" if self.n_classes else "regression"


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: hidden widths, initialisation scheme, norm and dropout."""

    hidden: tuple[int, ...]
    init: str
    norm: str = "none"
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainSpec:
    """``[train]``: the optimisation recipe shared by every variant."""

    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    target_loss: float | None
    seeds: int
    momentum: float = 0.0
    targets: tuple[float, ...] = ()  # further levels to measure steps at (besides the target's grid)
    loss: str = "mse"
    target_accuracy: float | None = None


def parse_model(m: dict, where: str) -> ModelSpec:
    """Validate ``[model]``."""
    hidden = m["hidden"]
    if isinstance(hidden, list) and len(hidden) > MAX_HIDDEN_LAYERS:
        raise _bad(where, "model.hidden", f"at most {MAX_HIDDEN_LAYERS} hidden layers (the limit)",
                   f"{len(hidden)} layers", f"use at most {MAX_HIDDEN_LAYERS} widths")
    if not isinstance(hidden, list) or not hidden or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise _bad(where, "model.hidden", "a non-empty list of positive integers (widths >= 1)",
                   _short_repr(hidden), "write e.g. hidden = [64, 64]")
    dropout = m.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise _bad(where, "model.dropout", "a probability in [0, 1)", _short_repr(dropout),
                   "write e.g. dropout = 0.1 (0: no dropout)")
    return ModelSpec(tuple(hidden), _check_choice("model.init", m["init"], where, sorted(INITS)),
                     _check_choice("model.norm", m.get("norm", "none"), where, list(NORM_KINDS)), float(dropout))


def parse_train(t: dict, where: str, task: str) -> TrainSpec:
    """Validate ``[train]`` for a ``regression`` or ``classification`` task."""
    default = "cross_entropy" if task == "classification" else "mse"
    loss = _check_choice("train.loss", t.get("loss", default), where, list(TRAIN_LOSSES))
    if loss == "cross_entropy" and task != "classification":
        raise _bad(where, "train.loss", "mse for a regression task (cross_entropy needs class labels)", loss,
                   'remove loss, or declare the labels with task = "classification" under [data]')
    has_loss, has_acc = "target_loss" in t, "target_accuracy" in t
    if has_loss == has_acc:
        raise ScenarioError(f"Scenario {where} needs exactly one convergence target",
                            expected="train.target_loss, or train.target_accuracy under cross_entropy",
                            found="both" if has_loss else "neither", fix="keep one of them under [train]")
    accuracy = None
    if has_acc:
        if loss != "cross_entropy":
            raise _bad(where, "train.target_accuracy", "a classification task trained with cross_entropy",
                       t["target_accuracy"], "use target_loss for a regression task")
        accuracy = _check_float("train.target_accuracy", t["target_accuracy"], where, maximum=1.0)
    return TrainSpec(_check_choice("train.optimizer", t["optimizer"], where, list(OPTIMIZERS)),
                     _check_float("train.lr", t["lr"], where, maximum=MAX_LR),
                     _check_int("train.batch_size", t["batch_size"], where),
                     _check_int("train.epochs", t["epochs"], where, minimum=0),
                     _check_float("train.target_loss", t["target_loss"], where) if has_loss else None,
                     _check_int("train.seeds", t["seeds"], where, maximum=MAX_SEEDS),
                     momentum=_check_float("train.momentum", t.get("momentum", 0.0), where, positive=False),
                     targets=_check_targets(t.get("targets", []), where), loss=loss, target_accuracy=accuracy)
