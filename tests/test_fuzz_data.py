"""Hostile and broken data files and scenarios: a clean DataError/ScenarioError or a lossless result.

Every input is generated here, small: budgets are triggered with a small
``max_memory`` or by files that *declare* far more than they hold. For each case
the contract is the same: ``load_data``/``load_scenario`` either raise the
project's error (never another exception, never a hang) or return data whose
sample count equals the rows in the file. A few cases also go through the real
command line, in subprocesses with a timeout and a memory limit: exit code 2 and
no traceback.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import resource
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from probe.core.data import load_data
from probe.core.errors import DataError, ScenarioError
from probe.core.limits import (DEFAULT_MAX_MEMORY, MAX_DATA_SEED, MAX_HIDDEN_LAYERS, MAX_LR, MAX_MEMBER_STEPS,
                               MAX_SEEDS)
from probe.experiment.datasets import make_datasets
from probe.experiment.scenarios import load_scenario

KIB = 2**10


def load(path: Path, **kwargs):
    """load_data, allowing only DataError to escape."""
    try:
        return load_data(path, **kwargs)
    except DataError:
        raise
    except BaseException as exc:  # pragma: no cover - the failure this file exists to catch
        pytest.fail(f"load_data({path.name}) raised {type(exc).__name__}: {exc}")


def refused(path: Path, *needles: str, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load(path, **kwargs)
    text = str(info.value)
    for needle in needles:
        assert needle in text, text
    assert "Fix:" in text
    return text


# ---------------------------------------------------------------- CSV: no row is ever lost
def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_bom_without_header_keeps_every_row(tmp_path) -> None:
    path = write(tmp_path, "bom.csv", "\ufeff1,2\n3,4\n5,6\n")
    d = load(path)
    assert d.X.shape == (3, 2) and d.X[0].tolist() == [1.0, 2.0]


def test_csv_bom_with_header_finds_the_first_name(tmp_path) -> None:
    d = load(write(tmp_path, "bomh.csv", "\ufeffy,a\n1,2\n3,4\n"), target="y")
    assert d.y[:, 0].tolist() == [1.0, 3.0] and d.X[:, 0].tolist() == [2.0, 4.0]


def test_csv_empty_cell_in_first_row_is_refused_not_dropped(tmp_path) -> None:
    refused(write(tmp_path, "e1.csv", "1,,3\n4,5,6\n7,8,9\n"), "Line 1", "empty cell", "column 2")


def test_csv_empty_cell_in_a_data_row_names_line_and_column(tmp_path) -> None:
    refused(write(tmp_path, "e2.csv", "a,b,c\n1,2,3\n4,,6\n"), "Line 3", "empty cell", "column 2 ('b')")


def test_csv_duplicate_names_are_refused_and_named(tmp_path) -> None:
    path = write(tmp_path, "dup.csv", "x,y,x\n1,2,3\n")
    refused(path, "'x' in columns 1, 3")
    refused(path, "'x' in columns 1, 3", target="x")  # never silently one of them


@pytest.mark.parametrize("text,rows", [
    ("1,2\n3,4\n", 2),                        # no header
    ("a,b\n1,2\n3,4\n", 2),                   # header
    ("\n\na,b\n\n1,2\n   \n3,4\n\n", 2),       # blank and whitespace-only lines are not rows
    ("1,2\r3,4\r5,6\r", 3),                   # old Mac line endings
    ("1,2\r\n3,4\r\n", 2),                    # Windows line endings
    ("nan,2\n3,4\n", 2),                      # nan is a number: data, refused later by check_data
    ("1, 2\n 3 ,4", 2),                       # spaces around numbers, no final newline
    ("1e3,-inf\n3,4\n", 2),
    ("a,\n1,2\n", 1),                         # a header may have an empty name
])
def test_csv_sample_count_equals_data_rows(tmp_path, text, rows) -> None:
    assert load(write(tmp_path, "ok.csv", text)).X.shape[0] == rows


@pytest.mark.parametrize("text,needles", [
    ("a,b,c\n1,2\n3,4\n", ["header", "3 cells"]),          # header wider than the rows
    ("1,2\n3\n", ["Line 2", "1 cell"]),                      # ragged
    ("1,2\n#3,4\n", ["Line 2", "not a number"]),             # no silent comment lines
    ('1,2\n"3",4\n', ["Line 2", "not a number"]),            # no quoting
    ("1,2\n3,4,\n", ["Line 2"]),                             # trailing comma
    ("1;2\n3;4\n", ["Line 2"]),                              # wrong delimiter: header '1;2', then a bad row
    ("", ["empty"]),
    ("\n \n", ["empty"]),
    ("1e300,1\n", ["too large for float32"]),                # float64 beyond float32, not a silent inf
])
def test_csv_broken_files_are_refused(tmp_path, text, needles) -> None:
    refused(write(tmp_path, "bad.csv", text), *needles)


def test_csv_not_utf8_and_unknown_target(tmp_path) -> None:
    refused(write(tmp_path, "latin.csv", "caf\xe9,b\n1,2\n", encoding="latin-1"), "UTF-8")
    refused(write(tmp_path, "t.csv", "a,b\n1,2\n"), "Column 'z'", target="z")


def test_csv_memory_budget(tmp_path) -> None:
    path = write(tmp_path, "big.csv", "1,2,3,4\n" * 2000)
    refused(path, "too large", max_memory=4 * KIB)         # 8 KiB file over a 4 KiB budget
    refused(path, "2000 rows x 4 columns", max_memory=20 * KIB)  # 2000 x 4 x 12 bytes declared
    assert load(path, max_memory=200 * KIB).X.shape == (2000, 4)


# ---------------------------------------------------------------- .npy / .npz: declared sizes, dtypes
def npy_header_only(path: Path, shape: tuple, descr: str = "<f8", payload: bytes = b"") -> Path:
    """A .npy file whose header declares ``shape`` but which holds only ``payload``."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False, "shape": shape})
        fh.write(payload)
    return path


