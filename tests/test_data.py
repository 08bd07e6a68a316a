"""Data files of every supported format, and clear errors for bad data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.core.data import check_data, load_data
from probe.core.errors import DataError


def test_formats_agree(tmp_path) -> None:
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([1.0, -1.0, 2.0, 0.5], dtype=np.float32)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.save(tmp_path / "d.npy", X)
    torch.save({"X": torch.tensor(X), "y": torch.tensor(y)}, tmp_path / "d.pt")
    with open(tmp_path / "d.csv", "w") as fh:
        fh.write("a,b,target,c\n")
        for row, t in zip(X, y):
            fh.write(f"{row[0]},{row[1]},{t},{row[2]}\n")
    for name in ("d.npz", "d.pt"):
        d = load_data(tmp_path / name)
        assert torch.equal(d.X, torch.tensor(X)) and torch.equal(d.y[:, 0], torch.tensor(y))
    assert load_data(tmp_path / "d.npy").y is None
    d = load_data(tmp_path / "d.csv", target="target")
    assert torch.equal(d.X, torch.tensor(X)) and torch.equal(d.y[:, 0], torch.tensor(y))


def test_bad_data_is_explained(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "missing.npz")
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(DataError, match="Unknown data format"):
        load_data(tmp_path / "x.txt")
    np.savez(tmp_path / "noX.npz", inputs=np.ones((2, 2)))
    with pytest.raises(DataError, match="no array named X"):
        load_data(tmp_path / "noX.npz")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="Column 'y' is not"):
        load_data(tmp_path / "bad.csv", target="y")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="Could not read"):
        load_data(tmp_path / "trunc.npz")


def test_check_data_width_and_nan(tmp_path) -> None:
    np.savez(tmp_path / "d.npz", X=np.ones((5, 3)))
    d = load_data(tmp_path / "d.npz")
    with pytest.raises(DataError, match="4 input features") as info:
        check_data(d, 4, 1)
    assert "3 columns" in str(info.value)
    X = np.ones((5, 3))
    X[2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", X=X)
    with pytest.raises(DataError, match="NaN"):
        check_data(load_data(tmp_path / "nan.npz"), 3, 1)


def test_csv_header_rule_and_budget(tmp_path) -> None:
    # a header only when a cell is non-empty and not a number; every other line is a sample
    (tmp_path / "h.csv").write_text("\ufeffnan,1\n2,3\n", encoding="utf-8")
    assert load_data(tmp_path / "h.csv").X.shape == (2, 2)
    (tmp_path / "e.csv").write_text("1,,2\n3,4,5\n")
    with pytest.raises(DataError, match="Line 1 .* empty cell in column 2"):
        load_data(tmp_path / "e.csv")
    with pytest.raises(DataError, match="too large"):
        load_data(tmp_path / "h.csv", max_memory=8)
