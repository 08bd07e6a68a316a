"""Every model format loads into the same canonical MLP; bad files get clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from probe import diagnose, load_mlp, save_checkpoint
from probe.core.data import Dataset
from probe.core.errors import ModelLoadError
from probe.models import MLP


class ScriptedNet(nn.Module):
    """A custom module with named layers and a functional activation in forward()."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 3)
        self.head = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.fc1(x), 0.2)
        x = F.leaky_relu(self.fc2(x), 0.2)
        return self.head(x)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)) + x)


def _same(mlp: MLP, reference: nn.Module) -> None:
    x = torch.randn(32, mlp.widths[0])
    with torch.no_grad():
        assert torch.allclose(mlp(x), reference.eval()(x), atol=1e-6)


def test_probe_checkpoint_round_trip(tmp_path, random_mlp: MLP) -> None:
    path = save_checkpoint(random_mlp, tmp_path / "m.pt", scenario="signed_regression", seed=3)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "probe-mlp/1"
    assert set(raw["state_dict"]) >= {"0.weight", "0.bias", "2.weight", "4.weight"}
    loaded = load_mlp(path)
    assert loaded.format == "probe-checkpoint"
    assert loaded.meta["seed"] == 3 and loaded.meta["scenario"] == "signed_regression"
    assert loaded.mlp.activation_spec == "leaky:0.1"
    _same(loaded.mlp, random_mlp)


def test_prelu_checkpoint_keeps_learned_slopes(tmp_path) -> None:
    mlp = MLP.build([3, 5, 1], "prelu")
    with torch.no_grad():
        mlp[1].weight.fill_(0.37)
    loaded = load_mlp(save_checkpoint(mlp, tmp_path / "p.pt"))
    assert loaded.mlp.activation_spec == "prelu"
    assert float(loaded.mlp.slopes()[0]) == pytest.approx(0.37)
    _same(loaded.mlp, mlp)


def test_bare_state_dict_needs_activation(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.3), nn.Linear(8, 1))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match="--activation"):
        load_mlp(tmp_path / "sd.pt")
    loaded = load_mlp(tmp_path / "sd.pt", "leaky:0.3")
    assert loaded.format == "state_dict"
    _same(loaded.mlp, net)


def test_state_dict_with_custom_key_names(tmp_path) -> None:
    net = ScriptedNet()
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    _same(load_mlp(tmp_path / "sd.pt", "leaky:0.2").mlp, net)


def test_torchscript_needs_trust(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    torch.jit.save(torch.jit.script(net), str(tmp_path / "s.pt"))
    with pytest.raises(ModelLoadError, match="TorchScript.*runs when it is loaded") as info:
        load_mlp(tmp_path / "s.pt")
    assert "--trust" in str(info.value) and "torch.save(model.state_dict()" in str(info.value)
    _same(load_mlp(tmp_path / "s.pt", trust=True).mlp, net)


def test_torchscript_with_functional_activation(tmp_path) -> None:
    net = ScriptedNet()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "s.pt"))
    loaded = load_mlp(tmp_path / "s.pt", trust=True)
    assert loaded.format == "torchscript"
    assert loaded.mlp.activation_spec == "leaky:0.2"
    _same(loaded.mlp, net)
    # An explicit --activation that contradicts the model is caught by the output check.
    with pytest.raises(ModelLoadError, match="differ"):
        load_mlp(tmp_path / "s.pt", "relu", trust=True)


def test_torchscript_sequential(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
    torch.jit.save(torch.jit.script(net), str(tmp_path / "s.pt"))
    _same(load_mlp(tmp_path / "s.pt", trust=True).mlp, net)


def test_pickled_torch_nn_module_loads_without_trust(tmp_path) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Identity(),
                        nn.Linear(8, 8), nn.PReLU(), nn.Linear(8, 1))
    torch.save(net, tmp_path / "m.pt")
    loaded = load_mlp(tmp_path / "m.pt")
    assert loaded.format == "pickled-module"
    assert loaded.mlp.widths == [4, 8, 8, 1]
    _same(loaded.mlp, net)


def test_custom_pickle_needs_trust(tmp_path) -> None:
    net = ScriptedNet()
    torch.save(net, tmp_path / "c.pt")
    with pytest.raises(ModelLoadError, match="--trust") as info:
        load_mlp(tmp_path / "c.pt")
    assert "ScriptedNet" in str(info.value)
    loaded = load_mlp(tmp_path / "c.pt", trust=True)
    assert loaded.mlp.activation_spec == "leaky:0.2"
    _same(loaded.mlp, net)


def test_conv_and_residual_are_not_mlps(tmp_path) -> None:
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))
    torch.save(conv, tmp_path / "conv.pt")
    with pytest.raises(ModelLoadError, match="Conv2d"):
        load_mlp(tmp_path / "conv.pt")
    torch.save(Residual(), tmp_path / "res.pt")
    with pytest.raises(ModelLoadError, match="residual"):
        load_mlp(tmp_path / "res.pt", trust=True)
    torch.jit.save(torch.jit.script(Residual()), str(tmp_path / "res.ts"))
    with pytest.raises(ModelLoadError, match="not an MLP"):
        load_mlp(tmp_path / "res.ts", trust=True)


