"""The canonical MLP every model format is loaded into, and probe's checkpoint format.

A canonical MLP is an ``nn.Sequential`` of hidden blocks ``Linear, [norm],
act`` followed by an output ``Linear``. The activation is any kind of the
grammar (:mod:`probe.core.variants`); the optional norm is a ``LayerNorm`` or
an ``RMSNorm`` (a BatchNorm is folded into a Linear when the model is
converted, so it never appears here). Without norms the ``state_dict`` keys
are ``0.weight``, ``0.bias``, ``2.weight``, ... (and ``1.weight``, ... for
PReLU slopes).

``notes`` lists what the conversion changed without changing the function
(a folded BatchNorm, a dropped output squeeze); the JSON reports it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probe.core.variants import Variant, parse_variant, slope_tensor, variant_of_module

CHECKPOINT_FORMAT = "probe-mlp/1"
#: Normalisation layers that stay in the chain, between a hidden Linear and its activation.
NORMS: tuple[type[nn.Module], ...] = tuple(
    cls for cls in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) if cls is not None)


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, NORMS)


def norm_spec(module: nn.Module | None) -> dict | None:
    """``{"kind": "layer" | "rms", "eps": ..., "affine": ...}`` of a norm module (None for none)."""
    if module is None:
        return None
    kind = "layer" if isinstance(module, nn.LayerNorm) else "rms"
    eps = module.eps
    return {"kind": kind, "eps": None if eps is None else float(eps),
            "affine": bool(module.elementwise_affine)}


def make_norm(spec: dict, width: int) -> nn.Module:
    """A fresh norm module from :func:`norm_spec`'s description."""
    if spec["kind"] == "layer":
        return nn.LayerNorm(width, eps=spec["eps"], elementwise_affine=spec["affine"])
    return nn.RMSNorm(width, eps=spec["eps"], elementwise_affine=spec["affine"])


