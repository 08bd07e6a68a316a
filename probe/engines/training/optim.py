"""Adam and SGD for the batched ensemble, bit for bit the arithmetic of ``torch.optim``'s.

Why not ``torch.optim`` itself: constructing any ``torch.optim`` optimizer
imports ``torch._dynamo`` (its ``add_param_group`` is wrapped to disable the
compiler), about a second of start-up on a small CPU for a run that trains
for one or two.

* :class:`Adam` is ``torch.optim.Adam(params, lr, fused=True)``: it calls the
  same fused kernel (``torch._fused_adam_``, CPU and CUDA), one pass over each
  tensor instead of the seven of the single-tensor implementation, which is
  what makes Adam cheap on the large stacked tensors of a wide ensemble. Every
  entry goes through the kernel's vector lanes (see :class:`Adam`), so an
  entry's update does not depend on where it sits: bit for bit what torch's
  fused Adam computes on a tensor whose size is a multiple of ``ALIGN``; it
  differs from the default (unfused) ``torch.optim.Adam`` in the last bit of
  some entries. Where the installed torch has no fused kernel for the device
  (CPU before torch 2.4), it falls back to that default arithmetic, bit for bit.
* :class:`SGD` is ``torch.optim.SGD``'s default single-tensor arithmetic.

``tests/test_training.py`` checks ``torch.equal`` against both, and that a
member trains to the same bits whatever the other members of the stack.
Nothing else is implemented: no weight decay, no AMSGrad, no Nesterov, no
dampening. Both optimisers are element-wise, which is what makes one
optimiser over the batched tensors exactly per-member training.
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


#: entries per vector block of the fused kernel's layout (a multiple of every CPU vector width)
ALIGN = 64


class Adam(_Optimizer):
    """``torch.optim.Adam(params, lr, fused=True)`` with the default betas (0.9, 0.999) and eps 1e-8.

    Position-independent: the fused CPU kernel computes a tensor's last ``numel
    % width`` entries in a scalar loop that can round differently from its
    vector lanes, which would make a member's last bits (and, amplified by
    training, its third decimal) depend on where it sits in the stack, and so
    on the other variants and seeds of the run. So every tensor is handed to
    the kernel as its prefix of whole ``ALIGN`` blocks plus its tail copied into
    a zero-padded block: every entry takes the vector path, wherever it sits.
    Optimiser state is kept flat and padded to whole blocks. CUDA tensors go
    to the kernel whole: its multi-tensor kernel applies the same arithmetic to
    every entry, and each padding copy would be one more kernel launch per step.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(params)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        padded = [-(-p.numel() // ALIGN) * ALIGN for p in self.params]
        self.exp_avg = [torch.zeros(n, dtype=p.dtype, device=p.device) for p, n in zip(self.params, padded)]
        self.exp_avg_sq = [torch.zeros(n, dtype=p.dtype, device=p.device) for p, n in zip(self.params, padded)]
        # the tails' zero-padded blocks of parameter and gradient (the padding stays 0: its gradient is 0)
        self.tails = [(torch.zeros(ALIGN, dtype=p.dtype, device=p.device),
                       torch.zeros(ALIGN, dtype=p.dtype, device=p.device)) for p in self.params]
        # as torch.optim's fused Adam: a float32 step counter per parameter, on its device
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self.fused = True  # until the kernel is found missing for these tensors

    @torch.no_grad()
    def step(self) -> None:
        """One fused update of every parameter that has a gradient (the others are skipped, as torch does)."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        for i in live:  # the kernel reads the incremented count, as torch.optim's _fused_adam does
            self.steps[i].add_(1)
        if self.fused:
            try:
                self._fused(live)
                return
            except (AttributeError, NotImplementedError, RuntimeError):  # an older torch: no fused kernel here
                self.fused = False
        for i in live:
            self._unfused(i, self.params[i], self.params[i].grad)

    def _fused(self, live: list[int]) -> None:
        lists: tuple[list[torch.Tensor], ...] = ([], [], [], [], [])  # params, grads, m, v, steps
        tails = []
        for i in live:
            p, g = self.params[i].view(-1), self.params[i].grad.reshape(-1)
            n = p.numel()
            k = n - n % ALIGN if p.device.type == "cpu" else n
            parts = [(p[:k], g[:k], self.exp_avg[i][:k], self.exp_avg_sq[i][:k])] if k else []
            if k < n:
                p_tail, g_tail = self.tails[i]
                p_tail[:n - k].copy_(p[k:])
                g_tail[:n - k].copy_(g[k:])
                parts.append((p_tail, g_tail, self.exp_avg[i][k:], self.exp_avg_sq[i][k:]))
                tails.append((p[k:], p_tail[:n - k]))
            for part in parts:
                for dest, t in zip(lists, (*part, self.steps[i])):
                    dest.append(t)
        torch._fused_adam_(lists[0], lists[1], lists[2], lists[3], [], lists[4], lr=self.lr, beta1=self.beta1,
                           beta2=self.beta2, weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
        for dest, src in tails:
            dest.copy_(src)

    def _unfused(self, i: int, p: torch.Tensor, grad: torch.Tensor) -> None:
        """torch.optim.Adam's single-tensor arithmetic (torch < 2.4 has no fused Adam on the CPU)."""
        step = float(self.steps[i])
        n = p.numel()
        exp_avg, exp_avg_sq = self.exp_avg[i][:n].view_as(p), self.exp_avg_sq[i][:n].view_as(p)
        exp_avg.lerp_(grad, 1 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad.conj(), value=1 - self.beta2)
        step_size = self.lr / (1 - self.beta1 ** step)
        denom = (exp_avg_sq.sqrt() / (1 - self.beta2 ** step) ** 0.5).add_(self.eps)
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
