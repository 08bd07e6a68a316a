"""What the circuit attributes: the logit ``f_K(x)`` or the logit margin of class ``K``.

* ``logit`` (default): ``f_K(x)``, the raw output K; samples are grouped by its sign.
* ``margin`` (classifiers): ``m_K(x) = f_K(x) - max_{j != K} f_j(x)``, positive
  exactly when class K is predicted; samples are grouped by its sign
  (negative: class K is not predicted).

The margin is attributed through a wrapped forward (:class:`TargetOutput`)
that, for every sample ``x``, fixes its runner-up class ``j*(x) = argmax_{j !=
K} f_j(x)`` and returns ``f_K - f_{j*(x)}``. The attributed function of sample
``x`` is therefore the network with the per-sample effective final row
``W[K] - W[j*(x)]`` and bias ``b[K] - b[j*(x)]``; it equals ``m_K(x)`` at
``x``, and its attributions sum (DeepLift completeness) to ``m_K(x) -
(f_K(b) - f_{j*(x)}(b))``, which is ``m_K(x) - m_K(b)`` whenever the baseline
``b`` has the same runner-up as ``x`` (otherwise the baseline term is the
margin against ``x``'s runner-up, the only choice under which the final block
stays linear). The route rows of the final block use the same effective rows,
sample by sample (:mod:`probe.circuit.routes`).
"""

from __future__ import annotations

import torch
from torch import nn

from probe.circuit.validate import CircuitError

TARGETS = ("logit", "margin")


def check_target(target: object, out_features: int) -> str:
    """``logit`` or ``margin``; the margin needs at least two outputs (classes).

    Raises:
        CircuitError: An unknown target, or a margin on a single-output model.
    """
    if target not in TARGETS:
        raise CircuitError(f"Unknown circuit target {target!r}", expected=" or ".join(TARGETS),
                           found=repr(target), fix="pass target='logit' (regression) or 'margin' (classifier)")
    if target == "margin" and out_features < 2:
        raise CircuitError("The logit margin needs at least two classes", expected="a model with 2 or more outputs",
                           found=f"{out_features} output", fix="use target='logit' for a single-output model")
    return target


def target_scores(out: torch.Tensor, output: int, target: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The traced quantity per row and, for the margin, each row's runner-up class.

    Args:
        out: Model outputs ``[rows, outputs]``.
        output: The output (class) index K.
        target: ``logit`` or ``margin``.

    Returns:
        ``(score [rows], runner_up [rows] long or None)``.
    """
    if target == "logit":
        return out[:, output], None
    others = out.clone()
    others[:, output] = -torch.inf
    runner_up = others.argmax(dim=1)
    return out[:, output] - out.gather(1, runner_up[:, None])[:, 0], runner_up


class TargetOutput(nn.Module):
    """The traced quantity as a ``[rows, 1]`` output, for captum.

    For the margin, :attr:`runner_up` must hold the runner-up class of each
    sample of the batch being attributed. Captum runs the model on stacks of
    the batch (DeepLift: inputs then baselines; integrated gradients: one copy
    per integration step), so the runner-ups are tiled to the rows it sees.

    Args:
        mlp: The private MLP.
        output: The output (class) index K.
        target: ``logit`` or ``margin``.
    """

    def __init__(self, mlp: nn.Module, output: int, target: str) -> None:
        super().__init__()
        self.mlp = mlp
        self.output = output
        self.target = target
        self.runner_up: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mlp(x)
        score = out[:, self.output]
        if self.target == "margin":
            ru = self.runner_up
            if ru is None or out.shape[0] % ru.shape[0]:
                raise RuntimeError("TargetOutput: runner_up does not match the rows being attributed")
            score = score - out.gather(1, ru.repeat(out.shape[0] // ru.shape[0])[:, None])[:, 0]
        return score[:, None]
