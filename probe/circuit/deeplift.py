"""DeepLift (rescale rule) in closed form for Linear -> ReLU/LeakyReLU chains.

For a chain ``h_0 = x``, ``z_l = W_l h_{l-1} + b_l``, ``h_l = act(z_l)``
(``l = 1..L``), output ``y = W_{L+1} h_L + b_{L+1}``, and a baseline input
``x_b`` (its values ``z_l^b``, ``h_l^b``), DeepLift's rescale rule gives every
activation the multiplier ``r_l = (h_l - h_l^b) / (z_l - z_l^b)`` (the
activation's derivative at ``z_l`` where ``|z_l - z_l^b| < 1e-10``, as captum
does), and the multipliers of the traced quantity with respect to each layer
follow backward through the chain:

* ``D_L = w`` (the traced row: ``W_{L+1}[K]``, or for the margin the sample's
  effective row ``W_{L+1}[K] - W_{L+1}[j*(x)]``),
* ``D_{l-1} = (D_l * r_l) @ W_l``,

and the attributions are ``A_l = (h_l - h_l^b) * D_l`` for the inputs
(``l = 0``) and every hidden layer: exactly what captum's ``DeepLift`` and
``LayerDeepLift`` (attributing the activation modules' outputs) return, in one
forward pass and ``L`` small matrix products per batch instead of one captum
pass per layer (about 10x less work; ``tests/test_circuit_deeplift.py`` checks
the agreement with captum to 1e-6). Completeness holds by telescoping:
``sum_j A_l[i, j] = D_L . (h_L - h_L^b)`` for every ``l``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from probe.models.mlp import MLP

EPS = 1e-10  # captum's threshold below which the rescale multiplier falls back to the gradient


def negative_slopes(mlp: MLP) -> list[float] | None:
    """Each hidden layer's negative slope if ``mlp`` is a plain Linear -> ReLU/LeakyReLU chain, else None."""
    modules = list(mlp)
    if len(modules) % 2 == 0 or not all(isinstance(m, nn.Linear) for m in modules[::2]):
        return None
    slopes = []
    for act in modules[1::2]:
        if type(act) is nn.ReLU:
            slopes.append(0.0)
        elif type(act) is nn.LeakyReLU:
            slopes.append(float(act.negative_slope))
        else:
            return None
    return slopes


def backward_attributions(zs: list[torch.Tensor], hs: list[torch.Tensor], base_z: list[torch.Tensor],
                          base_h: list[torch.Tensor], slopes: list, weights: list[torch.Tensor],
                          d: torch.Tensor) -> list[torch.Tensor]:
    """``A_l = (h_l - h_l^b) * D_l`` for layers ``L..0``, from ``D_L = d`` back through the chain.

    Shared by one model (``[rows, units]``, float slopes, weights ``[out, in]``)
    and a stack of models (``[M, rows, units]``, slopes ``[M, 1, 1]``, weights
    ``[M, out, in]``). The multiplier ``r = dh / dz`` where ``|dz| >= EPS``, else
    the derivative (1 where ``z > 0``, else the slope), is written with 0/1 float
    masks: ``torch.where`` and bool tensors cost 5-15x an arithmetic pass on the
    CPU. Exact: a masked-out term is a finite number times 0.
    """
    attrs = [None] * len(hs)
    for layer in range(len(hs) - 1, -1, -1):
        attrs[layer] = (hs[layer] - base_h[layer]) * d
        if layer == 0:
            break
        z = zs[layer - 1]
        dz = z - base_z[layer - 1]
        dh = hs[layer] - base_h[layer]
        positive = torch.gt(z, 0, out=torch.empty_like(z))
        grad = positive + (1.0 - positive) * slopes[layer - 1]
        safe = torch.ge(dz.abs(), EPS, out=torch.empty_like(dz))
        unsafe = 1.0 - safe
        d = torch.matmul(d * (dh / (dz + unsafe) * safe + grad * unsafe), weights[layer - 1])
    return attrs


class ClosedFormDeepLift:
    """DeepLift attributions of the traced quantity for one batch, for the inputs and each hidden layer.

    Args:
        mlp: A private eval-mode Linear -> ReLU/LeakyReLU chain (see :func:`negative_slopes`).
        baseline: The baseline input, ``[1, features]``.
        output: The output (class) index K.
        target: ``logit`` or ``margin`` (:mod:`probe.circuit.target`).
    """

    def __init__(self, mlp: MLP, baseline: torch.Tensor, output: int, target: str = "logit") -> None:
        slopes = negative_slopes(mlp)
        if slopes is None:
            raise ValueError("ClosedFormDeepLift needs a Linear -> ReLU/LeakyReLU chain")
        self.slopes = slopes
        self.linears = mlp.linears
        self.output = output
        self.target = target
        with torch.no_grad():
            self.base_z, self.base_h = self._forward(baseline)

    def _forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Pre-activations ``z_1..z_L`` and values ``h_0..h_L``."""
        zs, hs = [], [x]
        for lin, slope in zip(self.linears[:-1], self.slopes):
            z = lin(hs[-1])
            zs.append(z)
            hs.append(F.leaky_relu(z, slope))  # z where z > 0, else slope * z (the module's own kernel)
        return zs, hs

    def __call__(self, xb: torch.Tensor, change: torch.Tensor,
                 runner_up: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Attributions ``[batch, units]`` per layer ``0..L`` and completeness errors ``[batch]`` per layer.

        Args:
            xb: The batch of inputs.
            change: The traced quantity at ``x`` minus at the baseline, per row (see
                :class:`probe.circuit.attribution.Attributor`).
            runner_up: Each row's runner-up class (margin only).
        """
        with torch.no_grad():
            zs, hs = self._forward(xb)
            w_out = self.linears[-1].weight
            row = w_out[self.output]
            d = row.expand(xb.shape[0], -1) if runner_up is None else row - w_out[runner_up]
            attrs = backward_attributions(zs, hs, self.base_z, self.base_h, self.slopes,
                                          [lin.weight for lin in self.linears[:-1]], d)
        deltas = [a.double().sum(-1) - change.double() for a in attrs]
        return attrs, deltas
