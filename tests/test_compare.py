"""compare(): fairness, reproducibility, JSON shape, checkpoints, rendering, error handling."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from probe.engines.analysis import diagnose
from probe.compare.results import CompareResult, file_safe
from probe.compare.run import compare_variants as compare
from probe.core.errors import ScenarioError, VariantError
from probe.models import load_mlp
from probe.report.compare_view import render_compare
from probe.experiment.datasets import make_datasets
from probe.experiment.scenarios import load_scenario

SMALL = dict(seeds=2, epochs=2)
RUN_KEYS = {"variant", "seed", "init_digest", "born_dead", "final_loss", "eval_loss", "steps_to_target",
            "loss_auc", "diverged", "diverged_epoch", "loss_curve", "dead_rate_init", "dead_rate_history",
            "grad_ratio_history", "diagnostics", "checkpoint", "circuit", "steps_by_target",
            "collapsed_layer_at_init", "final_accuracy", "eval_accuracy"}


@pytest.fixture(scope="module")
def result() -> CompareResult:
    return compare(["relu", "leaky:0.2", "prelu"], "signed_regression", **SMALL)


def test_same_init_per_seed_across_variants(result):
    by_seed = {}
    for r in result.runs:
        by_seed.setdefault(r.seed, set()).add(r.init_digest)
    assert all(len(d) == 1 for d in by_seed.values())
    assert by_seed[0] != by_seed[1]


def test_same_call_twice_identical(result):
    again = compare(["relu", "leaky:0.2", "prelu"], "signed_regression", **SMALL)
    assert json.dumps(again.to_dict()) == json.dumps(result.to_dict())


def test_json_shape(result):
    d = result.to_dict()
    json.dumps(d, allow_nan=False)
    assert {"scenario", "variants", "runs", "comparisons", "summaries"} <= set(d)
    assert d["scenario"]["train"]["seeds"] == 2 and d["scenario"]["train"]["epochs"] == 2
    assert [v["label"] for v in d["variants"]] == ["relu", "leaky:0.2", "prelu"]
    assert len(d["runs"]) == 6 and len(d["comparisons"]) == 3
    run = d["runs"][0]
    assert set(run) == RUN_KEYS
    assert len(run["loss_curve"]) == 2 and len(run["dead_rate_history"]) == 3
    assert len(run["grad_ratio_history"][0]) == len(load_scenario("signed_regression").model.hidden)
    # the diagnostics block has exactly the keys of probe analyze's NetworkDiagnostics.to_dict()
    sc = load_scenario("signed_regression")
    _, ev = make_datasets(sc)
    from probe.models.mlp import MLP
    ref = diagnose(MLP.build(sc.widths, "relu"), ev).to_dict()
    assert set(run["diagnostics"]) == set(ref)
    assert set(run["diagnostics"]["layers"][0]) == set(ref["layers"][0])
    assert set(run["diagnostics"]["sign"][0]) == set(ref["sign"][0])
    # per run and per variant: output 0's sign circuit, with exact completeness for relu (DeepLift)
    assert run["circuit"]["completeness_rel_error"] < 1e-4
    assert run["circuit"]["activation_route_share_output"] == 0.0  # relu has no negative activations
    assert set(d["summaries"][0]["circuit"]) == set(run["circuit"])
    assert set(d["comparisons"][0]) >= {"a", "b", "speedup", "ci_low", "ci_high", "wins_a", "wins_b",
                                        "p_value", "verdict"}


def test_checkpoints_load_and_match_the_member(tmp_path):
    res = compare(["relu", "leaky:0.2", "prelu"], "signed_regression", save_dir=tmp_path, seeds=1, epochs=1)
    train, ev = make_datasets(load_scenario("signed_regression"))
    for run in res.runs:
        path = tmp_path / f"{file_safe(run.variant)}-seed{run.seed}.pt"
        assert run.checkpoint == str(path) and path.is_file()
        loaded = load_mlp(path)
        assert loaded.meta["seed"] == run.seed and loaded.meta["scenario"] == "signed_regression"
        with torch.no_grad():
            mse = float(((loaded.mlp(train.X) - train.y) ** 2).mean())
        assert mse == pytest.approx(run.final_loss, rel=1e-4)
        again = diagnose(loaded.mlp, ev)
        for lay_a, lay_b in zip(again.layers, run.diagnostics.layers):
            assert lay_a.activity.dead_units == lay_b.activity.dead_units
            assert lay_a.negative_slope == pytest.approx(lay_b.negative_slope)


def test_epochs_zero_is_an_init_study():
    res = compare(["relu", "leaky"], "deep_narrow", seeds=4, epochs=0)
    assert all(r.loss_curve == () and r.steps_to_target is None for r in res.runs)
    assert all(isinstance(r.born_dead, bool) for r in res.runs)
    assert res.budget == 0 and "neither" in res.comparisons[0].verdict


def test_diagnostics_off():
    res = compare(["relu", "leaky"], "signed_regression", diagnostics=False, **SMALL)
    assert all(r.diagnostics is None and r.dead_rate_history is None for r in res.runs)
    assert res.summaries[0].dead_rate_final is None and res.summaries[0].dead_rate_init is not None
    json.dumps(res.to_dict(), allow_nan=False)


def test_interrupt_gives_partial_result():
    def progress(done, total):
        if done == 1:
            raise KeyboardInterrupt

    res = compare(["relu", "leaky"], "signed_regression", progress=progress, seeds=2, epochs=3)
    assert res.interrupted and res.epochs_completed == 1
    assert all(len(r.loss_curve) == 1 for r in res.runs)


def test_diverging_variant_reported_others_carry_on(tmp_path):
    text = load_scenario("signed_regression").path
    raw = open(text).read().replace("lr = 3e-3", "lr = 1e6").replace('optimizer = "adam"', 'optimizer = "sgd"')
    path = tmp_path / "boom.toml"
    path.write_text(raw)
    res = compare(["relu", "leaky"], path, seeds=2, epochs=2)
    assert all(r.diverged and r.diverged_epoch == 1 and r.final_loss is None for r in res.runs)
    json.dumps(res.to_dict(), allow_nan=False)


def test_render(result):
    console = Console(record=True, width=140)
    render_compare(result, console)
    text = console.export_text()
    assert "Convergence" in text and "Diagnostics" in text
    for c in result.comparisons:
        assert f"{c.a} vs {c.b}:" in text


@pytest.mark.parametrize("variants,error", [
    (["relu"], VariantError), (["relu", "relu"], VariantError), (["relu", "swish:2"], VariantError)])
def test_bad_variants(variants, error):
    with pytest.raises(error):
        compare(variants, "signed_regression", **SMALL)


def test_bad_scenario_and_overrides():
    with pytest.raises(ScenarioError):
        compare(["relu", "leaky"], "nope")
    with pytest.raises(ScenarioError):
        compare(["relu", "leaky"], "signed_regression", seeds=0)


def test_threads_restored():
    before = torch.get_num_threads()
    compare(["relu", "leaky"], "signed_regression", seeds=1, epochs=0, threads=1)
    assert torch.get_num_threads() == before


def test_steps_are_recorded_at_every_target(tmp_path):
    from probe.compare.run import compare_variants
    from probe.core.errors import ScenarioError

    text = open(load_scenario("signed_regression").path).read().replace("seeds = 10", "seeds = 10\ntargets = [0.3]")
    toml = tmp_path / "t.toml"
    toml.write_text(text)
    res = compare_variants(["relu", "leaky"], toml, seeds=3, epochs=3, circuits=False)
    assert res.targets == (0.05, 0.1, 0.2, 0.3, 0.4)
    for r in res.runs:  # the primary target's steps sit in the grid
        assert len(r.steps_by_target) == 5 and r.steps_by_target[0] == r.steps_to_target
        reached = [s for s in r.steps_by_target if s is not None]
        assert reached == sorted(reached, reverse=True)  # a looser target is reached no later
    c = res.comparisons[0].to_dict()
    assert [t["target"] for t in c["by_target"]] == [0.05, 0.1, 0.2, 0.3, 0.4]
    assert set(c["losses"]) == {"final_loss", "eval_loss", "loss_auc"} and c["test"].startswith("two-sided exact sign")
    toml.write_text(text.replace("targets = [0.3]", "targets = [-1]"))
    with pytest.raises(ScenarioError, match="train.targets"):
        load_scenario(toml)