def test_npy_declared_shape_is_refused_before_loading(tmp_path) -> None:
    path = npy_header_only(tmp_path / "bomb.npy", (10**9, 10**3))
    refused(path, "too large", "(1000000000, 1000)")  # default budget, nothing allocated
    refused(npy_header_only(tmp_path / "small.npy", (100, 100)), "too large", max_memory=KIB)


def test_npy_truncated_and_garbage(tmp_path) -> None:
    refused(npy_header_only(tmp_path / "trunc.npy", (100, 4), payload=b"\0" * 64), "Could not read")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY\x01")
    refused(tmp_path / "junk.npy", "not a NumPy array")
    (tmp_path / "hdr.npy").write_bytes(b"\x93NUMPY\x01\x00\xff\x00{'descr': '<f8'")
    refused(tmp_path / "hdr.npy", "Could not read")
    (tmp_path / "text.npy").write_text("1,2,3")
    refused(tmp_path / "text.npy", "not a NumPy array")


@pytest.mark.parametrize("arr,needle", [
    (np.ones((3, 2), dtype=np.complex64), "complex"),
    (np.ones((3, 2), dtype=np.complex128), "complex"),
    (np.array([["a", "b"]]), "not numeric"),
    (np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]), "not numeric"),
    (np.array(["2024-01-01"], dtype="datetime64[D]"), "not numeric"),
    (np.ones((2, 2, 2)), "wrong shape"),
    (np.float64(3.0), "wrong shape"),
])
def test_npy_non_real_or_misshapen_arrays(tmp_path, arr, needle) -> None:
    np.save(tmp_path / "a.npy", arr)
    refused(tmp_path / "a.npy", needle)
    np.savez(tmp_path / "a.npz", X=arr)
    refused(tmp_path / "a.npz", needle)


