"""State_dicts in every layout training code saves them in, ordered by names and shapes, with honest warnings.

Each model is built with torch itself, saved the way users save it, loaded
with probe, and checked against the original module on random inputs.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from probe.cli.app import app
from probe.core.errors import ModelLoadError
from probe.models import MLP, load_mlp
from probe.models.layouts import strip_prefixes
from probe.models.state import natural_key, read_state

runner = CliRunner()


class Shuffled(nn.Module):
    """Registers fc1, fc3, fc2, out; calls fc1 -> fc2 -> fc3 -> out (``order`` picks the calls)."""

    def __init__(self, widths: tuple[int, ...], order: tuple[str, ...] = ("fc1", "fc2", "fc3", "out")) -> None:
        super().__init__()
        w = widths
        self.fc1 = nn.Linear(w[0], w[1])
        self.fc3 = nn.Linear(w[2], w[3])
        self.fc2 = nn.Linear(w[1], w[2])
        self.out = nn.Linear(w[3], w[4])
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order[:-1]:
            x = torch.relu(getattr(self, name)(x))
        return getattr(self, self.order[-1])(x)


def _same(mlp: MLP, reference: nn.Module) -> None:
    x = torch.randn(64, mlp.widths[0]) * 2
    with torch.no_grad():
        assert torch.allclose(mlp(x), reference.eval()(x), atol=1e-5)


def _order_warnings(loaded) -> list[str]:
    return [w for w in loaded.warnings if w.startswith("Layer order not verified")]


def _sequential(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


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
    _same(loaded.mlp, net)
    assert _order_warnings(loaded) == []  # one order fits the shapes: verified
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
    _same(loaded.mlp, net)  # natural sort alone would say hidden, input, output
    assert _order_warnings(loaded) == []


def test_ambiguous_order_warns_and_layer_order_fixes_it(tmp_path) -> None:
    net = Shuffled((4, 32, 32, 32, 1), order=("fc1", "fc3", "fc2", "out"))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    loaded = load_mlp(tmp_path / "sd.pt", "relu")
    [warning] = _order_warnings(loaded)
    assert "fc1 -> fc2 -> fc3 -> out" in warning and "--layer-order fc1,fc2,fc3,out" in warning
    assert "fc1 -> fc3 -> fc2 -> out" in warning  # the other order the shapes allow
    assert "pickled model or TorchScript" in warning
    x = torch.randn(64, 4)
    with torch.no_grad():
        assert not torch.allclose(loaded.mlp(x), net.eval()(x), atol=1e-3)  # the names guessed wrong: warned
    fixed = load_mlp(tmp_path / "sd.pt", "relu", layer_order=["fc1", "fc3", "fc2", "out"])
    _same(fixed.mlp, net)
    assert _order_warnings(fixed) == []
    assert load_mlp(tmp_path / "sd.pt", "relu", layer_order="fc1,fc3,fc2,out").mlp.widths == fixed.mlp.widths


def test_ambiguous_order_in_forward_order_loads_right_with_a_warning(tmp_path) -> None:
    net = Shuffled((4, 32, 32, 32, 1))  # registered fc1, fc3, fc2, out; called fc1, fc2, fc3, out
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    loaded = load_mlp(tmp_path / "sd.pt", "relu")
    _same(loaded.mlp, net)
    assert len(_order_warnings(loaded)) == 1


def test_names_without_numbers_warn(tmp_path) -> None:
    state = {f"{name}.weight": torch.randn(6, 6) for name in ("alpha", "beta", "gamma")}
    loaded = load_mlp(_save(state, tmp_path / "sd.pt"), "relu")
    [warning] = _order_warnings(loaded)
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
        load_mlp(_save(net.state_dict(), tmp_path / "sd.pt"), "relu")


def test_probe_checkpoint_order_is_trusted(tmp_path) -> None:
    from probe import save_checkpoint

    mlp = MLP.build([3, 8, 8, 8, 1], "relu")
    loaded = load_mlp(save_checkpoint(mlp, tmp_path / "m.pt"))
    assert loaded.format == "probe-checkpoint" and loaded.warnings == ()
    _same(loaded.mlp, mlp)


def test_prelu_slopes_follow_their_linear(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(3, 5), nn.PReLU(5), nn.Linear(5, 4), nn.PReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[1].weight.uniform_(-0.5, 0.5)
        net[3].weight.fill_(0.3)
    loaded = load_mlp(_save(net.state_dict(), tmp_path / "sd.pt"), "prelu")
    _same(loaded.mlp, net)


# --- layouts


def _save(obj: object, path) -> object:
    torch.save(obj, path)
    return path


def _layouts(net: nn.Module) -> dict[str, tuple[object, str]]:
    state = net.state_dict()
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = net.state_dict()
    return {
        "bare": (state, "state_dict"),
        "tutorial": ({"epoch": 3, "model_state_dict": state, "optimizer_state_dict": opt.state_dict(),
                      "loss": 0.25}, "state_dict (training checkpoint, 'model_state_dict')"),
        "lightning_like": ({"epoch": 1, "global_step": 10, "pytorch-lightning_version": "2.4.0",
                            "state_dict": {f"model.{k}": v for k, v in state.items()},
                            "optimizer_states": [opt.state_dict()], "lr_schedulers": [],
                            "hyper_parameters": {"lr": 0.01, "hidden": [8, 8]}, "loops": {}, "callbacks": {}},
                           "state_dict (lightning checkpoint)"),
        "data_parallel": ({f"module.{k}": v for k, v in state.items()}, "state_dict"),
        "compiled": ({f"_orig_mod.{k}": v for k, v in state.items()}, "state_dict"),
        "parallel_compiled": ({"state_dict": {f"module._orig_mod.{k}": v for k, v in state.items()},
                               "epoch": 2}, "state_dict (checkpoint dict, 'state_dict')"),
        "net_entry": ({"net": state, "opt": opt.state_dict()}, "state_dict (checkpoint dict, 'net')"),
        "pickled_module_entry": ({"model": net, "epoch": 4}, "pickled-module (checkpoint dict, 'model')"),
    }


@pytest.mark.parametrize("layout", ["bare", "tutorial", "lightning_like", "data_parallel", "compiled",
                                    "parallel_compiled", "net_entry", "pickled_module_entry"])
def test_checkpoint_layouts(tmp_path, layout) -> None:
    net = Shuffled((4, 8, 16, 32, 1)).eval()
    if layout == "pickled_module_entry":
        net = _sequential([4, 8, 16, 1]).eval()
    obj, fmt = _layouts(net)[layout]
    loaded = load_mlp(_save(obj, tmp_path / "m.pt"), "relu")
    assert loaded.format == fmt
    _same(loaded.mlp, net)


def test_real_module_prefixes() -> None:
    net = _sequential([4, 8, 1])
    parallel = nn.DataParallel(net).state_dict()
    compiled = torch.compile(net).state_dict()
    assert all(k.startswith("module.") for k in parallel) and all(k.startswith("_orig_mod.") for k in compiled)
    assert list(strip_prefixes(parallel)[0]) == list(net.state_dict())
    assert strip_prefixes(compiled)[1] == "_orig_mod."


def test_real_lightning_checkpoint(tmp_path) -> None:
    lightning = pytest.importorskip("lightning")

    class Module(lightning.LightningModule):
        def __init__(self, lr: float = 0.01) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = _sequential([4, 8, 16, 1])

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.mse_loss(self.model(x), y)

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}

    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = lightning.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                                    enable_progress_bar=False, enable_model_summary=False,
                                    default_root_dir=str(tmp_path), accelerator="cpu")
        module = Module()
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
        trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = load_mlp(tmp_path / "m.ckpt", "relu")
    assert loaded.format == "state_dict (lightning checkpoint)"
    assert loaded.meta["stripped_prefix"] == "model."
    _same(loaded.mlp, module.model)


def test_training_state_of_plain_values_loads_without_trust(tmp_path) -> None:
    import argparse
    import pathlib

    net = _sequential([4, 8, 1])
    obj = {"model_state_dict": net.state_dict(), "loss": np.float32(0.25), "epoch": np.int64(3),
           "hyper_parameters": {"root": pathlib.Path("/data"), "args": argparse.Namespace(lr=0.1)},
           "optimizer_states": []}
    _same(load_mlp(_save(obj, tmp_path / "m.pt"), "relu").mlp, net)


class Config:
    """A class of the training script: unpickling it would run its code."""


def test_training_state_with_custom_classes_names_the_way_out(tmp_path) -> None:
    obj = {"state_dict": _sequential([4, 8, 1]).state_dict(), "hyper_parameters": Config(), "optimizer_states": []}
    with pytest.raises(ModelLoadError, match=r"Refusing to unpickle.*Config.*ckpt\['state_dict'\]"):
        load_mlp(_save(obj, tmp_path / "m.pt"), "relu")


def test_checkpoint_without_model_names_the_keys(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match=r"holds no model.*'model_state_dict'.*\['epoch', 'optimizer'\]"):
        load_mlp(_save({"epoch": 1, "optimizer": {"lr": 0.1}}, tmp_path / "m.pt"), "relu")


def test_wrapped_state_dict_still_needs_activation(tmp_path) -> None:
    obj, _ = _layouts(_sequential([4, 8, 1]))["tutorial"]
    with pytest.raises(ModelLoadError, match=r"training checkpoint.*--activation"):
        load_mlp(_save(obj, tmp_path / "m.pt"))


# --- safetensors


def test_safetensors_keys_come_back_sorted_and_load_in_order(tmp_path) -> None:
    net = _sequential([4] + [8] * 11 + [1])  # Linear layers at 0, 2, ..., 22: "10" sorts before "2"
    save_file(net.state_dict(), str(tmp_path / "m.safetensors"))
    loaded = load_mlp(tmp_path / "m.safetensors", "relu")
    assert loaded.format == "state_dict (safetensors)"
    _same(loaded.mlp, net)
    assert len(_order_warnings(loaded)) == 1  # 10 layers of 8x8: the names decide, and probe says so


def test_safetensors_prefix_and_chain(tmp_path) -> None:
    net = Shuffled((4, 8, 16, 32, 1))
    save_file({f"module.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "m.st"))
    loaded = load_mlp(tmp_path / "m.st", "relu")
    _same(loaded.mlp, net)
    assert _order_warnings(loaded) == []


def test_safetensors_sizes_checked_before_loading(tmp_path, monkeypatch) -> None:
    save_file({"0.weight": torch.zeros(256, 256), "1.weight": torch.zeros(1, 256)}, str(tmp_path / "m.safetensors"))

    def never(*args, **kwargs):
        raise AssertionError("loaded before the budget check")

    monkeypatch.setattr("safetensors.torch.load_file", never)
    with pytest.raises(ModelLoadError, match="too large to load"):
        load_mlp(tmp_path / "m.safetensors", "relu", max_memory=100_000)


def test_safetensors_integer_tensor_and_bad_header(tmp_path) -> None:
    save_file({"0.weight": torch.zeros(2, 2, dtype=torch.int64)}, str(tmp_path / "i.safetensors"))
    with pytest.raises(ModelLoadError, match=r"cannot analyse.*dtype 'I64'"):
        load_mlp(tmp_path / "i.safetensors", "relu")
    header = json.dumps({"0.weight": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 10**9]}})
    raw = len(header).to_bytes(8, "little") + header.encode() + b"\0" * 16
    (tmp_path / "bad.safetensors").write_bytes(raw)
    with pytest.raises(ModelLoadError, match="malformed.*data_offsets"):
        load_mlp(tmp_path / "bad.safetensors", "relu")


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
    _same(load_mlp(tmp_path / "s.pt", trust=True).mlp, net)
    _same(load_mlp(tmp_path / "s.pt", "relu", trust=True).mlp, net)


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
        load_mlp(_save(net.state_dict(), tmp_path / "sd.pt"), "relu")


# --- the command line


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(200, 4)).astype(np.float32),
             y=rng.normal(size=(200, 1)).astype(np.float32))
    return tmp_path / "d.npz"


@pytest.mark.parametrize("layout", ["safetensors", "tutorial"])
def test_cli_analyze_layouts(tmp_path, data, layout) -> None:
    net = Shuffled((4, 8, 16, 32, 1))
    if layout == "safetensors":
        path = tmp_path / "m.safetensors"
        save_file(net.state_dict(), str(path))
    else:
        path = _save(_layouts(net)["tutorial"][0], tmp_path / "m.pt")
    res = runner.invoke(app, ["analyze", str(path), "--data", str(data), "--activation", "relu", "--json",
                              "--no-circuit"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["model"]["format"] == _layouts(net)["tutorial"][1] if layout == "tutorial" \
        else doc["model"]["format"] == "state_dict (safetensors)"
    assert doc["model"]["widths"] == [4, 8, 16, 32, 1]


def test_cli_layer_order(tmp_path, data) -> None:
    net = Shuffled((4, 32, 32, 32, 1), order=("fc1", "fc3", "fc2", "out"))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    res = runner.invoke(app, ["analyze", str(tmp_path / "sd.pt"), "--data", str(data), "--activation", "relu",
                              "--layer-order", "fc1,fc9", "--no-circuit"])
    assert res.exit_code == 2 and "does not name" in res.output
    res = runner.invoke(app, ["analyze", str(tmp_path / "sd.pt"), "--data", str(data), "--activation", "relu",
                              "--layer-order", "fc1,fc3,fc2,out", "--json", "--no-circuit"])
    assert res.exit_code == 0, res.output
