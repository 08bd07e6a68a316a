"""Which of the user's modules ``probe.track`` hooks, found with the conversion ``probe analyze`` uses."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from probe.core.errors import ModelLoadError
from probe.core.variants import slope_tensor
from probe.models.convert import module_to_mlp
from probe.models.loading import LoadedModel
from probe.models.mlp import MLP
from probe.models.trace import module_sequence


def user_layers(model: object) -> tuple[nn.Module, list[nn.Linear], list[nn.Module], str]:
    """The user's own module, its Linear layers in forward order, the activation after each hidden one.

    The model goes through the conversion ``probe analyze`` uses, so what analyze
    refuses is refused here, with the same message; the layers returned are the
    user's own modules (functional activations become equivalent modules, to
    read their slope from). Also returns the ``8-32-32-1 relu`` description.

    Raises:
        ModelLoadError: Not an ``nn.Module``, not an MLP, or a Linear layer applied twice.
    """
    if isinstance(model, LoadedModel):
        model = model.mlp
    if not isinstance(model, nn.Module):
        raise ModelLoadError("probe.track hooks the model you train, so it needs the module itself",
                             expected="the torch.nn.Module your loop trains", found=type(model).__name__,
                             fix="pass the model object (to analyze a saved file, use probe.analyze)")
    if isinstance(model, MLP):
        canonical, linears, acts = model, model.linears, model.activations
    else:
        canonical = module_to_mlp(_on_cpu(model))  # refuses what analyze refuses, and checks the function
        seq = module_sequence(model)
        linears = [m for m in seq if isinstance(m, nn.Linear)]
        acts = [m for m in seq if not isinstance(m, nn.Linear)]
    _check_trackable(canonical, acts)
    if len({id(lin) for lin in linears}) != len(linears):
        raise ModelLoadError("This model applies one Linear layer more than once",
                             expected="a chain in which each Linear layer is used once",
                             found="the same nn.Linear at two places in the forward pass",
                             fix="use a separate nn.Linear at each place")
    return model, linears, acts, canonical.describe()


def _check_trackable(canonical: MLP, acts: list[nn.Module]) -> None:
    """probe.track hooks Linear outputs as the activations' inputs: only plain ReLU-family chains."""
    # RReLU draws a random slope per entry in training mode: no one slope to record
    smooth = [v for v in canonical.slopes() if v is None] + [a for a in acts if isinstance(a, nn.RReLU)]
    if canonical.notes or any(n is not None for n in canonical.norms) or smooth or \
            len(acts) != len(canonical.activations):
        raise ModelLoadError(
            "probe.track follows plain Linear -> ReLU-family chains only, for now",
            expected="Linear layers with ReLU, LeakyReLU or PReLU between them",
            found=canonical.describe() + (" with " + "; ".join(canonical.notes) if canonical.notes else ""),
            fix="analyse checkpoints of this model with probe.analyze, which reads norms and other "
                "activations")


def _on_cpu(model: nn.Module) -> nn.Module:
    """The model itself when it lives on the CPU, else a CPU copy: analyze's check runs it on CPU inputs."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return model
    return copy.deepcopy(model).cpu()


def slope_reader(act: nn.Module) -> Callable[[], float | torch.Tensor | None]:
    """A function giving the activation's negative slope at the moment of a recorded forward pass.

    A PReLU's learned slopes are read each time (the optimizer moves them); a
    fixed slope is a number; a ReLU gives None (no negative side to measure).
    """
    if isinstance(act, nn.PReLU):
        return lambda: slope_tensor(act)
    fixed = float(slope_tensor(act))
    return (lambda: None) if fixed == 0.0 else (lambda: fixed)
