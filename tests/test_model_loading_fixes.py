"""Model-loading fixes from a new-user review: norms in state_dicts, traced norms, TorchScript causes, wrappers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probe.core.errors import ModelLoadError
from probe.models import load_mlp
from tests.layout_models import order_warnings, same


def _rms_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.RMSNorm(32), nn.ReLU(), nn.Linear(32, 32), nn.RMSNorm(32),
                        nn.ReLU(), nn.Linear(32, 1))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.RMSNorm):
                m.weight.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("activation", ["relu", "prelu"])
def test_rmsnorm_state_dict_is_refused_as_a_norm_never_as_prelu(tmp_path, activation) -> None:
    torch.save(_rms_net().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError) as err:
        load_mlp(tmp_path / "sd.pt", activation)
    text = str(err.value)
    assert "'1.weight'" in text and "normalisation layer" in text
    assert "--activation prelu" not in text and "save_checkpoint" in text


@pytest.mark.parametrize("activation", ["relu", "prelu"])
def test_layernorm_state_dict_is_refused_as_a_norm_never_as_prelu(tmp_path, activation) -> None:
    net = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.LeakyReLU(0.05), nn.Linear(16, 1))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match=r"'1.weight'.*normalisation layer") as err:
        load_mlp(tmp_path / "sd.pt", activation)
    assert "--activation prelu" not in str(err.value)


def test_prelu_state_dict_still_loads(tmp_path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.PReLU(16), nn.Linear(16, 16), nn.PReLU(16), nn.Linear(16, 1))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    same(load_mlp(tmp_path / "sd.pt", "prelu").mlp, net)


def test_sequential_indices_are_the_call_order_no_warning(tmp_path) -> None:
    torch.manual_seed(0)
    inner = nn.Sequential(*[m for _ in range(11) for m in (nn.Linear(8, 8), nn.ReLU())], nn.Linear(8, 1))
    holder = nn.Module()
    holder.net = inner
    torch.save(holder.state_dict(), tmp_path / "sd.pt")  # keys net.0 ... net.22: net.10 sorts before net.2
    loaded = load_mlp(tmp_path / "sd.pt", "relu")
    same(loaded.mlp, inner)
    assert order_warnings(loaded) == []
