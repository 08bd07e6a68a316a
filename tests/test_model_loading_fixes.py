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


def test_rmsnorm_state_dict_is_refused_as_a_norm(tmp_path) -> None:
    torch.save(_rms_net().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError) as err:
        load_mlp(tmp_path / "sd.pt", "relu")
    text = str(err.value)
    assert "'1.weight'" in text and "normalisation layer" in text and "save_checkpoint" in text


def test_ambiguous_position_read_as_prelu_only_when_told_and_then_warned(tmp_path) -> None:
    """A gain two modules before the next Linear: a norm + activation, or a PReLU + Dropout."""
    torch.save(_rms_net().state_dict(), tmp_path / "rms.pt")
    loaded = load_mlp(tmp_path / "rms.pt", "prelu")  # the user insists: read, but warned
    assert any("also fits a norm" in w for w in loaded.warnings)
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(8, 16), nn.PReLU(16), nn.Dropout(0.1), nn.Linear(16, 1)).eval()
    torch.save(net.state_dict(), tmp_path / "prelu_dropout.pt")
    loaded = load_mlp(tmp_path / "prelu_dropout.pt", "prelu")
    same(loaded.mlp, net)
    assert any("also fits a norm" in w for w in loaded.warnings)


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


def _trained_norms(net: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.LayerNorm, nn.RMSNorm, nn.BatchNorm1d)) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.01, 0.3)  # small variances: the eps matters
    return net.eval()


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.LeakyReLU(0.05), nn.Linear(16, 1)),
    lambda: nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16, eps=1e-2), nn.ReLU(), nn.Linear(16, 1)),
    lambda: nn.Sequential(nn.Linear(6, 16), nn.RMSNorm(16, eps=0.3), nn.ReLU(), nn.Linear(16, 1)),
    lambda: nn.Sequential(nn.Linear(6, 16), nn.RMSNorm(16), nn.ReLU(), nn.Linear(16, 1)),
    lambda: nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16, eps=0.5), nn.ReLU(), nn.Linear(16, 1)),
    lambda: nn.Sequential(nn.Linear(6, 16), nn.ELU(0.3), nn.Linear(16, 1)),
], ids=["layernorm-leaky", "layernorm-eps", "rmsnorm-eps", "rmsnorm-default", "batchnorm-eps", "elu-alpha"])
def test_traced_torchscript_norms_and_parameters_are_read(tmp_path, make) -> None:
    net = _trained_norms(make())
    torch.jit.trace(net, torch.randn(4, 6)).save(str(tmp_path / "traced.pt"))
    loaded = load_mlp(tmp_path / "traced.pt", trust=True)
    same(loaded.mlp, net)


def test_traced_norm_eps_candidates_are_verified(tmp_path, monkeypatch) -> None:
    """When a traced norm's code shows no eps, the candidates are tried and the one that reproduces kept."""
    from probe.models import script_modules, torchscript

    net = _trained_norms(nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16, eps=1e-3), nn.ReLU(), nn.Linear(16, 1)))
    torch.jit.trace(net, torch.randn(4, 6)).save(str(tmp_path / "traced.pt"))
    monkeypatch.setattr(script_modules, "_traced_norm", lambda sub: (False, None, None))
    loaded = load_mlp(tmp_path / "traced.pt", trust=True)
    same(loaded.mlp, net)
    assert loaded.mlp.norms[0].eps == pytest.approx(1e-3)
    assert any("not recorded" in note for note in loaded.mlp.notes)
    monkeypatch.setattr(torchscript, "EPS_CANDIDATES", (1e-6,))
    with pytest.raises(ModelLoadError, match="eps could not be read from the traced file.*script the model"):
        load_mlp(tmp_path / "traced.pt", trust=True)




class _Gelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 16), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.nn.functional.gelu(self.a(x)))


class _Elu(_Gelu):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.nn.functional.elu(self.a(x), 0.3))


class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 16), nn.Linear(16, 16), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.leaky_relu(self.a(x), 0.1)
        return self.c(torch.nn.functional.gelu(self.b(x)))