def test_npy_object_arrays_never_unpickle(tmp_path) -> None:
    np.save(tmp_path / "o.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    refused(tmp_path / "o.npy", "Python objects")


def test_npy_unusual_but_real_dtypes_load(tmp_path) -> None:
    for dtype in (">f8", "<f2", "<i8", "|b1", "<u2"):
        np.save(tmp_path / "a.npy", np.arange(6).reshape(3, 2).astype(dtype))
        d = load(tmp_path / "a.npy")
        assert d.X.dtype == torch.float32 and d.X.shape == (3, 2)
    np.save(tmp_path / "f.npy", np.asfortranarray(np.arange(6.0).reshape(3, 2)))
    assert load(tmp_path / "f.npy").X[1].tolist() == [2.0, 3.0]


def test_npz_compressed_member_is_checked_at_its_declared_size(tmp_path) -> None:
    np.savez_compressed(tmp_path / "z.npz", X=np.zeros((1000, 500)))  # ~4 MB of zeros in a few KiB
    assert (tmp_path / "z.npz").stat().st_size < 64 * KIB
    refused(tmp_path / "z.npz", "too large", "(1000, 500)", max_memory=256 * KIB)
    with zipfile.ZipFile(tmp_path / "h.npz", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 8)})
        zf.writestr("X.npy", buf.getvalue())
    refused(tmp_path / "h.npz", "too large")  # default budget


def test_npz_malformed_members(tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as zf:
        zf.writestr("X", b"\x00" * 32)  # np.load would hand back these bytes
    refused(tmp_path / "raw.npz", "not a NumPy array")
    buf = io.BytesIO()
    np.save(buf, np.ones((2, 2)))
    with zipfile.ZipFile(tmp_path / "two.npz", "w") as zf:
        zf.writestr("X.npy", buf.getvalue())
        zf.writestr("X", buf.getvalue())
    refused(tmp_path / "two.npz", "two arrays named X")
    np.savez(tmp_path / "len.npz", X=np.ones((4, 2)), y=np.ones(3))
    refused(tmp_path / "len.npz", "different lengths")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04garbage")
    refused(tmp_path / "trunc.npz", "Could not read")
    np.savez(tmp_path / "ok.npz", X=np.ones((4, 2)))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:-40])
    refused(tmp_path / "cut.npz", "Could not read")