def test_missing_truncated_and_foreign_files(tmp_path, random_mlp: MLP) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_mlp(tmp_path / "nope.pt")
    good = save_checkpoint(random_mlp, tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_mlp(tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model at all")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_mlp(tmp_path / "junk.pt")
    torch.save({"lr": 0.1}, tmp_path / "cfg.pt")
    with pytest.raises(ModelLoadError, match="no model"):
        load_mlp(tmp_path / "cfg.pt")


def test_inplace_activation_gives_the_same_numbers(tmp_path) -> None:
    torch.manual_seed(5)
    plain = nn.Sequential(nn.Linear(3, 10), nn.LeakyReLU(0.05), nn.Linear(10, 10), nn.ReLU(),
                          nn.Linear(10, 1))
    inplace = nn.Sequential(nn.Linear(3, 10), nn.LeakyReLU(0.05, inplace=True), nn.Linear(10, 10),
                            nn.ReLU(inplace=True), nn.Linear(10, 1))
    inplace.load_state_dict(plain.state_dict())
    torch.save(plain, tmp_path / "a.pt")
    torch.save(inplace, tmp_path / "b.pt")
    a, b = load_mlp(tmp_path / "a.pt").mlp, load_mlp(tmp_path / "b.pt").mlp
    assert b[1].inplace  # the in-place module is kept, so the hooks really face it
    data = Dataset(torch.randn(100, 3), torch.randn(100, 1), "t")
    assert diagnose(a, data, batch_size=32).to_dict() == diagnose(b, data, batch_size=32).to_dict()


def test_prelu_state_dict_without_slopes_is_refused(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match="no PReLU slope"):
        load_mlp(tmp_path / "sd.pt", "prelu")


def test_float64_model_is_converted(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    torch.save(net, tmp_path / "d.pt")
    mlp = load_mlp(tmp_path / "d.pt").mlp
    x = torch.randn(16, 4)
    with torch.no_grad():
        assert torch.allclose(mlp(x), net(x.double()).float(), atol=1e-5)


def test_trusted_pickle_with_missing_class_says_how_to_fix(tmp_path) -> None:
    # A protocol-2 pickle of an instance of no_such_module_xyz.Net, a module that does not exist here.
    (tmp_path / "m.pt").write_bytes(b"\x80\x02cno_such_module_xyz\nNet\nq\x00)\x81q\x01.")
    with pytest.raises(ModelLoadError, match="PYTHONPATH"):
        load_mlp(tmp_path / "m.pt", trust=True)


def test_negative_prelu_slopes_give_non_negative_magnitudes() -> None:
    from probe import diagnose
    from probe.core.data import Dataset
    from probe.models import module_to_mlp

    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 6), nn.PReLU(6, init=-0.5), nn.Linear(6, 1))
    X = torch.randn(200, 3)
    a = diagnose(module_to_mlp(net), Dataset(X, None, "t")).layers[0].activity
    with torch.no_grad():
        z = net[0](X)
    neg = z <= 0
    assert a.act_neg_mean_abs == pytest.approx(float((0.5 * z.abs())[neg].mean()), rel=1e-5)
    assert a.act_ratio > 0


def test_user_hooks_do_not_reach_probes_copy() -> None:
    from probe.models import module_to_mlp

    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    x = torch.randn(16, 3)
    with torch.no_grad():
        plain = net(x)
    handles = [net.register_forward_hook(lambda module, args, out: out * 10),
               net[2].register_forward_hook(lambda module, args, out: out + 1),
               net[0].register_forward_pre_hook(lambda module, args: (args[0] * 0,)),
               net[2].register_full_backward_hook(lambda module, gin, gout: None)]
    net[0].train()
    mlp = module_to_mlp(net)
    with torch.no_grad():
        assert torch.allclose(mlp(x), plain, atol=1e-6)  # the hooks changed nothing in probe's MLP
        # ...and still run on the user's model: input zeroed, +1 after the last layer, x10 at the end
        hooked = (F.linear(torch.relu(net[0].bias).expand(16, 5), net[2].weight, net[2].bias) + 1) * 10
        assert torch.allclose(net(x), hooked, atol=1e-5)
    for module in mlp.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    assert len(net._forward_hooks) == 1 and len(net[2]._forward_hooks) == 1
    assert len(net[0]._forward_pre_hooks) == 1 and len(net[2]._backward_hooks) == 1
    assert net[0].training and net.training  # each module's own mode is put back
    for handle in handles:
        handle.remove()


def test_module_to_mlp_copies_instead_of_sharing() -> None:
    from probe.models import module_to_mlp

    net = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1)).double()
    mlp = module_to_mlp(net)
    assert mlp[0] is not net[0] and mlp[0].weight.data_ptr() != net[0].weight.data_ptr()
    assert mlp[0].weight.dtype == torch.float32 and mlp[1].negative_slope == 0.2
    with torch.no_grad():
        mlp[0].weight.zero_()
    assert net[0].weight.abs().sum() > 0