def linear_from(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding copies of ``weight`` ``[out, in]`` and ``bias``, built without the random
    initialisation that ``nn.Linear()`` runs (about 0.1 ms a layer, for values about to be replaced)."""
    if weight.dim() != 2 or (bias is not None and tuple(bias.shape) != (weight.shape[0],)):
        raise ValueError(f"linear_from: weight {tuple(weight.shape)} and bias "
                         f"{None if bias is None else tuple(bias.shape)} do not make a Linear layer")
    new = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(new)
    new.out_features, new.in_features = weight.shape
    new.weight = nn.Parameter(weight.detach().clone(memory_format=torch.contiguous_format))
    new.bias = None if bias is None else nn.Parameter(bias.detach().clone(memory_format=torch.contiguous_format))
    return new


class MLP(nn.Sequential):
    """A chain of Linear layers with a ReLU-family activation between them.

    Args:
        layers: Alternating ``nn.Linear`` and activation modules, starting and
            ending with a Linear.
    """

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__(*layers)
        self.notes: list[str] = []

    @classmethod
    def build(cls, widths: Sequence[int], variant: Variant | str, *, bias: bool = True,
              norms: Sequence[dict | None] | None = None, linears: Sequence[nn.Linear] | None = None) -> MLP:
        """A fresh MLP with PyTorch's default initialisation.

        Args:
            widths: ``[in_features, hidden..., out_features]``.
            variant: Activation after every hidden layer.
            bias: Whether the Linear layers have biases.
            norms: Per hidden layer, None or a :func:`norm_spec` description.
            linears: The Linear layers to use instead of freshly initialised ones
                (e.g. :func:`linear_from`), one per pair of consecutive widths.
        """
        variant = parse_variant(variant) if isinstance(variant, str) else variant
        if linears is not None:
            given = [(lin.in_features, lin.out_features, lin.bias is not None) for lin in linears]
            wanted = [(a, b, bias) for a, b in zip(widths[:-1], widths[1:])]
            if given != wanted:
                raise ValueError(f"MLP.build: linears (in, out, bias) {given} do not fit widths {list(widths)}"
                                 f" with bias={bias}")
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias) if linears is None else linears[i])
            if i < len(widths) - 2:
                if norms is not None and norms[i] is not None:
                    layers.append(make_norm(norms[i], widths[i + 1]))
                layers.append(variant.make_module())
        return cls(*layers)

    @classmethod
    def from_state(cls, state: dict, widths: Sequence[int], variant: Variant | str,
                   norms: Sequence[dict | None]) -> MLP:
        """Rebuild a probe checkpoint that records its norms, then load its weights strictly.

        Raises:
            ValueError, RuntimeError, KeyError: The state does not fit the recorded layout
                (the caller turns these into a clear error).
        """
        if len(norms) != len(widths) - 2:
            raise ValueError(f"{len(norms)} norm entries for {len(widths) - 2} hidden layers")
        mlp = cls.build(widths, variant, norms=norms)
        for i, module in enumerate(mlp):
            weight = state.get(f"{i}.weight")
            if isinstance(module, nn.PReLU) and isinstance(weight, torch.Tensor):
                mlp[i] = nn.PReLU(num_parameters=weight.numel())  # per-channel slopes
        mlp.load_state_dict(state, strict=True)
        return mlp

    @property
    def linears(self) -> list[nn.Linear]:
        """Every Linear layer in forward order (the last one is the output layer)."""
        return [m for m in self if isinstance(m, nn.Linear)]

    @property
    def hidden_linears(self) -> list[nn.Linear]:
        return self.linears[:-1]

    @property
    def activations(self) -> list[nn.Module]:
        return [m for m in self if not isinstance(m, nn.Linear) and not is_norm(m)]

    @property
    def norms(self) -> list[nn.Module | None]:
        """Per hidden layer, its norm module (between the Linear and the activation) or None."""
        out: list[nn.Module | None] = []
        for m in self:
            if isinstance(m, nn.Linear):
                out.append(None)
            elif is_norm(m):
                out[-1] = m
        return out[:-1]

    @property
    def blocks(self) -> list[tuple[nn.Linear, nn.Module | None, nn.Module]]:
        """``(linear, norm or None, activation)`` per hidden layer, in forward order."""
        return list(zip(self.hidden_linears, self.norms, self.activations))

    @property
    def widths(self) -> list[int]:
        lin = self.linears
        return [lin[0].in_features] + [layer.out_features for layer in lin]

    def slopes(self) -> list[torch.Tensor | None]:
        """Negative slope after each hidden layer: a scalar, one per unit (PReLU), None (smooth kinds)."""
        return [slope_tensor(a) for a in self.activations]

    @property
    def activation_spec(self) -> str:
        """The variant spec when every activation is the same kind, else a comma list."""
        specs = [variant_of_module(a).spec for a in self.activations]
        if all(isinstance(a, nn.PReLU) for a in self.activations) and specs:
            return "prelu"
        return specs[0] if len(set(specs)) == 1 else ",".join(specs)

    def describe(self) -> str:
        """``8-64-64-1 relu``, with ``+ layernorm`` / ``+ rmsnorm`` when hidden layers are normalised."""
        kinds = sorted({norm_spec(n)["kind"] for n in self.norms if n is not None})
        extra = "".join(f" + {k}norm" for k in kinds)
        return "-".join(map(str, self.widths)) + " " + self.activation_spec + extra


def to_checkpoint(mlp: MLP, **meta: object) -> dict:
    """probe's checkpoint: a plain dict loadable with ``torch.load(weights_only=True)``.

    Keys: ``format`` ("probe-mlp/1"), ``state_dict`` (Sequential numbering),
    ``widths``, ``activation`` (variant spec), ``norms`` (only when some hidden
    layer has a norm: one :func:`norm_spec` or None per hidden layer) and any metadata passed in
    (``scenario``, ``seed``, ...): plain str/int/float/list/dict values only.
    """
    state = {k: v.detach().cpu().clone() for k, v in mlp.state_dict().items()}
    doc = {"format": CHECKPOINT_FORMAT, "state_dict": state, "widths": mlp.widths,
           "activation": mlp.activation_spec, **meta}
    if any(n is not None for n in mlp.norms):
        doc["norms"] = [norm_spec(n) for n in mlp.norms]
    return doc

