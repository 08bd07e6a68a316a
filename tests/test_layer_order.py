"""A state_dict's layer order: by names and shapes, with honest warnings; TorchScript follows forward.

Each model is built with torch itself, saved, loaded with probe, and checked
against the original module on random inputs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probe.core.errors import ModelLoadError
from probe.models import MLP, load_mlp
from probe.models.state import natural_key, read_state
from tests.layout_models import Shuffled, order_warnings, same, save


# --- order: names, shapes, warnings


def test_natural_sort() -> None:
    names = ["layers.10", "layers.2", "fc10", "fc2", "layers.1"]
    assert sorted(names, key=natural_key) == ["fc2", "fc10", "layers.1", "layers.2", "layers.10"]


def test_shape_chain_decides_registration_order(tmp_path) -> None:
    net = Shuffled((4, 8, 16, 32, 1))
    assert list(net.state_dict())[:4] == ["fc1.weight", "fc1.bias", "fc3.weight", "fc3.bias"]
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    loaded = load_mlp(tmp_path / "sd.pt", "relu")
    assert loaded.mlp.widths == [4, 8, 16, 32, 1]
    same(loaded.mlp, net)
    assert order_warnings(loaded) == []  # one order fits the shapes: verified
    assert any(w.startswith("Activation not verified") and "'relu'" in w for w in loaded.warnings)


def test_shape_chain_beats_misleading_names(tmp_path) -> None:
    class Named(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.output = nn.Linear(16, 1)
            self.input = nn.Linear(3, 8)
            self.hidden = nn.Linear(8, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.output(torch.relu(self.hidden(torch.relu(self.input(x)))))

    net = Named()
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    loaded = load_mlp(tmp_path / "sd.pt", "relu")
    same(loaded.mlp, net)  # natural sort alone would say hidden, input, output
    assert order_warnings(loaded) == []


def test_ambiguous_order_warns_and_layer_order_fixes_it(tmp_path) -> None:
    net = Shuffled((4, 32, 32, 32, 1), order=("fc1", "fc3", "fc2", "out"))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    loaded = load_mlp(tmp_path / "sd.pt", "relu")
    [warning] = order_warnings(loaded)
    assert "fc1 -> fc2 -> fc3 -> out" in warning and "--layer-order fc1,fc3,fc2,out" in warning  # the other order
    assert "fc1 -> fc3 -> fc2 -> out" in warning  # the other order the shapes allow
    assert "pickled model or TorchScript" in warning
    x = torch.randn(64, 4)
    with torch.no_grad():
        assert not torch.allclose(loaded.mlp(x), net.eval()(x), atol=1e-3)  # the names guessed wrong: warned
    fixed = load_mlp(tmp_path / "sd.pt", "relu", layer_order=["fc1", "fc3", "fc2", "out"])
    same(fixed.mlp, net)
    assert order_warnings(fixed) == []
    assert load_mlp(tmp_path / "sd.pt", "relu", layer_order="fc1,fc3,fc2,out").mlp.widths == fixed.mlp.widths


def test_ambiguous_order_in_forward_order_loads_right_with_a_warning(tmp_path) -> None:
    net = Shuffled((4, 32, 32, 32, 1))  # registered fc1, fc3, fc2, out; called fc1, fc2, fc3, out
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    loaded = load_mlp(tmp_path / "sd.pt", "relu")
    same(loaded.mlp, net)
    assert len(order_warnings(loaded)) == 1


def test_names_without_numbers_warn(tmp_path) -> None:
    state = {f"{name}.weight": torch.randn(6, 6) for name in ("alpha", "beta", "gamma")}
    loaded = load_mlp(save(state, tmp_path / "sd.pt"), "relu")
    [warning] = order_warnings(loaded)
    assert "alpha -> beta -> gamma" in warning


def test_bad_layer_order_is_refused(tmp_path) -> None:
    net = Shuffled((4, 8, 16, 32, 1))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match=r"does not name.*fc1, fc2, fc3, out.*fc1,fc2,head"):
        load_mlp(tmp_path / "sd.pt", "relu", layer_order=["fc1", "fc2", "head"])
    with pytest.raises(ModelLoadError, match=r"does not chain.*'fc1' \(8 outputs\) cannot feed 'fc3'"):
        load_mlp(tmp_path / "sd.pt", "relu", layer_order=["fc1", "fc3", "fc2", "out"])


def test_shapes_that_chain_in_no_order_are_refused() -> None:
    with pytest.raises(ModelLoadError, match="chain in no order"):
        read_state({"a.weight": torch.randn(3, 2), "b.weight": torch.randn(5, 4)}, "relu")


def test_norm_layer_in_a_state_dict_names_the_cause(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(ModelLoadError, match=r"'1.weight'.*normalisation layer.*pickled model"):
        load_mlp(save(net.state_dict(), tmp_path / "sd.pt"), "relu")


def test_probe_checkpoint_order_is_trusted(tmp_path) -> None:
    from probe import save_checkpoint

    mlp = MLP.build([3, 8, 8, 8, 1], "relu")
    loaded = load_mlp(save_checkpoint(mlp, tmp_path / "m.pt"))
    assert loaded.format == "probe-checkpoint" and loaded.warnings == ()
    same(loaded.mlp, mlp)


def test_prelu_slopes_follow_their_linear(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(3, 5), nn.PReLU(5), nn.Linear(5, 4), nn.PReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[1].weight.uniform_(-0.5, 0.5)
        net[3].weight.fill_(0.3)
    loaded = load_mlp(save(net.state_dict(), tmp_path / "sd.pt"), "prelu")
    same(loaded.mlp, net)


# --- TorchScript: forward followed; refusals name their cause


def test_torchscript_follows_forward_order(tmp_path) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc3, self.fc2, self.out = (nn.Linear(4, 32), nn.Linear(32, 32), nn.Linear(32, 32),
                                                      nn.Linear(32, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.fc2(torch.relu(self.fc1(x))))
            return self.out(torch.relu(self.fc3(x)))

    net = Net().eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "s.pt"))
    same(load_mlp(tmp_path / "s.pt", trust=True).mlp, net)
    same(load_mlp(tmp_path / "s.pt", "relu", trust=True).mlp, net)


def test_torchscript_residual_refusal_names_the_residual(tmp_path) -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)) + x)

    torch.jit.save(torch.jit.script(Residual()), str(tmp_path / "r.pt"))
    for activation in (None, "relu"):
        with pytest.raises(ModelLoadError, match="residual") as info:
            load_mlp(tmp_path / "r.pt", activation, trust=True)
        assert "--activation" not in str(info.value)


def test_torchscript_control_flow_refusal_names_the_order(tmp_path) -> None:
    class Looped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc3, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8)
            self.out = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.fc1(x))
            for _ in range(1):
                x = torch.relu(self.fc2(x))
            return self.out(torch.relu(self.fc3(x)))

    torch.jit.save(torch.jit.script(Looped()), str(tmp_path / "l.pt"))
    with pytest.raises(ModelLoadError, match="control flow.*order.*--layer-order"):
        load_mlp(tmp_path / "l.pt", "relu", trust=True)


def test_torchscript_wrong_activation_blames_the_activation(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.3), nn.Linear(8, 1))
    torch.jit.save(torch.jit.script(net), str(tmp_path / "s.pt"))
    with pytest.raises(ModelLoadError, match=r"--activation given \(relu\).*check that --activation") as info:
        load_mlp(tmp_path / "s.pt", "relu", trust=True)
    assert "residual" not in str(info.value)


def test_prelu_slopes_without_prelu_activation_say_so(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(3, 5), nn.PReLU(5), nn.Linear(5, 1))
    with pytest.raises(ModelLoadError, match="PReLU slope.*--activation prelu"):
        load_mlp(save(net.state_dict(), tmp_path / "sd.pt"), "relu")
