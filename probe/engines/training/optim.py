"""Adam and SGD for the batched ensemble, step for step the arithmetic of ``torch.optim``'s.

Why not ``torch.optim`` itself: constructing any ``torch.optim`` optimizer
imports ``torch._dynamo`` (its ``add_param_group`` is wrapped to disable the
compiler), about a second of start-up on a small CPU for a run that trains
for one or two. These two classes compute exactly what ``torch.optim.Adam``
and ``torch.optim.SGD`` compute with their defaults on the CPU (the
single-tensor implementation: the same operations in the same order, so the
same bits; ``tests/test_training.py`` checks ``torch.equal`` against them),
and nothing else: no weight decay, no AMSGrad, no Nesterov, no dampening.
Both optimisers are element-wise, which is what makes one optimiser over the
batched tensors exactly per-member training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class _Optimizer:
    """The parameters, and ``zero_grad`` as ``torch.optim``'s default (gradients set to None)."""

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        self.params = list(params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient (``torch.optim`` skips the others too)."""
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(i, p, p.grad)

    def _update(self, i: int, p: torch.Tensor, grad: torch.Tensor) -> None:
        raise NotImplementedError


class Adam(_Optimizer):
    """``torch.optim.Adam(params, lr)`` with the default betas (0.9, 0.999) and eps 1e-8."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(params)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # torch keeps the step count as a float32 tensor and reads it back as a Python float: the same number
        self.steps = [0.0] * len(self.params)

    def _update(self, i: int, p: torch.Tensor, grad: torch.Tensor) -> None:
        self.steps[i] += 1.0
        step = self.steps[i]  # an integer: exact in torch's float32 step counter too
        exp_avg, exp_avg_sq = self.exp_avg[i], self.exp_avg_sq[i]
        exp_avg.lerp_(grad, 1 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad.conj(), value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1 ** step
        bias_correction2 = 1 - self.beta2 ** step
        step_size = self.lr / bias_correction1
        denom = (exp_avg_sq.sqrt() / bias_correction2 ** 0.5).add_(self.eps)
        p.addcdiv_(exp_avg, denom, value=-step_size)


class SGD(_Optimizer):
    """``torch.optim.SGD(params, lr, momentum)`` (no dampening, no Nesterov, no weight decay)."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float, momentum: float = 0.0) -> None:
        super().__init__(params)
        self.lr, self.momentum = lr, momentum
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def _update(self, i: int, p: torch.Tensor, grad: torch.Tensor) -> None:
        if self.momentum != 0:
            buf = self.buffers[i]
            if buf is None:
                buf = self.buffers[i] = torch.clone(grad).detach()
            else:
                buf.mul_(self.momentum).add_(grad, alpha=1)
            grad = buf
        p.add_(grad, alpha=-self.lr)
