"""probe sweep on a real local Ray: identical cells to the local backend, retries, failed cells, the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from probe.cli.app import app
from probe.sweep.grid import load_grid
from probe.sweep.run import run_sweep
from tests.sweep_fixtures import failing_at, write_grid

ray = pytest.importorskip("ray")
runner = CliRunner()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs for the module (RayExecutor joins it and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_cells_are_bit_identical_under_both_backends(tmp_path, local_ray):
    from probe.integrations.ray_executor import RayExecutor

    grid = load_grid(write_grid(tmp_path))
    local = run_sweep(grid, circuits=False)
    remote = run_sweep(grid, circuits=False, executor=RayExecutor())
    assert remote.backend["name"] == "ray" and remote.backend["cluster_cpus"] == 2
    assert [c.status for c in remote.cells] == ["ok"] * 4
    assert [c.record for c in remote.cells] == [c.record for c in local.cells]
    assert ray.is_initialized()  # a Ray it did not start is left running


def test_tasks_pin_torch_threads_to_their_cpus(local_ray):
    from probe.integrations.ray_executor import RayExecutor
    from probe.sweep.executors import Task

    def threads(payload: dict) -> dict:
        import torch

        return {"threads": torch.get_num_threads()}

    with RayExecutor(cpus_per_cell=2) as executor:
        [outcome] = list(executor.map(threads, [Task("k", {})]))
    assert outcome.record == {"threads": 2}


def test_a_failing_task_is_retried_then_reported_without_sinking_the_sweep(tmp_path, local_ray):
    from probe.integrations.ray_executor import RayExecutor

    result = run_sweep(load_grid(write_grid(tmp_path)), circuits=False, executor=RayExecutor(max_retries=1),
                       cell_fn=failing_at(1e-3))
    assert [c.status for c in result.cells] == ["failed", "failed", "ok", "ok"]
    assert all(c.attempts == 2 and "deliberate failure" in c.error for c in result.cells[:2])


def test_cli_ray_backend(tmp_path, monkeypatch, local_ray):
    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path, '"train.lr" = [1e-3, 1e-2]\n')
    res = runner.invoke(app, ["sweep", "grid.toml", "--no-circuit", "--backend", "ray", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["backend"]["name"] == "ray" and doc["cells_run"] == 2 and doc["backend"]["max_retries"] == 1