class _SigmoidOut(_Gelu):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.b(torch.relu(self.a(x))))


class _Squeezed(_Gelu):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))).squeeze(-1)


class _Odd(_Gelu):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.nn.functional.hardswish(self.a(x)))


@pytest.mark.parametrize("cls", [_Gelu, _Elu], ids=["gelu", "elu-0.3"])
def test_torchscript_functional_smooth_activation_is_read(tmp_path, cls) -> None:
    torch.manual_seed(0)
    net = cls().eval()
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    same(load_mlp(tmp_path / "m.pt", trust=True).mlp, net)


def test_torchscript_per_layer_mix_is_named(tmp_path) -> None:
    torch.jit.script(_Mixed()).save(str(tmp_path / "m.pt"))
    with pytest.raises(ModelLoadError, match=r"different activations.*leaky_relu, gelu.*pickled model"):
        load_mlp(tmp_path / "m.pt", trust=True)


def test_torchscript_unknown_activation_fix_lists_the_grammar(tmp_path) -> None:
    from probe.core.variants import GRAMMAR

    torch.jit.script(_Odd()).save(str(tmp_path / "m.pt"))
    with pytest.raises(ModelLoadError) as err:
        load_mlp(tmp_path / "m.pt", trust=True)
    assert GRAMMAR in str(err.value)


def _saved_script(tmp_path, net: nn.Module):
    torch.jit.script(net).save(str(tmp_path / "s.pt"))
    return tmp_path / "s.pt"


def test_output_sigmoid_is_named_in_torchscript_and_pickled_models(tmp_path) -> None:
    from probe.models import module_to_mlp

    net = _SigmoidOut()
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    for load in (lambda: load_mlp(tmp_path / "m.pt", trust=True), lambda: module_to_mlp(net),
                 lambda: module_to_mlp(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3), nn.Softmax(-1))),
                 lambda: load_mlp(_saved_script(tmp_path, nn.Sequential(nn.Linear(3, 4), nn.ReLU(),
                                                                        nn.Linear(4, 1), nn.Sigmoid())), trust=True)):
        with pytest.raises(ModelLoadError, match=r"output activation \((sigmoid|softmax)\).*logits.*--loss") as err:
            load()
        assert "residual" not in str(err.value)


def test_torchscript_final_squeeze_is_noted(tmp_path) -> None:
    torch.manual_seed(0)
    net = _Squeezed().eval()
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    loaded = load_mlp(tmp_path / "m.pt", trust=True)
    assert any("reshape to [N] was dropped" in note for note in loaded.mlp.notes)


def test_not_mlp_default_fix_does_not_blame_residuals() -> None:
    from probe.models.convert import not_mlp

    assert "residual" not in str(not_mlp("a Sigmoid layer"))


def _leaky() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)).eval()


def test_dataparallel_pickle_is_unwrapped_and_noted(tmp_path) -> None:
    net = _leaky()
    torch.save(nn.DataParallel(net), tmp_path / "dp.pt")
    loaded = load_mlp(tmp_path / "dp.pt")
    same(loaded.mlp, net)
    assert any("DataParallel" in note and ".module" in note for note in loaded.mlp.notes)


def test_torch_compile_module_is_unwrapped_in_memory() -> None:
    from probe.models.coerce import as_model

    net = _leaky()
    compiled = torch.compile(net)  # nothing is compiled until it is called; probe never calls the wrapper
    loaded = as_model(compiled)
    same(loaded.mlp, net)
    assert any("torch.compile" in note and "._orig_mod" in note for note in loaded.mlp.notes)


def test_bare_state_dict_refusal_lists_the_grammar(tmp_path) -> None:
    from probe.core.variants import GRAMMAR

    torch.save(_leaky().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError) as err:
        load_mlp(tmp_path / "sd.pt")
    assert GRAMMAR in str(err.value)


def _xy(width: int = 4, n: int = 64):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n, width, generator=gen)
    return X, X.sum(1, keepdim=True)


