"""Scenarios: shipped files load and train, data are deterministic, bad files are refused cleanly."""

from __future__ import annotations

import pytest
import torch

from probe.compare.run import compare_variants as compare
from probe.core.errors import ProbeError, ScenarioError
from probe.experiment.datasets import make_datasets
from probe.experiment.scenarios import Scenario, list_scenarios, load_scenario

REQUIRED = {"signed_regression", "positive_regression", "anticorrelated", "deep_narrow", "high_lr", "diabetes"}

GOOD = """
name = "mine"
description = "a test scenario"
[data]
generator = "signed"
n_samples = 64
n_features = 3
n_eval = 32
[model]
hidden = [4, 4]
init = "rai"
[train]
optimizer = "sgd"
lr = 0.01
batch_size = 16
epochs = 1
target_loss = 0.5
seeds = 2
"""


def write(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_shipped_scenarios_are_listed_with_descriptions():
    listed = dict(list_scenarios())
    assert REQUIRED <= set(listed)
    assert all(desc.strip() for desc in listed.values())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_each_shipped_scenario_loads_and_trains(name):
    sc = load_scenario(name)
    assert isinstance(sc, Scenario) and sc.name == name
    result = compare(["relu", "leaky"], name, seeds=2, epochs=1)
    assert len(result.runs) == 4
    assert all(len(r.loss_curve) == 1 and r.loss_curve[0] is not None for r in result.runs)


def test_user_file_by_path(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.model.init == "rai" and sc.train.optimizer == "sgd" and sc.widths == [3, 4, 4, 1]
    assert sc.data.seed == 0 and sc.path.endswith("s.toml")
    assert sc.to_dict()["train"]["seeds"] == 2


def test_extra_keys_are_kept(tmp_path):
    sc = load_scenario(write(tmp_path, 'notes = "hi"\n' + GOOD))
    assert sc.extra == {"notes": "hi"}


def test_data_deterministic_and_shaped():
    sc = load_scenario("signed_regression")
    (tr1, ev1), (tr2, ev2) = make_datasets(sc), make_datasets(sc)
    assert torch.equal(tr1.X, tr2.X) and torch.equal(ev1.y, ev2.y)
    assert tr1.X.shape == (sc.data.n_samples, sc.data.n_features) and tr1.y.shape == (sc.data.n_samples, 1)
    assert ev1.X.shape[0] == sc.data.n_eval
    assert abs(float(tr1.y.mean())) < 1e-5 and (tr1.y < 0).any() and (tr1.y > 0).any()


def test_positive_targets_are_positive_and_anticorrelated_fall():
    tr, ev = make_datasets(load_scenario("positive_regression"))
    assert float(torch.cat([tr.y, ev.y]).min()) == pytest.approx(0.1, abs=1e-6)
    tr, _ = make_datasets(load_scenario("anticorrelated"))
    corr = [float(torch.corrcoef(torch.stack([tr.X[:, j], tr.y[:, 0]]))[0, 1]) for j in range(tr.X.shape[1])]
    assert all(c < 0 for c in corr)


def test_diabetes_is_bundled_and_split():
    sc = load_scenario("diabetes")
    tr, ev = make_datasets(sc)
    assert tr.X.shape == (354, 10) and ev.X.shape == (88, 10)
    assert (tr.y < 0).any() and (tr.y > 0).any()


def test_unknown_name_lists_known():
    with pytest.raises(ScenarioError) as err:
        load_scenario("no_such_scenario")
    assert "signed_regression" in str(err.value) and "Fix:" in str(err.value)


@pytest.mark.parametrize("old,new,needle", [
    ("n_features = 3\n", "", "data.n_features"),                      # missing key
    ("lr = 0.01", 'lr = "fast"', "train.lr"),                          # wrong type
    ("batch_size = 16", "batch_size = 1.5", "train.batch_size"),       # float for int
    ("hidden = [4, 4]", "hidden = [4, 0]", "model.hidden"),            # bad width
    ('generator = "signed"', 'generator = "mnist"', "data.generator"),  # unknown generator
    ('init = "rai"', 'init = "xavier"', "model.init"),                  # unknown init
    ('optimizer = "sgd"', 'optimizer = "lbfgs"', "train.optimizer"),
    ('name = "mine"\n', "", "'name'"),
    ("[train]", "[training]", "[train]"),                               # missing table
])
def test_bad_files_rejected(tmp_path, old, new, needle):
    assert old in GOOD
    with pytest.raises(ScenarioError) as err:
        load_scenario(write(tmp_path, GOOD.replace(old, new, 1)))
    assert needle in str(err.value)
    assert isinstance(err.value, ProbeError)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(write(tmp_path, "name = \n"))
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(tmp_path / "nope.toml")


def test_diabetes_width_checked(tmp_path):
    text = GOOD.replace('generator = "signed"', 'generator = "diabetes"')
    with pytest.raises(ScenarioError, match="n_features"):
        load_scenario(write(tmp_path, text))


def test_overrides_validated():
    sc = load_scenario("signed_regression")
    assert sc.with_overrides(seeds=3, epochs=0).train.seeds == 3
    with pytest.raises(ScenarioError, match="seeds"):
        sc.with_overrides(seeds=0)
    with pytest.raises(ScenarioError, match="epochs"):
        sc.with_overrides(epochs=-1)


def test_unknown_key_inside_a_section_is_refused(tmp_path) -> None:
    from probe.core.errors import ScenarioError
    from probe.experiment.scenarios import load_scenario, scenarios_dir

    text = (scenarios_dir() / "signed_regression.toml").read_text()
    bad = tmp_path / "typo.toml"
    bad.write_text(text.replace("[train]\n", "[train]\nmomentun = 0.9\n"))
    with pytest.raises(ScenarioError, match="train.momentun"):
        load_scenario(bad)


def test_limits_are_documented_in_the_module_docstring():
    import probe.experiment.scenarios as scenarios

    for name in ("MAX_SCENARIO_FILE_BYTES", "MAX_DATA_SEED", "MAX_HIDDEN_LAYERS", "MAX_MEMBER_PARAMETERS",
                 "MAX_SEEDS", "MAX_MEMBER_STEPS", "MAX_LR", "DEFAULT_MAX_MEMORY"):
        assert name in scenarios.__doc__, name


def test_limits_name_key_value_limit_and_fix(tmp_path):
    with pytest.raises(ScenarioError) as err:
        load_scenario(write(tmp_path, GOOD.replace("seeds = 2", "seeds = 5000")))
    text = str(err.value)
    assert "'train.seeds'" in text and "5000" in text and "1000" in text and "Fix:" in text
