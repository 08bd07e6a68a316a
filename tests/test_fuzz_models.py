"""Hostile and broken model files: no code runs, no traceback, no hang, nothing materialised.

Every case builds its file here, small (a bomb declares its size, it does not
hold it), and must end in a ModelLoadError from ``load_mlp``. Through the real
command line in a subprocess (under a memory limit and a timeout) it must end
in exit code 2 with one paragraph on stderr and no traceback: one case per
kind of hazard runs there by default (each run is mostly interpreter and
import start-up), every case with ``PROBE_FUZZ_CLI=all``. The TorchScript
payloads write a marker file when their code runs; the marker must not appear
without trust, and does appear with it (so those tests can fail).
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from probe.core.errors import ModelLoadError
from probe.models import load_mlp, module_to_mlp
from probe.models.mlp import CHECKPOINT_FORMAT

CLI_MEMORY = 3 * 2**30  # address space of each CLI run: torch imports fine, a real bomb would not fit
CLI_TIMEOUT = 60
REPO = Path(__file__).resolve().parents[1]


# --- TorchScript payloads: code that runs on load (__setstate__) or when probe checks the conversion


class SetstatePayload(nn.Module):
    """Writes its marker file from ``__setstate__``, which torch.jit.load runs."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.buf = torch.zeros(4, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return self.marker, self.training

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        self.buf = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)  # creates the file
        self.buf.fill_(65)


class ForwardPayload(nn.Module):
    """A genuine 2-3-1 ReLU MLP whose forward writes its marker file."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
        self.marker = marker
        self.buf = torch.zeros(4, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.buf = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)
        self.buf.fill_(66)
        return self.fc2(self.act(self.fc1(x)))


def _impostors() -> tuple[type[nn.Module], type[nn.Module]]:
    """Modules whose class names are Linear and LeakyReLU, without those classes' attributes."""

    class Linear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = 2.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

    class LeakyReLU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.negative_slope = "steep"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x)

    return Linear, LeakyReLU


def _script_fake_linear(path: Path) -> None:
    fake_linear, _ = _impostors()
    torch.jit.save(torch.jit.script(nn.Sequential(fake_linear(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))),
                   str(path))


def _script_fake_leaky(path: Path) -> None:
    _, fake_leaky = _impostors()
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(2, 3), fake_leaky(), nn.Linear(3, 1))), str(path))


# --- builders


def _save(obj: object, path: Path, **kwargs) -> None:
    torch.save(obj, path, **kwargs)


def _good_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"0.weight": torch.randn(3, 2), "0.bias": torch.zeros(3),
            "2.weight": torch.randn(1, 3), "2.bias": torch.zeros(1)}


def _checkpoint(state: object = None, **meta: object) -> dict:
    doc = {"format": CHECKPOINT_FORMAT, "state_dict": _good_state() if state is None else state,
           "widths": [2, 3, 1], "activation": "relu"}
    doc.update(meta)
    return doc


def _with(key: str, value: torch.Tensor) -> dict:
    return _checkpoint({**_good_state(), key: value})


