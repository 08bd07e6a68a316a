"""The losses probe differentiates, under the names its JSON uses (``loss.name``).

* ``mse``: mean squared error against the targets. Per sample it is the mean over
  outputs of ``(f(x) - y)^2``; over a set, the mean over samples of that.
* ``sum``: the sum of the outputs, for data without targets.

Every place that computes a loss (analysis, training, the ensemble's
diagnostics) calls these functions, so the same name always means the same
arithmetic, to the last bit.
"""

from __future__ import annotations

import torch

from probe.core.errors import DataError

LOSSES = {
    "mse": "mean squared error against the targets, averaged over the whole evaluation set",
    "sum": "sum of the outputs (no targets given)",
}


def resolve_loss(loss: str | None, has_targets: bool) -> str:
    """The loss to use: as given, else ``mse`` with targets and ``sum`` without.

    Raises:
        DataError: An unknown name, or ``mse`` without targets.
    """
    name = loss or ("mse" if has_targets else "sum")
    if name not in LOSSES:
        raise DataError(f"Unknown loss '{name}'", expected=" or ".join(LOSSES), found=repr(name),
                        fix="pass loss='mse' (with targets) or loss='sum'")
    if name == "mse" and not has_targets:
        raise DataError("The mse loss needs targets", expected="y", found="no targets",
                        fix="pass y, or loss='sum' to differentiate the sum of the outputs")
    return name


def squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error, averaged over outputs: ``[..., B, K] -> [..., B]``."""
    return ((out - y) ** 2).mean(dim=-1)


def member_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch MSE of every ensemble member: ``[M, B, K] -> [M]``."""
    return ((out - y) ** 2).mean(dim=(1, 2))


def batch_share(name: str, out: torch.Tensor, y: torch.Tensor | None, n_total: int) -> torch.Tensor:
    """A batch's share of the whole-set loss, so that summed batch gradients are full-set gradients.

    ``mse``: the batch's summed per-sample errors over ``n_total``; ``sum``: the
    sum of the outputs.
    """
    if name == "mse":
        return squared_error(out, y).sum() / n_total
    return out.sum()
