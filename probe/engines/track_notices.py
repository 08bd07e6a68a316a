"""What ``probe.track`` refuses, and what it tells the user when a loop is not what a record expects.

Options and losses that cannot be right are refused (:class:`ProbeError`). A
loop that merely departs from the usual shape cannot be stopped, as it is the
user's: the tracker logs once per run what it saw, what the record then holds,
and what to change.
"""

from __future__ import annotations

import torch

from probe.core.errors import ProbeError

NEVER_STEPPED = ("forward passes with autograd went through the model, but tracker.step() was never "
                 "called, so nothing was recorded: call tracker.step(loss) once per optimizer step, inside the "
                 "with block")


def no_forward(step: int) -> str:
    return (f"step {step} was to be recorded, but no forward pass with autograd and at least one sample went "
            "through the model since the previous tracker.step(); nothing recorded (passes traced by "
            "torch.jit.trace or torch.export, and those inside a torch.func transform, are not recorded)")


def no_backward(step: int) -> str:
    return (f"step {step}: no backward pass that trains the hidden layers (one that computes their weight "
            "gradients) came before tracker.step(); its record has no gradient diagnostics (call step() after "
            "loss.backward())")


def untrained(step: int, rows: int, samples: int) -> str:
    return (f"step {step}: {rows} of the {samples} samples that went through the model with autograd since the "
            "previous tracker.step() had no backward pass (an evaluation outside torch.no_grad?); the record's "
            "forward keys (dead_units, act_*, the sign routes) include them, its gradient keys do not: run "
            "evaluation under torch.no_grad() or torch.inference_mode()")


def check_sign_target(target: object, outputs: int) -> bool:
    """Whether the sign routes are of logit margins (``"margin"``) rather than of the outputs (``"logit"``)."""
    if target not in ("logit", "margin"):
        raise ProbeError("sign_target must be 'logit' or 'margin'", expected="'logit' (each output) or 'margin' "
                         "(each class's logit margin, for a classifier)", found=repr(target),
                         fix="pass sign_target='margin' for a model trained with cross-entropy")
    if target == "margin" and outputs < 2:
        raise ProbeError("sign_target='margin' needs a classifier's logits", expected="a final layer of 2 or "
                         "more outputs (one logit per class)", found=f"{outputs} output",
                         fix="use sign_target='logit': a single logit (bce) is already its class's margin")
    return target == "margin"


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProbeError(f"{name} must be a positive integer", expected="an integer >= 1", found=repr(value),
                         fix=f"pass {name}=10, for instance")
    return value


def loss_value(loss: object) -> float:
    """The loss given to ``tracker.step()`` as a float (one host synchronisation for a device tensor)."""
    try:
        return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    except (TypeError, ValueError, RuntimeError):
        raise ProbeError("tracker.step() got a loss that is not a number", expected="a float or a one-element tensor",
                         found=f"{type(loss).__name__}" + (f" of shape {tuple(loss.shape)}"
                                                            if isinstance(loss, torch.Tensor) else ""),
                         fix="pass loss (the scalar you called backward on), or nothing") from None


def check_slope(slope: object, output: torch.Tensor) -> object:
    """``slope``, unless it is a PReLU's per-channel slopes on a batch of more than 2 dimensions.

    torch applies those along dimension 1 (the sequence, in ``[batch, seq, units]``),
    not per unit of the Linear before it, so no per-unit key could be right.
    """
    if isinstance(slope, torch.Tensor) and slope.numel() > 1 and output.dim() > 2:
        raise ProbeError("probe.track cannot record a per-channel PReLU on inputs of more than 2 dimensions",
                         expected="a PReLU with one slope, or per-channel slopes on [batch, units] inputs",
                         found=f"{slope.numel()} slopes on a batch of shape {tuple(output.shape)} (torch "
                               "applies them along dimension 1, not per unit)",
                         fix="use nn.PReLU() (one slope), or flatten the batch to [rows, units] before the model")
    return slope