# ---------------------------------------------------------------- .pt
class RunsCode:
    """Pickles to a call of Path.touch: weights_only must refuse it without running it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pt_stride0_view_is_refused_before_any_copy(tmp_path) -> None:
    torch.save({"X": torch.zeros(1).expand(10**8, 8)}, tmp_path / "s0.pt")  # 4 bytes stored
    assert (tmp_path / "s0.pt").stat().st_size < 4 * KIB
    refused(tmp_path / "s0.pt", "too large", "(100000000, 8)", max_memory=2**20)
    torch.save({"X": torch.zeros(1, dtype=torch.float64).expand(10**9, 8)}, tmp_path / "s0big.pt")
    refused(tmp_path / "s0big.pt", "too large")  # 89 GiB declared: over the default 4 GiB


def test_pt_small_stride0_view_is_materialised(tmp_path) -> None:
    torch.save({"X": torch.arange(3.0).expand(5, 3), "y": torch.ones(1).expand(5)}, tmp_path / "b.pt")
    d = load(tmp_path / "b.pt")
    assert d.X.is_contiguous() and d.X.shape == (5, 3) and d.y.shape == (5, 1)


def test_pt_compressed_records_count_uncompressed(tmp_path) -> None:
    torch.save({"X": torch.zeros(2**19)}, tmp_path / "plain.pt")  # a 2 MiB record
    with zipfile.ZipFile(tmp_path / "plain.pt") as src, \
            zipfile.ZipFile(tmp_path / "z.pt", "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    assert (tmp_path / "z.pt").stat().st_size < 64 * KIB
    refused(tmp_path / "z.pt", "too large", "uncompressed", max_memory=2**20)
    assert load(tmp_path / "z.pt", max_memory=2**24).X.shape == (2**19, 1)


def test_pt_record_declaring_more_than_it_holds(tmp_path) -> None:
    """A pickle that declares a 40 GB storage over a 4-byte record: refused, nothing allocated."""
    class FakeStorage:
        pass

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2,
                    (FakeStorage(), 0, (10**10,), (1,), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 10**10) if isinstance(obj, FakeStorage) else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"X": Tensor()})
    with zipfile.ZipFile(tmp_path / "lie.pt", "w") as zf:
        zf.writestr("a/data.pkl", buf.getvalue())
        zf.writestr("a/byteorder", "little")
        zf.writestr("a/version", "3\n")
        zf.writestr("a/data/0", b"\0" * 4)
    refused(tmp_path / "lie.pt", "Could not read")


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns while rebuilding quantized tensors
@pytest.mark.parametrize("make,needle", [
    (lambda: torch.zeros(3, 2, dtype=torch.complex64), "complex"),
    (lambda: [[1j, 2.0]], "complex"),
    (lambda: torch.eye(3).to_sparse(), "sparse"),
    (lambda: torch.eye(3).to_sparse_csr(), "sparse"),
    (lambda: torch.empty(3, 2, device="meta"), "meta"),
    (lambda: torch.quantize_per_tensor(torch.ones(3, 2), 0.1, 0, torch.qint8), "quantized"),
    (lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]), "nested"),
    (lambda: "not data", "not numeric"),
    (lambda: [[1.0, 2.0], [3.0]], "not numeric"),
    (lambda: torch.ones(2, 2, 2), "wrong shape"),
    (lambda: torch.tensor([[1e300]], dtype=torch.float64), "too large for float32"),
])
def test_pt_non_real_tensors_are_refused(tmp_path, make, needle) -> None:
    with warnings.catch_warnings():  # beta/deprecated tensor kinds warn when made
        warnings.simplefilter("ignore")
        torch.save({"X": make()}, tmp_path / "t.pt")
    refused(tmp_path / "t.pt", needle)


def test_pt_code_is_never_run(tmp_path) -> None:
    marker = tmp_path / "ran"
    torch.save({"X": RunsCode(marker)}, tmp_path / "evil.pt")
    refused(tmp_path / "evil.pt", "Could not read")
    assert not marker.exists()


def test_pt_other_shapes_of_wrong(tmp_path) -> None:
    torch.save({"X": torch.ones(2, 2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    refused(tmp_path / "legacy.pt", "zip format")
    torch.save(torch.ones(2, 2), tmp_path / "bare.pt")
    refused(tmp_path / "bare.pt", "not a data dict")
    torch.save({"inputs": torch.ones(2, 2)}, tmp_path / "nox.pt")
    refused(tmp_path / "nox.pt", "not a data dict")
    torch.save({"X": torch.ones(4, 2)}, tmp_path / "ok.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:300])
    refused(tmp_path / "cut.pt", "Could not read")
    refused(tmp_path / "ok.pt", "only applies to .csv", target="y")
    for dtype in (torch.bfloat16, torch.float16, torch.int64, torch.bool, torch.uint8):
        torch.save({"X": torch.ones(4, 2, dtype=dtype)}, tmp_path / "d.pt")
        assert load(tmp_path / "d.pt").X.shape == (4, 2)


def test_bad_budget_argument(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.ones((2, 2)))
    for bad in (0, -1, 1.5, True, "4GiB"):
        refused(tmp_path / "a.npy", "memory limit", max_memory=bad)


# ---------------------------------------------------------------- scenarios
GOOD = """\
name = "fuzz"
description = "a small scenario"
[data]
generator = "signed"
n_samples = 64
n_features = 3
n_eval = 32
[model]
hidden = [4, 4]
init = "default"
[train]
optimizer = "adam"
lr = 0.01
batch_size = 16
epochs = 1
target_loss = 0.5
seeds = 2
"""


def scenario_file(tmp_path: Path, old: str = "", new: str = "", text: str | None = None) -> Path:
    if text is None:
        assert old in GOOD, old
        text = GOOD.replace(old, new, 1)
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def scenario_refused(path_or_name, *needles: str, **kwargs) -> str:
    try:
        sc = load_scenario(path_or_name, **kwargs)
        make_datasets(sc)
    except ScenarioError as exc:
        text = str(exc)
        for needle in needles:
            assert needle in text, text
        assert "Fix:" in text
        return text
    except BaseException as exc:  # pragma: no cover
        pytest.fail(f"{type(exc).__name__} instead of ScenarioError: {exc}")
    pytest.fail("the scenario was accepted")


DEEP = "[" * 50000 + "]" * 50000


@pytest.mark.parametrize("old,new,needles", [
    ("n_samples = 64", "n_samples = 1000000000000", ["data.n_samples", "4 GiB"]),
    ("n_samples = 64", "n_samples = 4096", None),  # control: accepted
    ("n_samples = 64\nn_features = 3", "n_samples = 4096\nn_features = 1000000", ["data.n_features", "15.4 GiB"]),
    ("n_features = 3", "n_features = 1000000\nn_eval_ = 0", ["data.n_eval_"]),       # typo in a key
    ("seeds = 2", "seeds = 1000000", ["train.seeds", f"{MAX_SEEDS}"]),
    ("hidden = [4, 4]", "hidden = [10000000]", ["model.hidden", "10,000,000"]),
    ("hidden = [4, 4]", "hidden = [4, 0]", ["model.hidden", "widths >= 1"]),
    ("hidden = [4, 4]", "hidden = []", ["model.hidden"]),
    ("hidden = [4, 4]", f"hidden = [{', '.join(['2'] * (MAX_HIDDEN_LAYERS + 1))}]",
     ["model.hidden", f"at most {MAX_HIDDEN_LAYERS} hidden layers"]),
    ("hidden = [4, 4]", "hidden = [1" + "0" * 40 + "]", ["model.hidden", "digits"]),
    ("hidden = [4, 4]", f"hidden = {DEEP}", ["nests", "too deeply"]),
    ("epochs = 1", "epochs = 1000000000", ["train.epochs", "20,000,000"]),
    ("epochs = 1", "epochs = " + "1" + "0" * 30, ["train.epochs", "20,000,000"]),
    ("seeds = 2", "seeds = 1" + "0" * 5000, ["could not be parsed", "digits"]),  # beyond Python's int parsing
    ("lr = 0.01", "lr = 1e308", ["train.lr", "at most 1e+06"]),
    ("lr = 0.01", "lr = 1" + "0" * 400, ["train.lr", "digits"]),
    ("lr = 0.01", "lr = inf", ["train.lr", "finite"]),
    ("lr = 0.01", "lr = nan", ["train.lr", "finite"]),
    ("lr = 0.01", "lr = 0", ["train.lr"]),
    ("lr = 0.01", "lr = -1e-3", ["train.lr"]),
    ("target_loss = 0.5", "target_loss = -inf", ["train.target_loss"]),
    ("n_eval = 32", "n_eval = 32\nseed = 1" + "0" * 30, ["data.seed", str(MAX_DATA_SEED)]),
    ("n_eval = 32", "n_eval = 32\nnoise = 1e300", ["data.noise"]),
    ("n_eval = 32", "n_eval = 32\nnoise = nan", ["data.noise"]),
    ("batch_size = 16", "batch_size = 0", ["train.batch_size"]),
    ("batch_size = 16", "batch_size = 16.5", ["train.batch_size"]),
    ("seeds = 2", "seeds = true", ["train.seeds"]),
    ("[data]", "[[data]]", ["[data]"]),
    ('name = "fuzz"', "name = 5", ["'name'"]),
])
def test_scenario_values_are_refused_up_front(tmp_path, old, new, needles) -> None:
    path = scenario_file(tmp_path, old, new)
    if needles is None:
        sc = load_scenario(path)
        assert make_datasets(sc)[0].X.shape == (4096, 3)
        return
    scenario_refused(path, *needles)


@pytest.mark.parametrize("text,needle", [
    ("name = \n", "not valid TOML"),
    ("\xff\xfe garbage", "not valid TOML"),
    ("x = " + DEEP, "too deeply"),
    ("[" * 50000, "not valid TOML"),
    ("x = {" * 3000 + "}" * 3000, ""),
    ("a" * 10, "not valid TOML"),
])
def test_scenario_files_that_do_not_parse(tmp_path, text, needle) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    scenario_refused(path, needle)


def test_scenario_file_size_and_strange_paths(tmp_path) -> None:
    scenario_refused(scenario_file(tmp_path, text=GOOD + "# " + "x" * 2**20 + "\n"), "too large")
    scenario_refused(tmp_path / "missing.toml", "does not exist")
    scenario_refused(tmp_path, "does not exist")  # a folder
    scenario_refused("x" * 5000 + ".toml")  # longer than a file name may be
    scenario_refused("no\0such", "Unknown scenario")


def test_scenario_memory_budget(tmp_path) -> None:
    path = scenario_file(tmp_path)
    scenario_refused(path, "data.n_samples", "max-memory", max_memory=KIB)  # 1152 bytes of data
    text = scenario_refused(path, "train.seeds", max_memory=8 * KIB)  # the data fit, training does not
    assert "memory budget" in text
    sc = load_scenario(path, max_memory=2**20)
    assert sc.max_memory == 2**20 and make_datasets(sc)[0].X.shape == (64, 3)
    with pytest.raises(ScenarioError, match="n_samples"):
        make_datasets(sc, max_memory=KIB)
    with pytest.raises(ScenarioError, match="memory limit"):
        load_scenario(path, max_memory=-5)


def test_overrides_are_bounded() -> None:
    sc = load_scenario("signed_regression")
    for kwargs, needles in [
        ({"seeds": 10**6}, ["train.seeds", "--seeds"]),
        ({"seeds": 0}, ["train.seeds"]),
        ({"seeds": True}, ["train.seeds"]),
        ({"seeds": 2.0}, ["train.seeds"]),
        ({"epochs": 10**9}, ["train.epochs", "at most 62500"]),
        ({"epochs": 10**30}, ["train.epochs"]),
        ({"epochs": -1}, ["train.epochs"]),
        ({"seeds": MAX_SEEDS, "epochs": 1000}, ["train.epochs"]),
    ]:
        with pytest.raises(ScenarioError) as info:
            sc.with_overrides(**kwargs)
        assert all(n in str(info.value) for n in needles), str(info.value)
    big = sc.with_overrides(seeds=MAX_SEEDS, epochs=MAX_MEMBER_STEPS // (MAX_SEEDS * 32))
    assert big.train.seeds * big.member_steps() <= MAX_MEMBER_STEPS
    with pytest.raises(ScenarioError, match="train.seeds"):  # seeds alone pushes the steps over
        sc.with_overrides(epochs=60000).with_overrides(seeds=20)


def test_whole_run_check_for_compare() -> None:
    sc = load_scenario("signed_regression")
    assert sc.member_steps() == 20 * 32 and sc.member_parameters() == (8 + 1) * 32 + 33 * 32 + 33
    sc.check_run(5)
    long = sc.with_overrides(epochs=60000)  # 10 seeds x 60000 x 32 = 19.2 M steps: one variant fits
    with pytest.raises(ScenarioError, match="2 variants x"):
        long.check_run(2)
    with pytest.raises(ScenarioError, match="memory budget"):
        sc.check_run(2, max_memory=4 * 2**20)


@pytest.mark.parametrize("old,new", [
    ("lr = 0.01", f"lr = {MAX_LR:g}"),                          # diverges: a result, not an error
    ('optimizer = "adam"\nlr = 0.01', 'optimizer = "sgd"\nlr = 1e6\nmomentum = 1e300'),
    ("batch_size = 16", "batch_size = " + "9" * 30),          # one batch per epoch
    ("n_eval = 32", f"n_eval = 32\nseed = {MAX_DATA_SEED}"),
    ("target_loss = 0.5", "target_loss = 1e308"),
    ("n_eval = 32", "n_eval = 32\nnoise = 1e30"),
])
def test_extreme_but_legal_values_train_without_error(tmp_path, old, new) -> None:
    from probe.compare.run import compare_variants as compare

    result = compare(["relu", "leaky"], scenario_file(tmp_path, old, new), seeds=1, epochs=2, circuits=False)
    assert len(result.runs) == 2
    json.dumps(result.to_dict(), default=str)


def test_shipped_scenarios_within_limits() -> None:
    from probe.experiment.scenarios import list_scenarios

    for name, _ in list_scenarios():
        sc = load_scenario(name)
        sc.check_run(5)  # probe study runs five variants
        assert sc.data_bytes() + 50 * sc.member_bytes() < DEFAULT_MAX_MEMORY


# ---------------------------------------------------------------- the command line
MEMORY_LIMIT = 2 * 2**30  # far below every bomb below; the data that pass the checks need a few MiB


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    from probe.models import save_checkpoint
    from probe.models.mlp import MLP

    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    save_checkpoint(MLP.build([2, 4, 1], "relu"), d / "m.pt")
    (d / "bom.csv").write_bytes("\ufeff1,2\n3,4\n5,6\n".encode())
    (d / "empty.csv").write_text("1,,3\n4,5,6\n")
    torch.save({"X": torch.zeros(1, dtype=torch.float64).expand(10**9, 2)}, d / "s0.pt")  # 22 GiB declared
    (d / "deep.toml").write_text(GOOD.replace("hidden = [4, 4]", f"hidden = {DEEP}"))
    (d / "epochs.toml").write_text(GOOD.replace("epochs = 1", "epochs = " + "1" + "0" * 30))
    return d


def _run_all(cases: dict, limit: int) -> dict:
    """Every command at once (each pays for importing torch), under a timeout and a memory limit."""
    def pre() -> None:
        resource.setrlimit(limit, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    procs = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env, preexec_fn=pre) for name, (cmd, _, _) in cases.items()}
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += "\n[timed out]"
        results[name] = (proc.returncode, out, err)
    return results


def test_cli_refuses_hostile_inputs_cleanly(cli_files) -> None:
    d = cli_files
    analyze = [sys.executable, "-m", "probe", "analyze", str(d / "m.pt"), "--no-circuit", "--data"]
    compare = [sys.executable, "-m", "probe", "compare", "relu", "leaky", "--no-circuit", "--scenario"]
    cases = {
        "bom csv, no header": (analyze + [str(d / "bom.csv"), "--json"], 0, '"samples": 3'),
        "empty cell in the first row": (analyze + [str(d / "empty.csv")], 2, "Line 1"),
        "stride-0 .pt view": (analyze + [str(d / "s0.pt")], 2, "too large"),
        "arrays nested 50000 deep": (compare + [str(d / "deep.toml")], 2, "too deeply"),
        "epochs = 10**30": (compare + [str(d / "epochs.toml")], 2, "train.epochs"),
        "--seeds 1000000": (compare + ["signed_regression", "--seeds", "1000000"], 2, "train.seeds"),
    }
    results = _run_all(cases, resource.RLIMIT_AS)
    if results["bom csv, no header"][0] != 0:  # torch reserves more address space here: limit the heap
        results = _run_all(cases, resource.RLIMIT_DATA)
    failures = []
    for name, (code, out, err) in results.items():
        _, expected, needle = cases[name]
        text = " ".join((out + err).split())  # rich wraps long lines
        if code != expected or "Traceback" in err or needle not in text:
            failures.append(f"{name}: exit {code}, stderr: {err[-800:]} stdout: {out[-300:]}")
    assert not failures, "\n".join(failures)