def test_api_analyze_takes_layer_order_for_a_state_dict_dict_and_file(tmp_path) -> None:
    import probe
    from tests.layout_models import Shuffled

    net = Shuffled((4, 32, 32, 32, 1), order=("fc1", "fc3", "fc2", "out")).eval()
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    X, y = _xy()
    with torch.no_grad():
        want = torch.nn.functional.mse_loss(net(X), y).item()
    for model in (str(tmp_path / "sd.pt"), net.state_dict()):
        result = probe.analyze(model, X, y, activation="relu", layer_order=["fc1", "fc3", "fc2", "out"])
        assert result.to_dict()["loss"]["value"] == pytest.approx(want, rel=1e-4)
        assert not [w for w in result.to_dict()["warnings"] if w.startswith("Layer order")]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_api_as_model_takes_scriptmodule_sklearn_and_state_dict_objects(tmp_path) -> None:
    from probe.models.coerce import as_model

    net = _leaky()
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    loaded = as_model(torch.jit.load(str(tmp_path / "m.pt")))
    same(loaded.mlp, net)
    assert loaded.format == "torchscript" and loaded.path is None
    from_dict = as_model(net.state_dict(), "leaky:0.2")
    same(from_dict.mlp, net)
    assert from_dict.format == "state_dict" and from_dict.path is None

    sklearn = pytest.importorskip("sklearn.neural_network")
    X, y = _xy(6)
    reg = sklearn.MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X.numpy(), y.numpy().ravel())
    loaded = as_model(reg)
    assert loaded.format.startswith("sklearn MLPRegressor")
    with torch.no_grad():
        got = loaded.mlp(X).squeeze(-1).numpy()
    assert abs(got - reg.predict(X.numpy())).max() < 1e-4


@pytest.mark.parametrize("name", ["m.pt", "m.safetensors", "m.skops"])
def test_empty_file_says_empty(tmp_path, name) -> None:
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"empty file \(0 bytes\)") as err:
        load_mlp(tmp_path / name, "relu")
    assert "pickled data" not in str(err.value)


def test_truncated_safetensors_and_text_skops_name_their_format(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file(_leaky().state_dict(), str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match=r"safetensors file.*truncated") as err:
        load_mlp(tmp_path / "cut.safetensors", "relu")
    assert "pickled data" not in str(err.value) and "opcode" not in str(err.value)
    (tmp_path / "m.skops").write_text("not a model\n")
    with pytest.raises(ModelLoadError, match=r"skops file.*not a zip archive") as err:
        load_mlp(tmp_path / "m.skops")
    assert "opcode" not in str(err.value)


def test_custom_class_pickle_refusal_skips_checkpoint_advice_for_a_model(tmp_path) -> None:
    from tests.layout_models import Shuffled

    torch.save(Shuffled((4, 8, 8, 8, 1)), tmp_path / "m.pt")  # a custom class: refused without --trust
    with pytest.raises(ModelLoadError, match="Refusing to unpickle") as err:
        load_mlp(tmp_path / "m.pt")
    assert "ckpt['state_dict']" not in str(err.value)


def test_batchnorm_after_activation_note_matches_the_before_one() -> None:
    from probe.models import module_to_mlp

    torch.manual_seed(0)
    before = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)).eval()
    after = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 1)).eval()
    [note_before] = module_to_mlp(before).notes
    [note_after] = module_to_mlp(after).notes
    assert "(eval-mode running statistics)" in note_before and "(eval-mode running statistics)" in note_after
    assert "analysed folded" in note_before and "analysed folded" in note_after
    for figure in ("neg_grad_share", "neg_grad_fraction", "W·diag(s)", "not the weight the optimiser updates"):
        assert figure in note_after


def test_norm_after_activation_gets_a_specific_fix() -> None:
    from probe.models import module_to_mlp

    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.LayerNorm(8), nn.Linear(8, 1))
    with pytest.raises(ModelLoadError, match=r"after the activation.*Linear -> norm -> activation") as err:
        module_to_mlp(net)
    assert "residual" not in str(err.value)
