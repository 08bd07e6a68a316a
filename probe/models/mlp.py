"""The canonical MLP every model format is loaded into, and probe's checkpoint format.

A canonical MLP is an ``nn.Sequential`` of ``Linear, act, Linear, act, ...,
Linear`` with one ReLU-family activation module after every hidden Linear, so
its ``state_dict`` keys are ``0.weight``, ``0.bias``, ``2.weight``, ... (and
``1.weight``, ``3.weight``, ... for PReLU slopes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probe.core.variants import Variant, parse_variant, slope_tensor, variant_of_module

CHECKPOINT_FORMAT = "probe-mlp/1"


class MLP(nn.Sequential):
    """A chain of Linear layers with a ReLU-family activation between them.

    Args:
        layers: Alternating ``nn.Linear`` and activation modules, starting and
            ending with a Linear.
    """

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__(*layers)

    @classmethod
    def build(cls, widths: Sequence[int], variant: Variant | str, *, bias: bool = True) -> MLP:
        """A fresh MLP with PyTorch's default initialisation.

        Args:
            widths: ``[in_features, hidden..., out_features]``.
            variant: Activation after every hidden layer.
            bias: Whether the Linear layers have biases.
        """
        variant = parse_variant(variant) if isinstance(variant, str) else variant
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias))
            if i < len(widths) - 2:
                layers.append(variant.make_module())
        return cls(*layers)

    @property
    def linears(self) -> list[nn.Linear]:
        """Every Linear layer in forward order (the last one is the output layer)."""
        return [m for m in self if isinstance(m, nn.Linear)]

    @property
    def hidden_linears(self) -> list[nn.Linear]:
        return self.linears[:-1]

    @property
    def activations(self) -> list[nn.Module]:
        return [m for m in self if not isinstance(m, nn.Linear)]

    @property
    def widths(self) -> list[int]:
        lin = self.linears
        return [lin[0].in_features] + [layer.out_features for layer in lin]

    def slopes(self) -> list[torch.Tensor]:
        """Negative slope after each hidden layer: a scalar, or one per unit (PReLU)."""
        return [slope_tensor(a) for a in self.activations]

    @property
    def activation_spec(self) -> str:
        """The variant spec when every activation is the same kind, else a comma list."""
        specs = [variant_of_module(a).spec for a in self.activations]
        if all(isinstance(a, nn.PReLU) for a in self.activations) and specs:
            return "prelu"
        return specs[0] if len(set(specs)) == 1 else ",".join(specs)

    def describe(self) -> str:
        """``8-64-64-1 relu``."""
        return "-".join(map(str, self.widths)) + " " + self.activation_spec


def to_checkpoint(mlp: MLP, **meta: object) -> dict:
    """probe's checkpoint: a plain dict loadable with ``torch.load(weights_only=True)``.

    Keys: ``format`` ("probe-mlp/1"), ``state_dict`` (Sequential numbering),
    ``widths``, ``activation`` (variant spec) and any metadata passed in
    (``scenario``, ``seed``, ...): plain str/int/float/list/dict values only.
    """
    state = {k: v.detach().cpu().clone() for k, v in mlp.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "state_dict": state, "widths": mlp.widths,
            "activation": mlp.activation_spec, **meta}

