"""probe sweep: grid files refused up front, cells as compare runs, the cache, failures, CLI and report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from probe.cli.app import app
from probe.core.errors import ProbeError, ScenarioError, VariantError
from probe.sweep.cache import SweepCache
from probe.sweep.cell import run_cell
from probe.sweep.executors import LocalExecutor
from probe.sweep.grid import SweepError, load_grid
from probe.sweep.run import run_sweep
from probe.sweep.tables import check_axes
from tests.sweep_fixtures import failing_at, write_grid

runner = CliRunner()


def _counting(calls: list):
    def cell(payload: dict) -> dict:
        calls.append(payload["scenario"]["train"]["lr"])
        return run_cell(payload)
    return cell


# ------------------------------------------------------------------ the grid file
def test_grid_cells_are_the_cartesian_product_in_file_order(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    assert grid.keys == ["train.lr", "data.noise"]
    assert [c.settings for c in grid.cells] == [{"train.lr": 1e-3, "data.noise": 0.0},
                                               {"train.lr": 1e-3, "data.noise": 0.1},
                                               {"train.lr": 1e-2, "data.noise": 0.0},
                                               {"train.lr": 1e-2, "data.noise": 0.1}]
    cell = grid.cells[3].scenario
    assert (cell.train.lr, cell.data.noise, cell.train.epochs, cell.model.hidden, cell.train.seeds) == \
        (1e-2, 0.1, 2, (4,), 2)
    assert grid.variants == ("relu", "leaky:0.01") and grid.seeds == 2


def test_base_may_be_a_scenario_path_relative_to_the_grid_file(tmp_path):
    shipped = Path(load_grid(write_grid(tmp_path)).cells[0].scenario.name)  # signed_regression
    from probe.experiment.scenarios import scenarios_dir

    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "mine.toml").write_text((scenarios_dir() / f"{shipped}.toml").read_text())
    grid = load_grid(write_grid(tmp_path, head='base = "sc/mine.toml"\nvariants = ["relu", "leaky"]\n'))
    assert grid.base == "sc/mine.toml" and grid.seeds == 10  # the base scenario's own seeds
    assert len(grid.cells) == 4


@pytest.mark.parametrize("grid_text, fixed, needle", [
    ('"train.lrr" = [1e-3]\n', None, "train.lrr"),
    ('"data.colour" = [1]\n', None, "data.colour"),
    ('"name" = ["x"]\n', None, "'name'"),
    ('"train.seeds" = [2, 3]\n', None, "seeds = N"),
    ('"train.lr" = 1e-3\n', None, "no list of values"),
    ('"train.lr" = [1e-3, 1e-3]\n', None, "twice"),
    ('"train.epochs" = [1, 2]\n', None, "both sets and sweeps"),
    ('"train.lr" = [1e-3]\n', '[set]\n"train.lrr" = 3\n', "train.lrr"),
])
def test_unknown_or_malformed_keys_are_refused(tmp_path, grid_text, fixed, needle):
    kwargs = {} if fixed is None else {"fixed": fixed}
    with pytest.raises(SweepError) as info:
        load_grid(write_grid(tmp_path, grid_text, **kwargs))
    assert needle in str(info.value)


@pytest.mark.parametrize("grid_text, key, value", [
    ('"train.lr" = [1e-3, -1.0]\n', "train.lr", "-1.0"),
    ('"model.hidden" = [[4], [0, 4]]\n', "model.hidden", "[0, 4]"),
    ('"model.hidden" = [4, 8]\n', "model.hidden", "4"),  # a list of widths, not a width, per cell
    ('"model.init" = ["default", "magic"]\n', "model.init", "'magic'"),
    ('"train.epochs" = [1, 100000000]\n', "train.epochs", "100000000"),
])
def test_values_the_scenario_refuses_are_refused_up_front_naming_key_and_cell(tmp_path, grid_text, key, value):
    with pytest.raises(ScenarioError) as info:
        load_grid(write_grid(tmp_path, grid_text, fixed='[set]\n"data.n_samples" = 128\n'))
    message = str(info.value)
    assert f"'{key}'" in message and f"{key}={value}" in message and "grid.toml" in message


def test_bad_top_level_and_variants_are_refused(tmp_path):
    with pytest.raises(SweepError, match="unknown key 'seed'"):
        load_grid(write_grid(tmp_path, head='base = "signed_regression"\nvariants = ["relu", "leaky"]\nseed = 2\n'))
    with pytest.raises(VariantError):
        load_grid(write_grid(tmp_path, head='base = "signed_regression"\nvariants = ["relu", "tanhh"]\n'))
    with pytest.raises(ScenarioError, match="Unknown scenario"):
        load_grid(write_grid(tmp_path, head='base = "nope"\nvariants = ["relu", "leaky"]\n'))
    with pytest.raises(ScenarioError, match="train.seeds"):
        load_grid(write_grid(tmp_path, head='base = "signed_regression"\nvariants = ["relu", "leaky"]\nseeds = 0\n'))
    (tmp_path / "broken.toml").write_text("base = [")
    with pytest.raises(SweepError, match="not valid TOML"):
        load_grid(tmp_path / "broken.toml")


def test_axes_must_be_swept_keys(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    assert check_axes(grid, None) == ("train.lr", "data.noise")
    assert check_axes(grid, "data.noise,train.lr") == ("data.noise", "train.lr")
    for bad in ("train.epochs", "train.lr,train.lr", "a,b,c"):
        with pytest.raises(ProbeError, match="--axes"):
            check_axes(grid, bad)


# ------------------------------------------------------------------ running cells
def test_a_cell_is_exactly_a_compare_run(tmp_path):
    from probe.compare.run import compare_variants

    grid = load_grid(write_grid(tmp_path))
    result = run_sweep(grid, circuits=False)
    assert (result.cells_run, result.cells_cached, result.cells_failed) == (4, 0, 0)
    cell = result.cells[2]
    direct = compare_variants(["relu", "leaky"], cell.cell.scenario, circuits=False).to_dict()
    for part in ("runs", "summaries", "comparisons", "budget", "targets"):
        assert json.loads(json.dumps(direct[part])) == cell.record[part]
    assert cell.record["scenario"]["train"]["lr"] == 1e-2


def test_rerun_reuses_every_cell_and_a_changed_setting_recomputes_only_its_cells(tmp_path):
    path = write_grid(tmp_path)
    cache = SweepCache(tmp_path / "cache")
    calls: list = []
    first = run_sweep(load_grid(path), cache=cache, circuits=False, cell_fn=_counting(calls))
    assert len(calls) == 4 and len(list((tmp_path / "cache").glob("*.json"))) == 4
    calls.clear()
    again = run_sweep(load_grid(path), cache=cache, circuits=False, cell_fn=_counting(calls))
    assert calls == [] and (again.cells_cached, again.cells_run) == (4, 0)
    assert [c.record for c in again.cells] == [c.record for c in first.cells]
    assert again.to_dict()["cells_cached"] == 4
    changed = write_grid(tmp_path, '"train.lr" = [1e-3, 2e-2]\n"data.noise" = [0.0, 0.1]\n')
    third = run_sweep(load_grid(changed), cache=cache, circuits=False, cell_fn=_counting(calls))
    assert calls == [2e-2, 2e-2] and (third.cells_cached, third.cells_run) == (2, 2)
    assert [c.record for c in third.cells[:2]] == [c.record for c in first.cells[:2]]


def test_key_changes_with_every_setting_and_the_version(tmp_path, monkeypatch):
    from probe.sweep import cell as cell_module

    grid = load_grid(write_grid(tmp_path))
    c = grid.cells[0]
    base = cell_module.cell_key(c, grid.variants)
    assert base == cell_module.cell_key(c, grid.variants)
    assert base != cell_module.cell_key(c, grid.variants, circuits=False)
    assert base != cell_module.cell_key(c, ("relu", "leaky:0.3"))
    assert base != cell_module.cell_key(grid.cells[1], grid.variants)
    monkeypatch.setattr(cell_module, "__version__", "99.0")
    assert base != cell_module.cell_key(c, grid.variants)


def test_a_corrupt_cache_file_is_recomputed(tmp_path):
    path = write_grid(tmp_path, '"train.lr" = [1e-3]\n')
    cache = SweepCache(tmp_path / "cache")
    first = run_sweep(load_grid(path), cache=cache, circuits=False)
    (tmp_path / "cache" / f"{first.cells[0].key}.json").write_text("{half")
    again = run_sweep(load_grid(path), cache=cache, circuits=False)
    assert (again.cells_cached, again.cells_run) == (0, 1) and again.cells[0].record == first.cells[0].record


def test_a_failing_cell_is_reported_and_the_others_complete(tmp_path):
    cache = SweepCache(tmp_path / "cache")
    result = run_sweep(load_grid(write_grid(tmp_path)), cache=cache, circuits=False,
                       executor=LocalExecutor(max_retries=1), cell_fn=failing_at(1e-2))
    status = [c.status for c in result.cells]
    assert status == ["ok", "ok", "failed", "failed"] and result.cells_failed == 2 and result.cells_run == 2
    bad = result.to_dict()["cells"][2]
    assert "deliberate failure at lr 0.01" in bad["error"] and bad["attempts"] == 2 and "runs" not in bad
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2  # failed cells are not cached: a rerun retries them


def test_diverging_training_is_a_result_not_a_failure(tmp_path):
    result = run_sweep(load_grid(write_grid(tmp_path, '"train.lr" = [1e5]\n')), circuits=False)
    assert result.cells[0].status == "ok"


def interrupt_on_third_cell():
    """A cell function that runs cells as usual but raises KeyboardInterrupt on the third call."""
    calls: list = []

    def interrupted_third(payload: dict) -> dict:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return run_cell(payload)

    return interrupted_third


def test_ctrl_c_keeps_finished_cells_in_the_cache(tmp_path):
    path = write_grid(tmp_path)
    cache = SweepCache(tmp_path / "cache")
    interrupted_third = interrupt_on_third_cell()

    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_grid(path), cache=cache, circuits=False, cell_fn=interrupted_third)
    again = run_sweep(load_grid(path), cache=cache, circuits=False)
    assert (again.cells_cached, again.cells_run) == (2, 2)


# ------------------------------------------------------------------ the command line
def test_cli_json_shape_report_and_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path)
    res = runner.invoke(app, ["sweep", "grid.toml", "--no-circuit", "--cache", "c", "--json",
                              "--report", "r/sweep.md", "--axes", "data.noise,train.lr"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {"cells", "cells_cached", "cells_run", "cells_failed", "backend", "grid"} <= set(doc)
    assert (doc["cells_cached"], doc["cells_run"], doc["cells_failed"]) == (0, 4, 0)
    assert doc["backend"]["name"] == "local" and doc["grid"]["grid"] == {"train.lr": [1e-3, 1e-2],
                                                                          "data.noise": [0.0, 0.1]}
    cell = doc["cells"][0]
    assert cell["settings"] == {"train.lr": 1e-3, "data.noise": 0.0} and cell["status"] == "ok"
    assert len(cell["key"]) == 32 and {"runs", "summaries", "comparisons"} <= set(cell)
    assert len(cell["runs"]) == 4 and cell["comparisons"][0]["a"] == "relu"
    md = (tmp_path / "r" / "sweep.md").read_text()
    assert "## Speedup" in md and "## Each variant's best setting" in md and "sweep_files/speedup.png" in md
    for png in ("speedup.png", "final_loss.png"):
        data = (tmp_path / "r" / "sweep_files" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    res = runner.invoke(app, ["sweep", "grid.toml", "--no-circuit", "--cache", "c", "--json", "out.json"])
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "out.json").read_text())
    assert (again["cells_cached"], again["cells_run"]) == (4, 0)
    assert [c["runs"] for c in again["cells"]] == [c["runs"] for c in doc["cells"]]
    res = runner.invoke(app, ["sweep", "grid.toml", "--no-circuit", "--cache", "c"])
    assert res.exit_code == 0 and "4 cached" in res.stdout and "cached" in res.stdout


@pytest.mark.parametrize("args, needle", [
    (["--backend", "slurm"], "Unknown backend"),
    (["--address", "auto"], "--address needs --backend ray"),
    (["--axes", "train.epochs"], "--axes"),
    (["--device", "tpu"], "device"),
    (["--report", "r.txt"], ".md"),
])
def test_cli_bad_input_exits_2_before_any_cell_runs(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path)
    monkeypatch.setattr("probe.sweep.run.run_cell", lambda payload: pytest.fail("a cell ran"))
    res = runner.invoke(app, ["sweep", "grid.toml", "--cache", "c", *args])
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output
    assert not list(tmp_path.glob("c/*.json"))


def test_cli_refuses_a_bad_cell_value_with_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path, '"train.lr" = [1e-3, 0.0]\n')
    res = runner.invoke(app, ["sweep", "grid.toml", "--json", "out.json"])
    assert res.exit_code == 2 and "'train.lr'" in res.output and "train.lr=0.0" in res.output
    assert not (tmp_path / "out.json").exists()


def test_cli_failed_cell_exits_1_and_still_writes_the_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path)
    monkeypatch.setattr("probe.sweep.run.run_cell", failing_at(1e-3))
    res = runner.invoke(app, ["sweep", "grid.toml", "--no-circuit", "--json", "out.json", "--report", "r.md"])
    assert res.exit_code == 1 and "2 of 4 cells failed" in res.output
    doc = json.loads((tmp_path / "out.json").read_text())
    assert [c["status"] for c in doc["cells"]] == ["failed", "failed", "ok", "ok"] and doc["cells_failed"] == 2
    assert "## Failed cells" in (tmp_path / "r.md").read_text()


def test_cli_ctrl_c_exits_130_and_keeps_finished_cells(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path)
    interrupted_third = interrupt_on_third_cell()

    monkeypatch.setattr("probe.sweep.run.run_cell", interrupted_third)
    res = runner.invoke(app, ["sweep", "grid.toml", "--no-circuit", "--cache", "c", "--json", "out.json"])
    assert res.exit_code == 130 and "2 finished cells are in c" in res.output
    assert not (tmp_path / "out.json").exists() and len(list((tmp_path / "c").glob("*.json"))) == 2


def test_variants_must_be_a_list_of_specs(tmp_path):
    for head in ('base = "signed_regression"\n', 'base = "signed_regression"\nvariants = ["relu", 1]\n',
                 'base = "signed_regression"\nvariants = "relu"\n'):
        with pytest.raises(SweepError, match="no list of variants"):
            load_grid(write_grid(tmp_path, head=head))


@pytest.mark.parametrize("grid_text, axes, note", [
    ('"train.lr" = [1e-3, 1e-2]\n', ("train.lr",), None),
    ('"train.lr" = [1e-3, 1e-2]\n"data.noise" = [0.0, 0.1]\n"model.init" = ["default", "rai"]\n',
     ("model.init", "train.lr"), "median over the 2 settings of data.noise"),
])
def test_report_with_one_axis_and_with_a_key_reduced_by_the_median(tmp_path, grid_text, axes, note):
    from probe.report.sweep_report import write_sweep_report
    from probe.sweep.tables import final_loss, heat_table

    result = run_sweep(load_grid(write_grid(tmp_path, grid_text)), circuits=False)
    table = heat_table(result, axes, final_loss("relu"))
    assert table.values.shape == ((2, 2) if len(axes) == 2 else (1, 2)) and not (table.values != table.values).any()
    if len(axes) == 2:  # the median of the two noise settings of each (init, lr) square
        cells = [c for c in result.cells if c.cell.settings["model.init"] == "rai"
                 and c.cell.settings["train.lr"] == 1e-3]
        losses = [next(s for s in c.record["summaries"] if s["variant"] == "relu")["median_final_loss"]
                  for c in cells]
        assert table.values[0, 1] == pytest.approx(sum(losses) / 2)
    md = write_sweep_report(result, tmp_path / "r.md", axes=axes).read_text()
    assert "final_loss.png" in md and (note is None or note in md)
    assert (tmp_path / "r_files" / "speedup.png").exists()
