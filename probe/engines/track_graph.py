"""What ``probe.track``'s hooks read from the user's tensors and autograd graph.

The backward node of a Linear layer that computes ``x^T g`` (and the bias
gradient), tensors as ``[rows, width]`` work views, and a context that keeps
the hooks' own arithmetic out of the user's autocast.
"""

from __future__ import annotations

import contextlib

import torch

# backward nodes of F.linear, and which of their inputs receives the gradient of W^T ([fan_in, units])
_MATMUL_NODES = {"AddmmBackward0": 2, "MmBackward0": 1}
_VIEW_NODES = ("ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0")


def plain(device: torch.device):
    """A context without autocast: the hooks' sums in their own dtype, whatever the user's pass runs under."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def work_view(t: torch.Tensor, width: int) -> torch.Tensor:
    """``t`` detached as ``[rows, width]``, in float32 or float64 (half precision is widened)."""
    t = t.detach()
    if t.dim() != 2:
        t = t.reshape(-1, width)
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _linear_node(z: torch.Tensor) -> tuple[object, int] | None:
    """The matrix-product backward node that made ``z`` (through views), and which input is ``W^T``'s."""
    node = z.grad_fn
    while node is not None and node.name() in _VIEW_NODES:
        node = node.next_functions[0][0]
    if node is None or node.name() not in _MATMUL_NODES:
        return None
    return node, _MATMUL_NODES[node.name()]


def weight_grad_node(z: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor | None = None) -> tuple[object, int, int | None] | None:
    """The backward node of ``z = x W^T + b`` that computes ``x^T g``, which of its inputs that is,
    and which one is ``sum_i g``, the bias gradient (None unless it goes straight to ``bias``).

    Only a node whose input leads straight (through the transpose) to ``weight``'s
    own gradient accumulator qualifies: what it computes is then this use's weight
    gradient and nothing else. None otherwise (a frozen weight, autocast's casts,
    another decomposition): the caller computes ``G_pos`` itself.
    """
    found = _linear_node(z)
    if found is None:
        return None
    node, index = found
    nxt = node.next_functions
    if len(nxt) <= index or nxt[index][0] is None or nxt[index][0].name() != "TBackward0":
        return None
    if getattr(nxt[index][0].next_functions[0][0], "variable", None) is not weight:
        return None
    straight = bias is not None and index == 2 and getattr(nxt[0][0], "variable", None) is bias
    return node, index, 0 if straight else None


def weight_branch(z: torch.Tensor) -> object | None:
    """The node of ``z = x W^T + b``'s graph that leads to ``W``'s gradient (through a cast or a
    parametrization too), or for a frozen ``W`` to ``b``'s; None where neither gets one, or the
    graph is not a Linear's."""
    found = _linear_node(z)
    if found is None:
        return None
    node, index = found
    edges = node.next_functions
    branch = edges[index][0] if len(edges) > index else None
    if branch is None and index == 2:  # addmm(b, x, W^T): the bias is its first input
        branch = edges[0][0]
    return branch


def in_backward() -> bool:
    """Whether this code runs inside a backward pass (a forward recomputed by activation checkpointing)."""
    try:
        return torch._C._current_graph_task_id() != -1
    except AttributeError:
        return False


def batched(g: torch.Tensor) -> bool:
    """Whether ``g`` is a batch of gradients (``torch.autograd.grad(..., is_grads_batched=True)``,
    a vectorised ``jacobian``): a pass that computes Jacobians, not one that trains, and whose
    batched tensors refuse the hooks' ``out=`` operations."""
    try:
        return bool(torch._C._functorch.is_legacy_batchedtensor(g))
    except (AttributeError, TypeError):
        return False


def trains(branch: object | None) -> bool:
    """Called in a backward hook: whether this backward pass computes the weight's gradient.

    ``branch`` is :func:`weight_branch`'s node. A pass that does not execute it
    (``torch.autograd.grad`` of a gradient penalty) is not one that trains the
    layer. True where it cannot be known: a frozen layer (no gradient in any
    pass), a branch that ``torch.autograd.grad`` captures, or a torch without
    the engine's query.
    """
    if branch is None:
        return True
    try:
        return bool(torch._C._will_engine_execute_node(branch))
    except (AttributeError, RuntimeError, TypeError):
        return True
