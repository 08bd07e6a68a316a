from __future__ import annotations

import pytest
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
