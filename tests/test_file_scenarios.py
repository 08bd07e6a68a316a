"""Scenarios on the user's own data file, and probe compare --data."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from probe.cli.app import app
from probe.compare.run import compare_variants
from probe.core.errors import DataError, ScenarioError
from probe.experiment.datasets import make_datasets
from probe.experiment.scenarios import load_scenario

runner = CliRunner()

TRAIN = """
[model]
hidden = [8]
init = "default"
[train]
optimizer = "adam"
lr = 0.01
batch_size = 32
epochs = 2
target_loss = 0.2
seeds = 2
"""


def _write_csv(path, n: int = 100, label: bool = False) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] > 0).astype(int) if label else 3 * X[:, 0] - X[:, 1] + 10
    with open(path, "w") as f:
        f.write("id,a,colour,b,c,y\n")
        for i in range(n):
            f.write(f"{i},{X[i, 0]:.6f},{'red' if i % 2 else 'blue'},{X[i, 1]:.6f},{X[i, 2]:.6f},{y[i]}\n")
    return np.column_stack([X, y])


def _scenario(tmp_path, data: str, name: str = "own") -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "own data"\n[data]\n{data}\n{TRAIN}')
    return str(path)


def test_csv_with_id_and_categorical_columns_dropped(tmp_path) -> None:
    table = _write_csv(tmp_path / "d.csv")
    sc = load_scenario(_scenario(tmp_path, 'path = "d.csv"\ntarget = "y"\ndrop = ["id", "colour"]\n'
                                           'standardize = false'))
    train, evaluation = make_datasets(sc)
    assert sc.data.n_features == 3 and sc.data.n_samples == 80 and sc.data.n_eval == 20
    # the split is a seeded permutation of the file's rows: every row lands in one split, unchanged
    rows = torch.cat([torch.cat([train.X, train.y], 1), torch.cat([evaluation.X, evaluation.y], 1)])
    got = rows.numpy().astype(np.float64)
    got, want = got[np.argsort(got[:, 0])], table[np.argsort(table[:, 0])]
    assert np.allclose(got, want, atol=1e-4)
    again = load_scenario(_scenario(tmp_path, 'path = "d.csv"\ntarget = "y"\ndrop = ["id", "colour"]\n'
                                              'standardize = false', "again"))
    assert torch.equal(make_datasets(again)[1].X, evaluation.X)


def test_standardize_both_uses_training_statistics(tmp_path) -> None:
    _write_csv(tmp_path / "d.csv")
    sc = load_scenario(_scenario(tmp_path, 'path = "d.csv"\ntarget = "y"\ndrop = ["id", "colour"]\n'
                                           'standardize = "both"'))
    train, evaluation = make_datasets(sc)
    assert torch.allclose(train.X.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(train.y.std(0), torch.ones(1), atol=1e-5)
    assert abs(float(evaluation.y.mean())) < 0.5  # the same shift, not the evaluation set's own


def test_text_column_not_dropped_is_refused_by_name(tmp_path) -> None:
    _write_csv(tmp_path / "d.csv")
    with pytest.raises(DataError, match="colour.*drop"):
        load_scenario(_scenario(tmp_path, 'path = "d.csv"\ntarget = "y"\ndrop = ["id"]'))


@pytest.mark.parametrize("data, match", [
    ('path = "d.csv"\ntarget = "y"\ngenerator = "signed"', "unknown key 'data.generator'"),
    ('path = "d.csv"\ntarget = "nope"\ndrop = ["id", "colour"]', "Column 'nope'"),
    ('path = "d.csv"\ntarget = "y"\ndrop = ["idd"]', "drop column 'idd'"),
    ('path = "d.csv"\ntarget = "y"\neval_fraction = 1.5', "eval_fraction"),
    ('path = "missing.csv"\ntarget = "y"', "does not exist"),
])
def test_bad_file_scenarios_name_the_key(tmp_path, data: str, match: str) -> None:
    _write_csv(tmp_path / "d.csv")
    with pytest.raises((ScenarioError, DataError), match=match):
        load_scenario(_scenario(tmp_path, data))


def test_classification_targets_train_with_cross_entropy(tmp_path) -> None:
    _write_csv(tmp_path / "d.csv", label=True)
    sc = load_scenario(_scenario(tmp_path, 'path = "d.csv"\ntarget = "y"\ndrop = ["id", "colour"]\n'
                                           'standardize = "both"'))
    assert sc.data.source.task == "classification" and sc.data.n_classes == 2
    assert sc.train.loss == "cross_entropy" and sc.widths[-1] == 2
    train, _ = make_datasets(sc)
    assert set(train.y.flatten().tolist()) == {0.0, 1.0}  # labels are never standardised
    path = _scenario(tmp_path, 'path = "d.csv"\ntarget = "y"\ndrop = ["id", "colour"]\ntask = "regression"')
    text = open(path).read().replace("target_loss = 0.2", "target_accuracy = 0.9")
    (tmp_path / "acc.toml").write_text(text)
    with pytest.raises(ScenarioError, match="target_accuracy"):  # an accuracy needs a classifier
        load_scenario(tmp_path / "acc.toml")
    (tmp_path / "both.toml").write_text(text.replace('task = "regression"', "").replace(
        "target_accuracy = 0.9", "target_accuracy = 0.9\ntarget_loss = 0.2"))
    with pytest.raises(ScenarioError, match="exactly one"):
        load_scenario(tmp_path / "both.toml")
    sc = load_scenario(_scenario(tmp_path, 'path = "d.csv"\ntarget = "y"\ndrop = ["id", "colour"]\n'
                                           'task = "regression"'))
    assert sc.data.source.task == "regression"


def test_npz_with_eval_path(tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(60, 4, generator=gen), torch.randn(60, 1, generator=gen)
    np.savez(tmp_path / "train.npz", X=X.numpy(), y=y.numpy())
    np.savez(tmp_path / "test.npz", X=X[:10].numpy(), y=y[:10].numpy())
    sc = load_scenario(_scenario(tmp_path, 'path = "train.npz"\neval_path = "test.npz"'))
    train, evaluation = make_datasets(sc)
    assert train.X.shape == (60, 4) and evaluation.X.shape == (10, 4)
    mean, std = X.mean(0), X.std(0)
    assert torch.allclose(evaluation.X, (X[:10] - mean) / std, atol=1e-5)


def test_eval_loss_summary_is_the_median_of_the_runs(tmp_path) -> None:
    _write_csv(tmp_path / "d.csv")
    result = compare_variants(["relu", "leaky"], _scenario(tmp_path, 'path = "d.csv"\ntarget = "y"\n'
                                                                      'drop = ["id", "colour"]\nstandardize = "both"'),
                              circuits=False, seeds=3)
    for summary in result.summaries:
        losses = [r.eval_loss for r in result.runs if r.variant == summary.variant]
        assert summary.eval_loss[0] == pytest.approx(statistics.median(losses))
    assert "eval_loss" in result.to_dict()["summaries"][0]


def test_cli_data_builds_a_repeatable_scenario(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write_csv(tmp_path / "d.csv")
    args = ["compare", "relu", "leaky", "--data", "d.csv", "--target", "y", "--drop", "id,colour",
            "--hidden", "8", "--epochs", "2", "--seeds", "2", "--no-circuit", "--json", "a.json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    first = json.loads((tmp_path / "a.json").read_text())
    (tmp_path / "saved.toml").write_text(first["scenario_toml"])
    res = runner.invoke(app, ["compare", "relu", "leaky", "--scenario", "saved.toml", "--no-circuit",
                              "--json", "b.json"])
    assert res.exit_code == 0, res.output
    second = json.loads((tmp_path / "b.json").read_text())
    assert [r["final_loss"] for r in first["runs"]] == [r["final_loss"] for r in second["runs"]]
    assert first["scenario"]["model"]["hidden"] == [8]


@pytest.mark.parametrize("args, match", [
    (["--data", "d.csv", "--scenario", "signed_regression"], "both name the data"),
    (["--target", "y"], "need --data"),
    (["--data", "d.csv", "--target", "y", "--hidden", "8,x"], "--hidden"),
])
def test_cli_data_errors(tmp_path, monkeypatch, args, match) -> None:
    monkeypatch.chdir(tmp_path)
    _write_csv(tmp_path / "d.csv")
    res = runner.invoke(app, ["compare", "relu", "leaky", *args])
    assert res.exit_code == 2 and match in res.output


def test_sweep_over_a_file_scenario(tmp_path, monkeypatch) -> None:
    _write_csv(tmp_path / "d.csv")
    _scenario(tmp_path, 'path = "d.csv"\ntarget = "y"\ndrop = ["id", "colour"]')
    (tmp_path / "grid.toml").write_text('base = "own.toml"\nvariants = ["relu", "leaky"]\nseeds = 2\n'
                                        '[grid]\n"data.standardize" = [true, "both"]\n')
    monkeypatch.chdir(tmp_path.parent)  # relative data paths resolve against the scenario's folder
    res = runner.invoke(app, ["sweep", str(tmp_path / "grid.toml"), "--json", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    cells = json.loads((tmp_path / "s.json").read_text())["cells"]
    assert [c["status"] for c in cells] == ["ok", "ok"]
    assert cells[0]["runs"][0]["final_loss"] != cells[1]["runs"][0]["final_loss"]


def test_a_file_read_again_while_unchanged_is_reused_and_a_changed_one_is_not(tmp_path, monkeypatch) -> None:
    import probe.experiment.file_data as file_data

    _write_csv(tmp_path / "d.csv")
    reads: list = []
    real = file_data.load_data
    monkeypatch.setattr(file_data, "load_data", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    data = 'path = "d.csv"\ntarget = "y"\ndrop = ["id", "colour"]\nstandardize = false'
    first = make_datasets(load_scenario(_scenario(tmp_path, data)))
    first[0].X.add_(100.0)  # a caller changing its tensors must not change the next read
    second = make_datasets(load_scenario(_scenario(tmp_path, data, "again")))
    assert len(reads) == 1 and not torch.equal(first[0].X, second[0].X)
    assert torch.allclose(first[0].X - 100.0, second[0].X, atol=1e-4)
    table = _write_csv(tmp_path / "d.csv", n=120)  # rewritten: read again
    third = make_datasets(load_scenario(_scenario(tmp_path, data, "third")))
    assert len(reads) == 2 and third[0].X.shape[0] + third[1].X.shape[0] == table.shape[0]
