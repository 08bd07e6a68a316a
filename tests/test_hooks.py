"""Hooks are borrowed state: always removed, training mode restored, outputs untouched."""

from __future__ import annotations

import pytest
import torch

from probe import diagnose
from probe.core.data import Dataset
from probe.diagnostics import Collector
from probe.engines.hooks import hook_session
from probe.models import MLP


def _hook_count(mlp: MLP) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in mlp.modules())


def test_no_hook_left_after_success(random_mlp: MLP) -> None:
    random_mlp.train()
    diagnose(random_mlp, Dataset(torch.randn(40, 5), None, "t"), batch_size=7)
    assert _hook_count(random_mlp) == 0
    assert random_mlp.training
    assert all(p.grad is None for p in random_mlp.parameters())


def test_no_hook_left_after_failure(random_mlp: MLP) -> None:
    random_mlp.train()

    def boom(_: int) -> None:
        raise RuntimeError("interrupted mid-run")

    with pytest.raises(RuntimeError, match="interrupted"):
        diagnose(random_mlp, Dataset(torch.randn(40, 5), None, "t"), progress=boom)
    assert _hook_count(random_mlp) == 0
    assert random_mlp.training

    collector = Collector(2)
    with pytest.raises(ValueError):
        with hook_session(random_mlp, collector):
            assert _hook_count(random_mlp) == 4  # per hidden layer: its Linear and its activation
            assert not random_mlp.training
            raise ValueError
    assert _hook_count(random_mlp) == 0 and random_mlp.training


def test_hooks_do_not_change_outputs_or_gradients(random_mlp: MLP) -> None:
    x = torch.randn(20, 5)
    want = random_mlp.eval()(x)
    want.sum().backward()
    want_grads = [p.grad.clone() for p in random_mlp.parameters()]
    random_mlp.zero_grad(set_to_none=True)
    with hook_session(random_mlp, Collector(2)):
        got = random_mlp(x)
        got.sum().backward()
    assert torch.equal(got, want)
    for p, g in zip(random_mlp.parameters(), want_grads):
        assert torch.equal(p.grad, g)


def test_callers_gradients_and_frozen_flags_are_restored(random_mlp: MLP) -> None:
    x = torch.randn(8, 5)
    random_mlp(x).sum().backward()
    before = [p.grad.clone() for p in random_mlp.parameters()]
    random_mlp[0].weight.requires_grad_(False)
    diag = diagnose(random_mlp, Dataset(torch.randn(30, 5), None, "t"), batch_size=4)
    assert diag.layers[0].gradient.neg_grad_share is not None
    assert not random_mlp[0].weight.requires_grad
    for p, b in zip(random_mlp.parameters(), before):
        assert torch.equal(p.grad, b)


def test_in_place_change_of_a_layer_input_is_refused() -> None:
    collector = Collector(1)
    x = torch.randn(1, 4, 3)
    z = torch.randn(1, 4, 2)
    pending = collector.forward(0, x, z, torch.zeros(1, 1, 1))
    x.mul_(2)  # an in-place op between forward and backward
    with pytest.raises(RuntimeError, match="modified in place"):
        collector.backward(pending, torch.ones(1, 4, 2))
