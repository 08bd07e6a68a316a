"""compare beyond the ReLU family: every variant, norms, dropout, classification; checkpoints vs analyze."""

from __future__ import annotations

import json

import pytest
import torch

from probe.compare.results import file_safe
from probe.compare.run import compare_variants as compare
from probe.core.errors import ScenarioError
from probe.engines.analysis import diagnose
from probe.experiment.datasets import make_datasets
from probe.experiment.scenarios import load_scenario
from probe.models import load_mlp

NEW = ["elu", "selu", "celu", "gelu", "gelu:tanh", "silu", "mish", "softplus", "rrelu", "tanh"]


def assert_close_tree(got, ref, where=()):
    """Nested dicts/lists equal, floats to 1e-3 relative."""
    if isinstance(ref, dict):
        assert got.keys() == ref.keys(), where
        for k in ref:
            assert_close_tree(got[k], ref[k], (*where, k))
    elif isinstance(ref, (list, tuple)):
        assert len(got) == len(ref), where
        for i, (g, r) in enumerate(zip(got, ref)):
            assert_close_tree(g, r, (*where, i))
    elif isinstance(ref, float):
        assert got == pytest.approx(ref, rel=1e-3, abs=1e-6), where
    else:
        assert got == ref, where


def assert_analyze_equals_compare(res, tmp_path, ev, loss="mse"):
    """Each saved checkpoint, diagnosed by probe analyze, gives compare's runs[].diagnostics."""
    for run in res.runs:
        loaded = load_mlp(tmp_path / f"{file_safe(run.variant)}-seed{run.seed}.pt")
        ref = diagnose(loaded.mlp, ev, loss=loss).to_dict()
        got = run.diagnostics.to_dict()
        assert all(lay["local_slope_neg"] is not None for lay in got["layers"])
        assert_close_tree(got, ref, (run.variant,))
    return res


def test_every_variant_compare_diagnostics_equal_analyze(tmp_path):
    res = compare(["relu", "leaky", "prelu", *NEW], "signed_regression", save_dir=tmp_path, seeds=1, epochs=1,
                  circuits=False)
    assert len({r.init_digest for r in res.runs}) == 1  # one seed: every variant from the same weights
    _, ev = make_datasets(load_scenario("signed_regression"))
    assert_analyze_equals_compare(res, tmp_path, ev)


def test_smooth_and_rrelu_circuits_are_traced():
    res = compare(["gelu", "rrelu"], "signed_regression", seeds=1, epochs=1)
    assert all(r.circuit is not None for r in res.runs)
    json.dumps(res.to_dict(), allow_nan=False)


def _scenario_with(tmp_path, base: str, model_lines: str, name: str):
    """A shipped scenario's TOML with extra lines under [model]."""
    text = open(load_scenario(base).path).read().replace("[model]\n", "[model]\n" + model_lines + "\n")
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("lines", ['norm = "batch"', 'norm = "layer"\ndropout = 0.2', 'dropout = 0.3'])
def test_norm_and_dropout_checkpoints_analyze_like_compare(tmp_path, lines):
    path = _scenario_with(tmp_path, "signed_regression", lines, "arch")
    res = compare(["relu", "prelu", "gelu", "rrelu"], path, save_dir=tmp_path, seeds=2, epochs=1, circuits=False)
    sc = load_scenario(path)
    train, ev = make_datasets(sc)
    assert_analyze_equals_compare(res, tmp_path, ev)
    loaded = load_mlp(tmp_path / "gelu-seed1.pt")
    assert loaded.meta.get("folded_batchnorm", False) == ("batch" in lines)
    assert (loaded.mlp.norms[0] is not None) == ("layer" in lines)
    with torch.no_grad():  # eval mode: no dropout, running statistics
        mse = float(((loaded.mlp(train.X) - train.y) ** 2).mean())
    run = next(r for r in res.runs if r.variant == "gelu" and r.seed == 1)
    assert mse == pytest.approx(run.final_loss, rel=1e-4)
    assert res.to_dict()["scenario"]["model"]["norm"] == sc.model.norm


def test_classification_scenario_accuracy_and_analyze(tmp_path):
    res = compare(["relu", "elu"], "three_classes", save_dir=tmp_path, seeds=3, epochs=2, circuits=False)
    assert res.scenario.widths[-1] == 3 and res.scenario.target_measure == "accuracy"
    assert all(0 <= r.eval_accuracy <= 1 and r.final_accuracy is not None for r in res.runs)
    assert res.runs[0].steps_to_target is None or res.runs[0].steps_to_target >= 1
    measures = [lc.measure for lc in res.comparisons[0].losses]
    assert measures == ["final_loss", "eval_loss", "loss_auc", "final_accuracy", "eval_accuracy"]
    assert res.summaries[0].eval_accuracy[0] is not None
    assert res.comparisons[0].by_target[0].measure == "accuracy"
    _, ev = make_datasets(load_scenario("three_classes"))
    assert_analyze_equals_compare(res, tmp_path, ev, loss="cross_entropy")
    json.dumps(res.to_dict(), allow_nan=False)


def test_iris_csv_through_the_cli(tmp_path, monkeypatch):
    from sklearn.datasets import load_iris
    from typer.testing import CliRunner

    from probe.cli.app import app

    monkeypatch.chdir(tmp_path)
    iris = load_iris()
    with open(tmp_path / "iris.csv", "w") as fh:  # with an ID column, dropped
        fh.write("id," + ",".join(n.replace(" (cm)", "").replace(" ", "_") for n in iris.feature_names) + ",label\n")
        for i, (x, y) in enumerate(zip(iris.data, iris.target)):
            fh.write(f"{i}," + ",".join(f"{v:g}" for v in x) + f",{y}\n")
    res = CliRunner().invoke(app, ["compare", "relu", "leaky", "gelu", "--data", "iris.csv", "--target", "label",
                                   "--drop", "id", "--epochs", "3", "--seeds", "2", "--no-circuit",
                                   "--json", "iris.json"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "iris.json").read_text())
    assert doc["scenario"]["data"]["n_classes"] == 3 and doc["scenario"]["train"]["loss"] == "cross_entropy"
    assert all(r["eval_accuracy"] is not None for r in doc["runs"])
    assert "eval acc" in res.output


@pytest.mark.parametrize("model,train,match", [
    ('norm = "batch"', "batch_size = 1", "batch_size"),  # BatchNorm needs two samples per batch
    ('norm = "group"', "", "model.norm"),
    ("dropout = 1.0", "", "model.dropout"),
    ("", 'loss = "cross_entropy"', "train.loss"),  # a regression target has no classes
])
def test_bad_architecture_and_loss_keys_are_refused(tmp_path, model, train, match):
    from typer.testing import CliRunner

    from probe.cli.app import app

    text = open(load_scenario("signed_regression").path).read()
    text = text.replace("[model]\n", f"[model]\n{model}\n")
    text = text.replace("batch_size = 64", train) if train.startswith("batch_size") else \
        text.replace("[train]\n", f"[train]\n{train}\n")
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ScenarioError, match=match):
        load_scenario(tmp_path / "bad.toml")
    res = CliRunner().invoke(app, ["compare", "relu", "gelu", "--scenario", str(tmp_path / "bad.toml")])
    assert res.exit_code == 2 and "Traceback" not in res.output and match in res.output
