"""The losses probe differentiates, under the names its JSON uses (``loss.name``).

* ``mse``: mean squared error against the targets. Per sample it is the mean over
  outputs of ``(f(x) - y)^2``; over a set, the mean over samples of that.
* ``cross_entropy``: integer class labels ``0..K-1`` against ``K > 1`` logits
  (``torch.nn.functional.cross_entropy``), the mean over samples.
* ``bce``: 0/1 targets against one logit per output
  (``binary_cross_entropy_with_logits``); per sample the mean over outputs, over a
  set the mean over samples.
* ``sum``: the sum of the outputs, for data without targets.

When no loss is named, :func:`choose_loss` infers it from the targets: integer
labels in one column with ``K > 1`` outputs mean ``cross_entropy``; integer 0/1
labels with one output mean ``bce``; other targets mean ``mse``; no targets mean
``sum``. The choice is recorded as inferred, and shown.

Every place that computes a loss (analysis, training, the ensemble's
diagnostics) calls these functions, so the same name always means the same
arithmetic, to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from probe.core.errors import DataError

LOSSES = {
    "mse": "mean squared error against the targets, averaged over the whole evaluation set",
    "cross_entropy": "cross-entropy of the logits against integer class labels, averaged over the samples",
    "bce": "binary cross-entropy of the logits against 0/1 targets, averaged over outputs and samples",
    "sum": "sum of the outputs (no targets given)",
}
CLASSIFIERS = ("cross_entropy", "bce")


def resolve_loss(loss: str | None, has_targets: bool) -> str:
    """The loss to use: as given, else ``mse`` with targets and ``sum`` without.

    Raises:
        DataError: An unknown name, or a loss that needs targets without them.
    """
    name = loss or ("mse" if has_targets else "sum")
    if name not in LOSSES:
        raise DataError(f"Unknown loss '{name}'", expected=" or ".join(LOSSES), found=repr(name),
                        fix="pass --loss mse (float targets), cross_entropy (class labels), bce (0/1 "
                            "labels, one logit per output) or sum (no targets)")
    if name != "sum" and not has_targets:
        raise DataError(f"The {name} loss needs targets", expected="y", found="no targets",
                        fix="pass y, or loss='sum' to differentiate the sum of the outputs")
    return name


def _binary(y: torch.Tensor) -> bool:
    return bool(((y == 0) | (y == 1)).all())


def choose_loss(loss: str | None, y: torch.Tensor | None, labels: bool, outputs: int) -> tuple[str, bool]:
    """The loss name and whether it was inferred (see the module docstring for the rule).

    Args:
        loss: The name the user gave, or None to infer it.
        y: Targets ``[samples, columns]`` (float32), or None.
        labels: Whether the targets were integers in their source (``Dataset.labels``).
        outputs: The model's number of outputs.
    """
    if loss is not None:
        return resolve_loss(loss, y is not None), False
    if y is None:
        return "sum", True
    if labels and y.shape[1] == 1 and outputs > 1:
        return "cross_entropy", True
    if labels and outputs == 1 and y.shape[1] == 1 and _binary(y):
        return "bce", True
    return "mse", True


def check_targets(name: str, y: torch.Tensor | None, outputs: int, source: str) -> None:
    """Refuse targets that the loss ``name`` cannot take from a model with ``outputs`` outputs.

    Raises:
        DataError: Labels that are not integers in ``0..outputs-1``, bce targets
            outside [0, 1], or a target width that does not match the outputs.
    """
    if y is None or name == "sum":
        return
    if name == "cross_entropy":
        if outputs < 2:
            raise DataError("The cross_entropy loss needs a model with one logit per class",
                            expected="K > 1 outputs", found=f"{outputs} output",
                            fix="use --loss bce for a single-logit binary classifier")
        if y.shape[1] != 1:
            raise DataError(f"The class labels from {source} have the wrong shape",
                            expected="one column of integer labels", found=f"{y.shape[1]} target columns",
                            fix="pass the labels as one integer column (argmax of one-hot targets)")
        bad = (y != y.round()) | (y < 0) | (y > outputs - 1)
        if bool(bad.any()):
            found = y[bad]
            raise DataError(f"The class labels from {source} are out of range for this model",
                            expected=f"integers 0..{outputs - 1} (the model has {outputs} outputs)",
                            found=f"{int(bad.sum())} labels outside that, e.g. {float(found[0]):g} "
                                  f"(labels range {float(y.min()):g}..{float(y.max()):g})",
                            fix="encode the classes as 0..K-1 in the model's output order")
        return
    if y.shape[1] != outputs:
        raise DataError(f"The targets from {source} have the wrong width",
                        expected=f"{outputs} target columns (the model's outputs)",
                        found=f"{y.shape[1]}", fix="pass matching targets (class labels in one column: --loss cross_entropy), "
                            "or none to use the sum of outputs")
    if name == "bce" and bool(((y < 0) | (y > 1)).any()):
        raise DataError(f"The bce targets from {source} are not in [0, 1]", expected="0/1 labels (or probabilities)",
                        found=f"values from {float(y.min()):g} to {float(y.max()):g}",
                        fix="pass 0/1 targets, or --loss mse for regression targets")


def loss_warnings(name: str, inferred: bool, y: torch.Tensor | None, labels: bool, outputs: int) -> tuple[str, ...]:
    """Warnings on a loss choice the user may not have meant (inferred classifier, labels under mse)."""
    if inferred and name in CLASSIFIERS:
        what = "integer class labels with several outputs" if name == "cross_entropy" else \
            "integer 0/1 labels with one output (a logit)"
        return (f"The loss was inferred as {name} from {what}; pass --loss to choose another.",)
    if name == "mse" and y is not None and y.shape[1] == 1 and outputs == 1 and _binary(y):
        return ("The targets are all 0 or 1 but the loss is mse: if the model outputs a logit, "
                "pass --loss bce.",)
    if name == "mse" and labels:
        return ("The targets are integers but the loss is mse: if they are class labels, "
                "pass --loss cross_entropy (or bce).",)
    if name == "mse" and y is not None and y.shape[1] == outputs > 1 and _binary(y) and \
            bool((y.sum(dim=1) == 1).all()):
        return ("The targets are one-hot rows but the loss is mse: if the model outputs class logits, "
                "give the labels as integers (argmax of each row) or pass --loss cross_entropy with "
                "integer labels.",)
    if name == "sum" and y is not None:
        return ("--loss sum ignores the targets: the gradients are those of the sum of the outputs.",)
    return ()


def squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error, averaged over outputs: ``[..., B, K] -> [..., B]``."""
    return ((out - y) ** 2).mean(dim=-1)


