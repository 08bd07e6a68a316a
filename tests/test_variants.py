from __future__ import annotations

import pytest
import torch
from torch import nn

from probe.core.errors import VariantError
from probe.core.variants import parse_variant, variant_of_module


@pytest.mark.parametrize("spec, slope, canonical", [
    ("relu", 0.0, "relu"), ("leaky", 0.01, "leaky:0.01"), ("leaky:0.2", 0.2, "leaky:0.2"),
    ("LEAKY:0.30", 0.3, "leaky:0.3"), ("prelu", 0.25, "prelu"),
])
def test_grammar(spec, slope, canonical) -> None:
    v = parse_variant(spec)
    assert v.slope == pytest.approx(slope) and v.spec == canonical
    assert variant_of_module(v.make_module()).spec == canonical


@pytest.mark.parametrize("spec", ["sigmoid", "gelu:foo", "elu:-1", "rrelu:0.5:0.2", "selu:1", "softplus:0", "leaky:x", "leaky:-0.1", "leaky:1.5", "relu:0.1", "leaky:nan"])
def test_bad_specs(spec) -> None:
    with pytest.raises(VariantError):
        parse_variant(spec)


def test_modules() -> None:
    assert isinstance(parse_variant("relu").make_module(), nn.ReLU)
    assert parse_variant("leaky").label == "leaky"


def _where_reference(z: torch.Tensor, slope) -> torch.Tensor:
    return torch.where(z > 0, z, slope * z)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_leaky_relu_kernels_match_torch_where_bit_for_bit(dtype) -> None:
    """Values and input gradients of the fused kernels equal ``torch.where``'s, z == 0 included."""
    from probe.core.variants import leaky_relu, leaky_relu_runs

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 16, 5, generator=gen, dtype=dtype)
    z[:, 0, :2] = 0.0  # the kink: the gradient there is slope * g
    g = torch.randn(6, 16, 5, generator=gen, dtype=dtype)
    per_member = torch.tensor([0.0, 0.0, 0.01, 0.01, 0.3, 0.3], dtype=dtype).reshape(-1, 1, 1)
    runs = [(0, 2, 0.0), (2, 4, 0.01), (4, 6, 0.3)]
    cases = [(lambda t: leaky_relu(t, 0.2), lambda t: _where_reference(t, torch.tensor(0.2, dtype=dtype))),
             (lambda t: leaky_relu(t, per_member), lambda t: _where_reference(t, per_member)),
             (lambda t: leaky_relu_runs(t, runs), lambda t: _where_reference(t, per_member))]
    for ours, ref in cases:
        a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
        ha, hb = ours(a), ref(b)
        ha.backward(g)
        hb.backward(g)
        assert torch.equal(ha, hb) and torch.equal(a.grad, b.grad)
    a = z.clone().requires_grad_()
    leaky_relu(a, 0.2).backward(g)
    assert torch.equal(a.grad[:, 0, :2], 0.2 * g[:, 0, :2].to(dtype))


def test_learnable_slope_gets_the_gradient_of_the_formula() -> None:
    """A PReLU slope tensor: d/dslope sum(g * h) = sum over z <= 0 of g * z, per member."""
    from probe.core.variants import leaky_relu

    gen = torch.Generator().manual_seed(1)
    z, g = torch.randn(3, 8, 4, generator=gen), torch.randn(3, 8, 4, generator=gen)
    slope = torch.tensor([0.25, 0.1, 0.0]).reshape(-1, 1, 1).requires_grad_()
    leaky_relu(z, slope).backward(g)
    expected = (g * z.clamp(max=0)).sum((1, 2)).reshape(-1, 1, 1)
    torch.testing.assert_close(slope.grad, expected)


def test_leaky_kernels_support_double_backward_and_mixed_slope_dtypes():
    """create_graph through the run kernel, and a float64 slope on float32 inputs, as the plain formula allows."""
    from probe.core.variants import leaky_relu, leaky_relu_runs

    z = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    runs = [(0, 2, 0.0), (2, 4, 0.2)]
    (g,) = torch.autograd.grad(leaky_relu_runs(z, runs).pow(2).sum(), z, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), z)
    slopes = torch.tensor([0.0, 0.0, 0.2, 0.2], dtype=torch.float64).reshape(-1, 1, 1)
    local = torch.where(z > 0, 1.0, slopes)
    assert torch.allclose(gg, 2 * local ** 2)  # d/dz of 2 h(z) h'(z) = 2 h'(z)^2 away from the kink
    h = leaky_relu(torch.tensor([-1.0, 2.0]), torch.tensor(0.5, dtype=torch.float64))
    assert h.dtype == torch.float32 and h.tolist() == [-0.5, 2.0]
