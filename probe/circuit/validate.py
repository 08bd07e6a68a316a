"""Input checks for :func:`probe.circuit.circuit`: each returns the converted value or raises."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from probe.core.checks import as_dataset
from probe.core.data import Dataset, check_data
from probe.core.errors import ProbeError
from probe.models.coerce import as_model
from probe.models.loading import LoadedModel
from probe.models.convert import module_to_mlp
from probe.models.mlp import MLP, linear_from

GROUPS = ("negative", "positive")
METHODS = ("ig", "deeplift")
BASELINES = ("mean", "zeros")


class CircuitError(ProbeError):
    """A sign-circuit request that cannot be answered (bad output index, group, method...)."""


def _copy_layer(module: nn.Module) -> nn.Module:
    """A fresh copy of one layer: built directly for the common types (deepcopy costs ~0.1 ms each)."""
    if isinstance(module, nn.RReLU):
        return nn.LeakyReLU((module.lower + module.upper) / 2)
    if type(module) is nn.Linear:
        return linear_from(module.weight, module.bias)
    if type(module) is nn.ReLU:
        return nn.ReLU()
    if type(module) is nn.LeakyReLU:
        return nn.LeakyReLU(module.negative_slope)
    return copy.deepcopy(module)


def private_mlp(model: object) -> MLP:
    """An independent eval-mode copy of ``model`` that attribution may hook freely.

    Every layer is copied on its own, so an activation module shared between
    positions in the user's model becomes one module per position (captum
    hooks a module, and a shared one would be replaced at every position).
    In-place activations are switched off so that pre-activations survive.

    Raises:
        CircuitError: ``model`` is not a model, or has no hidden layer.
        ModelLoadError: ``model`` is a module that is not a chain-shaped MLP.
    """
    if isinstance(model, (str, Path)):
        model = as_model(model)
    if isinstance(model, LoadedModel):
        model = model.mlp
    if not isinstance(model, nn.Module):
        raise CircuitError("The circuit analysis needs a PyTorch MLP",
                           expected="a probe MLP, a LoadedModel or a chain-shaped nn.Module",
                           found=type(model).__name__,
                           fix="load the model with probe.load_mlp(path) first")
    mlp = model if isinstance(model, MLP) else module_to_mlp(model)
    if len(mlp.linears) < 2:
        raise CircuitError("The model has no hidden layer, so there is no circuit to trace",
                           expected="at least Linear -> activation -> Linear",
                           found=mlp.describe(), fix="analyse a model with one or more hidden layers")
    # an RReLU in eval mode is a leaky ReLU of slope (lower + upper) / 2: the same function, and a
    # module both captum's DeepLift and the closed form know
    copied = MLP(*[_copy_layer(m) for m in mlp])
    for module in copied.activations:
        if hasattr(module, "inplace"):
            module.inplace = False
    for p in copied.parameters():
        p.requires_grad_(False)
    return copied.float().eval()


def check_output(output: object, out_features: int) -> int:
    """The output index as an int in ``[0, out_features)``."""
    if isinstance(output, bool) or not isinstance(output, int) or not 0 <= output < out_features:
        raise CircuitError(f"Output index {output!r} does not exist in this model",
                           expected=f"an integer from 0 to {out_features - 1} "
                           f"(the model has {out_features} output{'s' if out_features != 1 else ''})",
                           found=repr(output),
                           fix="leave --output out (output=0): the model has a single output" if out_features == 1
                           else f"pass --output (output= in Python) between 0 and {out_features - 1}")
    return output


def check_group(group: str) -> str:
    """``negative`` or ``positive``."""
    if group not in GROUPS:
        raise CircuitError(f"Unknown sample group {group!r}", expected=" or ".join(GROUPS),
                           found=repr(group), fix="pass --group negative or --group positive")
    return group


#: Activations whose DeepLift rescale rule captum implements (its SUPPORTED_NON_LINEAR).
DEEPLIFT_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.Softplus)


def check_method(method: str, mlp: MLP) -> str:
    """``ig``, ``deeplift`` or ``auto``, resolved to the method that will run.

    ``auto`` is DeepLift (exact completeness, one backward pass) when every
    activation is one whose rescale rule captum implements (ReLU, LeakyReLU,
    ELU, Tanh, Softplus) and no norm sits in the chain; otherwise integrated
    gradients (PReLU, GELU, SiLU, Mish, SELU, CELU, LayerNorm/RMSNorm), whose
    completeness holds up to the integration error reported with it.
    """
    unsupported = sorted({type(a).__name__ for a in mlp.activations if type(a) not in DEEPLIFT_ACTIVATIONS}
                         | {type(n).__name__ for n in mlp.norms if n is not None})
    if method == "auto":
        return "ig" if unsupported else "deeplift"
    if method not in METHODS:
        raise CircuitError(f"Unknown attribution method {method!r}", expected=" or ".join(("auto", *METHODS)),
                           found=repr(method), fix="use --method auto (method='auto' in Python): DeepLift where "
                                                   "it is exact, else integrated gradients")
    if method == "deeplift" and unsupported:
        raise CircuitError(f"DeepLift cannot attribute exactly through {', '.join(unsupported)}",
                           expected="ReLU, LeakyReLU, ELU, Tanh or Softplus activations and no norm layer "
                                    "for method='deeplift'",
                           found=mlp.describe(), fix="use --method ig or auto (method='ig' in Python)")
    return method


def check_positive_int(name: str, value: object) -> int:
    """A strictly positive int (batch size, steps, path count...)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CircuitError(f"{name} must be a positive integer", expected="an integer >= 1",
                           found=repr(value), fix=f"pass a positive {name}")
    return value


def resolve_baseline(baseline: str | torch.Tensor, data: Dataset) -> tuple[str, torch.Tensor]:
    """The attribution baseline as ``(description, row [1, features])``.

    ``mean``: the mean evaluation input; ``zeros``: the all-zero input; or a
    tensor with one value per feature.
    """
    features = data.X.shape[1]
    if isinstance(baseline, torch.Tensor):
        row = baseline.detach().float().reshape(1, -1)
        if row.shape[1] != features or not torch.isfinite(row).all():
            raise CircuitError("The attribution baseline does not fit the data",
                               expected=f"{features} finite values", found=f"shape {tuple(baseline.shape)}",
                               fix="pass one finite value per input feature, 'mean' or 'zeros'")
        return "custom", row
    if baseline == "mean":
        return "mean", data.X.double().mean(0, keepdim=True).float()
    if baseline == "zeros":
        return "zeros", torch.zeros(1, features)
    raise CircuitError(f"Unknown attribution baseline {baseline!r}", expected=" or ".join(BASELINES),
                       found=repr(baseline), fix="use --baseline mean or zeros (in Python, also a tensor with one value per feature)")


def check_circuit_data(data: object, mlp: MLP) -> Dataset:
    """The data as a :class:`Dataset` (:func:`probe.core.checks.as_dataset`), after the width/NaN checks."""
    data = as_dataset(data)
    check_data(data, mlp.widths[0], mlp.widths[-1])
    return data
