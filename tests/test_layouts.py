"""State_dicts in every layout training code saves them in: checkpoint dicts, Lightning, prefixes, safetensors.

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
from probe.models import load_mlp
from probe.models.layouts import strip_prefixes
from tests.layout_models import Shuffled, order_warnings, same, save, sequential

runner = CliRunner()


# --- layouts


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
        net = sequential([4, 8, 16, 1]).eval()
    obj, fmt = _layouts(net)[layout]
    loaded = load_mlp(save(obj, tmp_path / "m.pt"), "relu")
    assert loaded.format == fmt
    same(loaded.mlp, net)


def test_real_module_prefixes() -> None:
    net = sequential([4, 8, 1])
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
            self.model = sequential([4, 8, 16, 1])

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
    same(loaded.mlp, module.model)


def test_training_state_of_plain_values_loads_without_trust(tmp_path) -> None:
    import argparse
    import pathlib

    net = sequential([4, 8, 1])
    obj = {"model_state_dict": net.state_dict(), "loss": np.float32(0.25), "epoch": np.int64(3),
           "hyper_parameters": {"root": pathlib.Path("/data"), "args": argparse.Namespace(lr=0.1)},
           "optimizer_states": []}
    same(load_mlp(save(obj, tmp_path / "m.pt"), "relu").mlp, net)


class Config:
    """A class of the training script: unpickling it would run its code."""


def test_training_state_with_custom_classes_names_the_way_out(tmp_path) -> None:
    obj = {"state_dict": sequential([4, 8, 1]).state_dict(), "hyper_parameters": Config(), "optimizer_states": []}
    with pytest.raises(ModelLoadError, match=r"Refusing to unpickle.*Config.*ckpt\['state_dict'\]"):
        load_mlp(save(obj, tmp_path / "m.pt"), "relu")


def test_checkpoint_without_model_names_the_keys(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match=r"holds no model.*'model_state_dict'.*\['epoch', 'optimizer'\]"):
        load_mlp(save({"epoch": 1, "optimizer": {"lr": 0.1}}, tmp_path / "m.pt"), "relu")


def test_wrapped_state_dict_still_needs_activation(tmp_path) -> None:
    obj, _ = _layouts(sequential([4, 8, 1]))["tutorial"]
    with pytest.raises(ModelLoadError, match=r"training checkpoint.*--activation"):
        load_mlp(save(obj, tmp_path / "m.pt"))


# --- safetensors


def test_safetensors_keys_come_back_sorted_and_load_in_order(tmp_path) -> None:
    net = sequential([4] + [8] * 11 + [1])  # Linear layers at 0, 2, ..., 22: "10" sorts before "2"
    save_file(net.state_dict(), str(tmp_path / "m.safetensors"))
    loaded = load_mlp(tmp_path / "m.safetensors", "relu")
    assert loaded.format == "state_dict (safetensors)"
    same(loaded.mlp, net)
    assert order_warnings(loaded) == []  # numeric nn.Sequential indices are the call order: no warning


def test_safetensors_prefix_and_chain(tmp_path) -> None:
    net = Shuffled((4, 8, 16, 32, 1))
    save_file({f"module.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "m.st"))
    loaded = load_mlp(tmp_path / "m.st", "relu")
    same(loaded.mlp, net)
    assert order_warnings(loaded) == []


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
        path = save(_layouts(net)["tutorial"][0], tmp_path / "m.pt")
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


def test_cli_circuit_takes_layer_order(tmp_path, data) -> None:
    net = Shuffled((4, 32, 32, 32, 1), order=("fc1", "fc3", "fc2", "out"))
    path = tmp_path / "m.safetensors"
    save_file(net.state_dict(), str(path))
    res = runner.invoke(app, ["circuit", str(path), "--data", str(data), "--activation", "relu",
                              "--layer-order", "fc1,fc3,fc2", "--json"])
    assert res.exit_code == 2 and "does not name" in res.output
    res = runner.invoke(app, ["circuit", str(path), "--data", str(data), "--activation", "relu",
                              "--layer-order", "fc1,fc3,fc2,out", "--json"])
    assert res.exit_code == 0, res.output