def _ckpt(make: Callable[[], object]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        with warnings.catch_warnings():  # quantized tensors and complex modules warn when created
            warnings.simplefilter("ignore")
            _save(make(), path)
    return build


def _deep_sequential(path: Path) -> None:
    module: nn.Module = nn.Linear(2, 1)
    for _ in range(3000):
        module = nn.Sequential(module)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # pickling recurses once per level
    try:
        _save(module, path)
    finally:
        sys.setrecursionlimit(limit)


def _cycle(path: Path) -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    net.add_module("again", net)
    _save(net, path)


def _deflated(src: Path, path: Path) -> None:
    """Rewrite a torch.save archive with compressed records (torch.load reads those too)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))


def _zip_bomb(path: Path) -> None:
    """8 MiB of zeros in a file of a few KiB."""
    plain = path.with_suffix(".plain")
    _save({"0.weight": torch.zeros(2048, 1024), "0.bias": torch.zeros(2048)}, plain)
    _deflated(plain, path)
    plain.unlink()


def _zip_declaring_8gib(path: Path) -> None:
    """A small archive whose central directory declares two records of almost 4 GiB each."""
    _zip_bomb(path)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        targets = {i.filename for i in zf.infolist() if "/data/" in i.filename}
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        name_len = int.from_bytes(raw[at + 28:at + 30], "little")
        name = raw[at + 46:at + 46 + name_len].decode()
        if name in targets:
            raw[at + 24:at + 28] = (2**32 - 16).to_bytes(4, "little")  # uncompressed size
        at = raw.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(raw))


def _stride0(path: Path) -> None:
    """A 200000 x 200000 float32 view (149 GiB declared) of one stored float."""
    _save(_with("0.weight", torch.zeros(1).as_strided((200_000, 200_000), (0, 0))), path)


# 1 TiB, so that a reader that ran this pickle would fail at once rather than fill the memory
_BYTEARRAY_PICKLE = b"\x80\x02cbuiltins\nbytearray\n\x8a\x06" + (2**40).to_bytes(6, "little") + b"\x85R."


def _bytearray_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", _BYTEARRAY_PICKLE)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")


def _mlp_layers(linears: int) -> dict:
    state = {}
    for i in range(linears):
        state[f"{2 * i}.weight"] = torch.ones(1, 1)
        state[f"{2 * i}.bias"] = torch.zeros(1)
    return _checkpoint(state, widths=[1] * (linears + 1))


def _sequential_layers(linears: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(linears - 1):
        layers += [nn.Linear(2, 2), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(2, 1))


# --- the cases


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], None]
    match: str  # regex the error message must contain
    trust: bool = False
    max_memory: int | None = None  # for load_mlp; the CLI uses its default
    marker: bool = False  # a TorchScript payload writing <name>.marker
    cli: bool = False  # run through the command line by default (one case per kind of hazard)
    cli_args: tuple[str, ...] = field(default=())


def _torchscript(payload: type[nn.Module]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        torch.jit.save(torch.jit.script(payload(str(path.with_suffix(".marker")))), str(path))
    return build


CASES = [
    # 1. TorchScript carries code: refused without trust, detected without running anything
    Case("torchscript_setstate_payload", _torchscript(SetstatePayload), r"TorchScript.*runs when it is loaded",
         marker=True, cli=True),
    Case("torchscript_forward_payload", _torchscript(ForwardPayload), r"TorchScript.*--trust", marker=True),
    Case("torchscript_fake_linear", _script_fake_linear, r"TorchScript Linear .*'weight' is none", trust=True),
    Case("torchscript_fake_leaky_relu", _script_fake_leaky, r"negative_slope is 'steep'", trust=True),
    # 2. malformed but loadable
    Case("checkpoint_state_dict_list", _ckpt(lambda: _checkpoint([1, 2])), r"'state_dict' is a list"),
    Case("checkpoint_state_dict_str", _ckpt(lambda: _checkpoint("weights")), r"'state_dict' is a str"),
    Case("checkpoint_int_keys", _ckpt(lambda: _checkpoint({0: torch.ones(1, 1)})), r"key 0 of type int"),
    Case("state_dict_mixed_keys", _ckpt(lambda: {1: torch.ones(1, 1), "a": torch.ones(1)}), r"key 1 of type int"),
    Case("dict_mixed_keys", _ckpt(lambda: {1: "x", "b": 2}), r"holds no model.*\[1, 'b'\]"),
    Case("checkpoint_scenario_path_int", _ckpt(lambda: _checkpoint(scenario_path=5)), r"'scenario_path' = 5",
         cli=True),
    Case("checkpoint_scenario_list", _ckpt(lambda: _checkpoint(scenario=["x"])), r"'scenario' to be a string"),
    Case("checkpoint_seed_str", _ckpt(lambda: _checkpoint(seed="3")), r"'seed' to be an integer"),
    Case("checkpoint_widths_str", _ckpt(lambda: _checkpoint(widths="2-3-1")), r"'widths' to be a list"),
    Case("checkpoint_widths_contradict", _ckpt(lambda: _checkpoint(widths=[2, 4, 1])), r"widths to match"),
    Case("checkpoint_activation_int", _ckpt(lambda: _checkpoint(activation=7)), r"'activation' = 7"),
    Case("checkpoint_activation_unknown", _ckpt(lambda: _checkpoint(activation="sigmoid")), r"'activation' = 'sigmoid'"),
    Case("checkpoint_hidden_width_0", _ckpt(lambda: _checkpoint(
        {"0.weight": torch.zeros(0, 2), "0.bias": torch.zeros(0), "2.weight": torch.zeros(1, 0),
         "2.bias": torch.zeros(1)}, widths=[2, 0, 1])), r"hidden layer 1 has width 0"),
    Case("sequential_3000_deep", _deep_sequential, r"nested too deeply.*MAX_MODULE_DEPTH", cli=True),
    Case("sequential_containing_itself", _cycle, r"contains itself"),
    Case("meta_tensor", _ckpt(lambda: _with("0.weight", torch.empty(3, 2, device="meta"))), r"meta device"),
    Case("sparse_tensor", _ckpt(lambda: _with("0.weight", _good_state()["0.weight"].to_sparse())), r"sparse"),
    Case("quantized_tensor", _ckpt(lambda: _with("0.weight", torch.quantize_per_tensor(
        _good_state()["0.weight"], 0.1, 0, torch.qint8))), r"quantized tensor"),
    Case("complex_tensor", _ckpt(lambda: _with("0.weight", _good_state()["0.weight"].to(torch.complex64))),
         r"complex tensor"),
    Case("complex_module", _ckpt(lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
                                 .to(torch.complex64)), r"complex tensor"),
    # 3. memory bombs: declared sizes are checked before anything is materialised
    # (the honest bomb is tried under a small budget, --max-memory 1048576)
    Case("zip_deflate_bomb", _zip_bomb, r"too large to load.*at most 1 MiB.*8\.0\d* MiB declared",
         max_memory=2**20, cli=True),
    Case("zip_declaring_8gib", _zip_declaring_8gib, r"too large to load.*at most 4 GiB.*8 GiB declared",
         cli=True),
    Case("stride0_view_149gib", _stride0, r"too large to load.*149 GiB declared", cli=True),
    Case("pickle_bytearray_zip", _bytearray_zip, r"bytearray", cli=True),
    Case("pickle_bytearray_legacy", lambda path: path.write_bytes(_BYTEARRAY_PICKLE), r"bytearray"),
    # 4. too many layers, refused before any layer is built
    Case("mlp_2000_layers", _ckpt(lambda: _mlp_layers(2001)), r"2000 hidden layers.*at most 64.*MAX_HIDDEN_LAYERS",
         cli=True),
    Case("sequential_200_layers", _ckpt(lambda: _sequential_layers(201)), r"200 hidden layers.*MAX_HIDDEN_LAYERS"),
]
IDS = [case.name for case in CASES]
CLI_CASES = [case for case in CASES if case.cli or os.environ.get("PROBE_FUZZ_CLI") == "all"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    out = {}
    for case in CASES:
        out[case.name] = folder / f"{case.name}.pt"
        case.build(out[case.name])
    return out


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CLI_MEMORY, CLI_MEMORY))


def _cli(case: Case, path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "probe", "analyze", str(path), "--scenario", "signed_regression", *case.cli_args]
    if case.trust:
        cmd.append("--trust")
    if case.max_memory is not None:
        cmd += ["--max-memory", str(case.max_memory)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "1000"}
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT, env=env,
                              preexec_fn=_limit_memory, cwd=path.parent)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, -1, "", f"timed out after {CLI_TIMEOUT} s")


@pytest.fixture(scope="module")
def cli_runs(files) -> dict[str, subprocess.CompletedProcess]:
    """Every CLI case, run once, in parallel (each is mostly interpreter start-up)."""
    todo = CLI_CASES
    with ThreadPoolExecutor(max_workers=max(2, min(8, (os.cpu_count() or 2) + 1))) as pool:
        results = pool.map(lambda case: _cli(case, files[case.name]), todo)
        return {case.name: result for case, result in zip(todo, results)}


def _marker(path: Path) -> Path:
    return path.with_suffix(".marker")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_load_mlp_refuses_cleanly(case: Case, files) -> None:
    path = files[case.name]
    with pytest.raises(ModelLoadError) as info:
        load_mlp(path, trust=case.trust, max_memory=case.max_memory)
    message = str(info.value)
    assert re.search(case.match, message, re.S), message
    assert "\n" not in message.strip()  # one paragraph
    if case.marker:
        assert not _marker(path).exists(), "the payload's code ran"


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli_refuses_cleanly(case: Case, files, cli_runs) -> None:
    run = cli_runs[case.name]
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    err = " ".join(run.stderr.split())
    assert err.startswith("error: ") and re.search(case.match, err, re.S), err
    if case.marker:
        assert not _marker(files[case.name]).exists(), "the payload's code ran"


@pytest.mark.parametrize("payload", [SetstatePayload, ForwardPayload])
def test_torchscript_payloads_do_run_with_trust(payload, tmp_path) -> None:
    # the control for the cases above: these files really run code when trusted
    path = tmp_path / "payload.pt"
    _torchscript(payload)(path)
    assert not _marker(path).exists()
    try:
        load_mlp(path, trust=True)
    except ModelLoadError:
        pass  # the setstate payload is no MLP; what matters is that its code ran
    assert _marker(path).exists()


def test_trusted_torchscript_mlp_still_loads(tmp_path) -> None:
    path = tmp_path / "payload.pt"
    net = ForwardPayload(str(_marker(path)))
    torch.jit.save(torch.jit.script(net), str(path))
    mlp = load_mlp(path, trust=True).mlp
    assert mlp.widths == [2, 3, 1]
    x = torch.randn(8, 2)
    with torch.no_grad():
        assert torch.allclose(mlp(x), net.fc2(net.act(net.fc1(x))), atol=1e-6)


def test_budget_is_a_keyword_and_generous_by_default(files, tmp_path) -> None:
    # the honest bomb loads under the default 4 GiB: 8 MiB of zeros is a (dull) model, not an attack
    loaded = load_mlp(files["zip_deflate_bomb"], "relu")
    assert loaded.mlp.widths == [1024, 2048]
    state = _good_state()
    _save(state, tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match="too large to load"):
        load_mlp(tmp_path / "sd.pt", "relu", max_memory=16)


def test_module_to_mlp_refuses_stride0_view_before_copying() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    net[0].weight = nn.Parameter(torch.zeros(1).as_strided((200_000, 200_000), (0, 0)))
    with pytest.raises(ModelLoadError, match="149 GiB declared"):
        module_to_mlp(net)


def test_legacy_format_still_loads(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    _save(net.state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    mlp = load_mlp(tmp_path / "old.pt", "relu").mlp
    x = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.allclose(mlp(x), net(x), atol=1e-6)


def test_no_untrusted_file_reaches_torch_jit_load(files, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load called without trust")

    monkeypatch.setattr(torch.jit, "load", refuse)
    monkeypatch.setattr(torch._C, "import_ir_module", refuse)
    for case in CASES:
        if not case.trust:
            with pytest.raises(ModelLoadError):
                load_mlp(files[case.name], max_memory=case.max_memory)


def test_archive_named_code_is_not_torchscript(tmp_path) -> None:
    # torch.save names the archive's folder after the file: code.pt holds code/data.pkl
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    _save(net.state_dict(), tmp_path / "code.pt")
    with zipfile.ZipFile(tmp_path / "code.pt") as zf:
        assert any(name.startswith("code/") for name in zf.namelist())
    assert load_mlp(tmp_path / "code.pt", "relu").mlp.widths == [3, 4, 1]
