"""Which torch device a command may run on: ``cpu`` or an available ``cuda[:N]``."""

from __future__ import annotations

import torch

from probe.core.errors import ProbeError


def check_device(device: str) -> str:
    """``cpu`` or an available ``cuda[:N]``, as a device string; anything else is refused with the fix.

    probe is tested on the CPU and CUDA only, so other backends torch knows
    (``mps``, ``xla``, ``meta``, ...) are refused rather than half-run.

    Raises:
        ProbeError: An unknown or unsupported device, CUDA without a GPU, or a
            GPU index that does not exist (the CLI exits with status 2).
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ProbeError(f"Unknown device '{device}'", expected="cpu or cuda[:N]", found=repr(device),
                         fix="use --device cpu or --device cuda") from None
    if dev.type == "cpu":
        return "cpu" if dev.index is None else str(dev)
    if dev.type != "cuda":
        raise ProbeError(f"Device '{device}' is not supported", expected="cpu or cuda[:N]",
                         found=f"a {dev.type} device", fix="use --device cpu (or cuda on an NVIDIA GPU)")
    if not torch.cuda.is_available():
        raise ProbeError("CUDA was asked for but is not available", expected="a CUDA GPU",
                         found="torch.cuda.is_available() is False", fix="use --device cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ProbeError(f"There is no GPU {dev.index}", expected=f"cuda:0 to cuda:{torch.cuda.device_count() - 1}",
                         found=device, fix="pick an existing GPU index, or --device cuda")
    return str(dev)
