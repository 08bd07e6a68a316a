"""Attribute one output of an MLP to its inputs and every hidden layer's units (captum).

Attribution of output ``K`` to the units ``a[l]`` of layer ``l`` (``l = 0`` the
input features, ``l >= 1`` the hidden activations) against a baseline input
``b``:

* ``ig`` (default): captum's ``LayerIntegratedGradients`` on the output of
  layer ``l``'s activation module (``IntegratedGradients`` on the inputs):
  ``A[i, j] = (a[i, j] - a_b[j]) * mean over the path of df_K/da_j`` along the
  straight line from ``a_b`` (layer ``l`` at the baseline) to ``a[i]``,
  Gauss-Legendre quadrature with ``n_steps`` points. Exact up to the kinks
  where a later unit changes side along the path: the completeness error falls
  like ``1/n_steps`` on networks with many kinks and is zero without them.
* ``deeplift``: DeepLift's rescale rule against the same baseline:
  completeness holds exactly by construction. For plain Linear ->
  ReLU/LeakyReLU chains it is computed in closed form
  (:mod:`probe.circuit.deeplift`, the same numbers as captum's in one pass for
  all layers); for other chains captum's ``DeepLift``/``LayerDeepLift`` run.

Completeness: for every layer, ``sum_j A[i, j] = f_K(x_i) - f_K(b)``; the
difference (captum's convergence delta, computed here from the forward pass
already made) is reported per layer.

Speed: captum splits the model output into one scalar per row before calling
autograd, which costs more than the network itself for ``batch * n_steps``
rows. Rows of an MLP are independent, so the ``ig`` explainers see the *sum*
of ``f_K`` over the batch instead: its gradient with respect to each row is
that row's own gradient, and the attributions are unchanged (``deeplift``
runs one row per sample and needs no such trick).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from probe.circuit.deeplift import ClosedFormDeepLift, negative_slopes
from probe.circuit.target import TargetOutput
from probe.models.mlp import MLP


class SummedOutput(nn.Module):
    """The traced quantity summed over the batch, shape ``[1]`` (see the module docstring: same gradients)."""

    def __init__(self, traced: TargetOutput) -> None:
        super().__init__()
        self.traced = traced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.traced(x).sum().reshape(1)


class Attributor:
    """Attributions of output ``output`` for one batch, for the inputs and each hidden layer.

    Args:
        mlp: A private eval-mode MLP (see :func:`probe.circuit.validate.private_mlp`).
        baseline: The baseline input, ``[1, features]``.
        output: The output index ``K``.
        method: ``ig`` or ``deeplift``.
        n_steps: Integration points for ``ig`` (ignored by ``deeplift``).
        target: ``logit`` or ``margin`` (see :mod:`probe.circuit.target`).
    """

    def __init__(self, mlp: MLP, baseline: torch.Tensor, output: int, method: str, n_steps: int,
                 target: str = "logit") -> None:
        self.mlp = mlp
        self.traced = TargetOutput(mlp, output, target)
        self.summed = SummedOutput(self.traced)
        self.baseline = baseline
        self.output = output
        self.method = method
        self.n_steps = n_steps
        slopes = negative_slopes(mlp) if method == "deeplift" else None
        self.closed_form = None if slopes is None else ClosedFormDeepLift(mlp, baseline, output, target)
        self.explainers = [] if self.closed_form else self._explainers()  # built once, reused for every batch

    def _explainers(self) -> list:
        """One captum explainer per attributed layer, the inputs first.

        captum (and the matplotlib it imports) is loaded here, only when the
        closed form does not apply: a plain ReLU/leaky chain never pays its import.
        """
        from captum.attr import DeepLift, IntegratedGradients, LayerDeepLift, LayerIntegratedGradients

        if self.method == "ig":
            return [IntegratedGradients(self.summed)] + [
                LayerIntegratedGradients(self.summed, act) for act in self.mlp.activations]
        # DeepLift pairs each row with its baseline row inside the output, so it needs the per-row model.
        return [DeepLift(self.traced)] + [LayerDeepLift(self.traced, act) for act in self.mlp.activations]

    def __call__(self, xb: torch.Tensor, change: torch.Tensor,
                 runner_up: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Attributions ``[batch, units]`` per layer and completeness errors ``[batch]`` per layer.

        Args:
            xb: The batch of inputs.
            change: The traced quantity at ``x`` minus at the baseline, per row, ``[batch]``
                (for the margin: against each row's runner-up class).
            runner_up: Each row's runner-up class (margin only).
        """
        if self.closed_form is not None:
            return self.closed_form(xb, change, runner_up)
        self.traced.runner_up = runner_up
        base = self.baseline.expand_as(xb)
        kwargs = {"baselines": base}
        if self.method == "ig":
            kwargs["n_steps"] = self.n_steps
        else:
            kwargs["target"] = 0
            # LayerDeepLift hooks the tensors entering the layer, which must be part of a graph.
            xb = xb.detach().clone().requires_grad_(True)
        attrs, deltas = [], []
        with warnings.catch_warnings():
            # DeepLift warns that it sets requires_grad on the input; that is expected here.
            warnings.simplefilter("ignore", UserWarning)
            for explainer in self.explainers:
                attr = explainer.attribute(xb, **kwargs).detach()
                attrs.append(attr)
                deltas.append(attr.double().sum(1) - change.double())
        return attrs, deltas