def member_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch MSE of every ensemble member: ``[M, B, K] -> [M]``."""
    return ((out - y) ** 2).mean(dim=(1, 2))


def sample_losses(name: str, out: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor | None:
    """Per-sample losses ``[B]`` of outputs ``[B, K]`` (None for ``sum``, which has no targets).

    ``y`` is ``[B, K]`` floats, or for ``cross_entropy`` ``[B]`` int64 labels (or ``[B, 1]``).
    """
    if name == "mse":
        return squared_error(out, y)
    if name == "cross_entropy":
        return F.cross_entropy(out, y.reshape(-1).long(), reduction="none")
    if name == "bce":
        return F.binary_cross_entropy_with_logits(out, y.to(out.dtype), reduction="none").mean(dim=-1)
    return None


def batch_share(name: str, out: torch.Tensor, y: torch.Tensor | None, n_total: int) -> torch.Tensor:
    """A batch's share of the whole-set loss, so that summed batch gradients are full-set gradients.

    The batch's summed per-sample losses over ``n_total``; ``sum``: the sum of the outputs.
    """
    per = sample_losses(name, out, y)
    return out.sum() if per is None else per.sum() / n_total


def correct(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct predictions per sample ``[B]``: argmax == label (cross_entropy), share of logit>0 == label (bce)."""
    if name == "cross_entropy":
        return (out.argmax(dim=-1) == y.reshape(-1).long()).double()
    return ((out > 0) == (y > 0.5)).double().mean(dim=-1)


@dataclass(frozen=True)
class LossSummary:
    """The loss of the model exactly as analysed: the sanity line.

    Attributes:
        name: A key of :data:`LOSSES`.
        inferred: True when probe chose it (no loss was named).
        samples: Samples the mean covers.
        value: Mean loss over the samples (None for ``sum``: no targets).
        accuracy: Share of correct predictions, for classifiers (else None).
        warnings: Warnings on the choice (see :func:`loss_warnings`).
    """

    name: str
    inferred: bool
    samples: int
    value: float | None = None
    accuracy: float | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "description": LOSSES[self.name], "inferred": self.inferred,
                "value": self.value, "accuracy": self.accuracy, "samples": self.samples}


class LossMeter:
    """Streams the mean loss (and accuracy) over batches: float64 sums on the batch's device, no samples kept."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.total: torch.Tensor | float = 0.0
        self.hits: torch.Tensor | float = 0.0
        self.samples = 0

    def update(self, out: torch.Tensor, y: torch.Tensor | None, per_sample: torch.Tensor | None) -> None:
        """Feed one batch's outputs, targets and :func:`sample_losses` (no second evaluation, no sync)."""
        self.samples += out.shape[0]
        if per_sample is not None:
            self.total = self.total + per_sample.detach().double().sum()
        if self.name in CLASSIFIERS:
            self.hits = self.hits + correct(self.name, out.detach(), y).sum()

    def result(self, inferred: bool, warnings: tuple[str, ...] = ()) -> LossSummary:
        n = max(self.samples, 1)
        value = None if self.name == "sum" else float(self.total) / n
        accuracy = float(self.hits) / n if self.name in CLASSIFIERS else None
        return LossSummary(self.name, inferred, self.samples, value, accuracy, warnings)
