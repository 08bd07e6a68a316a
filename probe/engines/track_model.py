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
from probe.models.trace import ACTIVATIONS, module_sequence


def user_layers(model: object) -> tuple[nn.Module, list[nn.Linear], list[nn.Module], str, bool]:
    """The user's own module, its Linear layers in forward order, the activation after each hidden one.

    The last element says whether the model needs the general path
    (:mod:`probe.engines.track_general`: norms, folded BatchNorms, smooth
    activations), whose activations are then the user's own modules.

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
    inner = _wrapped(model)
    if inner is not None:
        raise ModelLoadError(f"probe.track hooks the module that runs the layers, not its {type(model).__name__} "
                             "wrapper", expected="the nn.Module inside the wrapper", found=type(model).__name__,
                             fix=f"pass {inner} to probe.track, and keep training through the wrapper")
    dropout_first = False
    if isinstance(model, MLP):
        canonical, seq = model, list(model)
    else:
        canonical = module_to_mlp(_on_cpu(model))  # refuses what analyze refuses, and checks the function
        seq = module_sequence(model, keep=_DROPOUTS)
        dropout_first = _dropout_before_activation(seq)
        seq = [m for m in seq if not isinstance(m, _DROPOUTS)]
    linears = [m for m in seq if isinstance(m, nn.Linear)]
    if len({id(lin) for lin in linears}) != len(linears):
        raise ModelLoadError("This model applies one Linear layer more than once",
                             expected="a chain in which each Linear layer is used once",
                             found="the same nn.Linear at two places in the forward pass",
                             fix="use a separate nn.Linear at each place")
    general = dropout_first or _needs_general(canonical, seq)
    acts = [m for m in seq if isinstance(m, ACTIVATIONS)] if general else \
        [m for m in seq if not isinstance(m, nn.Linear)]
    if general:
        _check_own_modules(model, acts, canonical)
    return model, linears, acts, canonical.describe(), general


_DROPOUTS = (nn.Dropout, nn.AlphaDropout)


def _dropout_before_activation(seq: list[nn.Module]) -> bool:
    """Whether a dropout sits between a hidden Linear and its activation.

    In training it changes what the activation receives, which the fast path
    (it reads the Linear's output) would miss; the general path reads the
    activation's own input. A dropout after the activation changes nothing there.
    """
    return any(isinstance(m, nn.Linear) and isinstance(n, _DROPOUTS) and n.p > 0 and
               any(isinstance(a, ACTIVATIONS) for a in seq[i + 2:]) for i, (m, n) in enumerate(zip(seq, seq[1:])))


def _wrapped(model: nn.Module) -> str | None:
    """For a wrapper that runs another module (torch.compile, DataParallel, DDP), how to reach that module."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return "model.module"
    if type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module):
        return "model._orig_mod (the module you gave torch.compile)"
    return None


def _needs_general(canonical: MLP, seq: list[nn.Module]) -> bool:
    """True unless the model is a plain Linear -> ReLU/LeakyReLU/PReLU chain (the fast path's)."""
    return bool(canonical.notes) or any(n is not None for n in canonical.norms) or \
        any(s is None for s in canonical.slopes()) or \
        any(not isinstance(m, (nn.Linear, nn.ReLU, nn.LeakyReLU, nn.PReLU)) for m in seq)


def _check_own_modules(model: nn.Module, acts: list[nn.Module], canonical: MLP) -> None:
    """The general path hooks the activation modules themselves: they must be the model's own."""
    own = {id(m) for m in model.modules()}
    if any(isinstance(a, nn.RReLU) for a in acts):  # a random slope per entry in training mode
        raise ModelLoadError("probe.track cannot record an RReLU model", expected="an activation whose output "
                             "is a function of its input", found="RReLU (random slopes in training mode)",
                             fix="record a leaky ReLU of slope (lower + upper) / 2, or analyse checkpoints "
                                 "with probe analyze (which uses RReLU's eval-mode slope)")
    if len(acts) != len(canonical.activations) or any(id(a) not in own for a in acts):
        raise ModelLoadError(
            "probe.track needs activation modules to hook in a model with norms or smooth activations",
            expected="activations as modules (nn.GELU(), nn.ELU(), ...) in the model",
            found=canonical.describe() + ", with an activation applied as a function (F.gelu, torch.tanh, ...)",
            fix="use the activation's nn module in your model (the same function)")


def _on_cpu(model: nn.Module) -> nn.Module:
    """The model itself when it lives on the CPU, else a CPU copy: analyze's check runs it on CPU inputs."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return model
    return copy.deepcopy(model).cpu()


def slope_reader(act: nn.Module) -> Callable[[], float | torch.Tensor | None]:
    """A function giving the activation's negative slope at the moment of a recorded forward pass.

    A PReLU's learned slopes are read each time (the optimizer moves them), and
    so is a LeakyReLU's ``negative_slope`` (a schedule may change it; 0 then
    stays a number); a ReLU gives None (no negative side to measure). A slope
    given to a functional ``F.leaky_relu`` is read when the tracker is built.
    """
    if isinstance(act, nn.PReLU):
        return lambda: slope_tensor(act)
    if isinstance(act, nn.LeakyReLU):
        return lambda: float(act.negative_slope)
    fixed = float(slope_tensor(act))
    return (lambda: None) if fixed == 0.0 else (lambda: fixed)
