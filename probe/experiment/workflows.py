"""File-level workflows behind the CLI, callable from a notebook as well."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from probe.engines.analysis import AnalysisResult, analyze
from probe.core.data import Dataset, load_data
from probe.core.errors import DataError
from probe.models import LoadedModel, load_mlp


def scenario_eval_data(scenario: str | Path) -> Dataset:
    """The evaluation split of a scenario (shipped name or TOML path)."""
    from probe.experiment.scenarios import load_scenario, make_datasets

    return make_datasets(load_scenario(scenario))[1]


def resolve_data(loaded: LoadedModel, data: str | Path | None, scenario: str | None,
                 target: str | None) -> Dataset:
    """``--data``, else ``--scenario``, else the scenario recorded in a probe checkpoint."""
    if data is not None:
        return load_data(data, target)
    if scenario is None:
        recorded = loaded.meta.get("scenario_path")
        # the recorded file when it is still there (a user's own scenario), else the shipped name
        scenario = recorded if recorded and Path(recorded).is_file() else loaded.meta.get("scenario")
    if scenario is None:
        raise DataError(
            "No evaluation data was given",
            expected="--data FILE, or --scenario NAME, or a probe checkpoint saved by probe compare",
            found=f"a {loaded.format} without a recorded scenario",
            fix="pass --data eval.npz (arrays X and y) or --scenario signed_regression")
    return scenario_eval_data(scenario)


def analyze_file(model: str | Path, *, data: str | Path | None = None, scenario: str | None = None,
                 target: str | None = None, activation: str | None = None, trust: bool = False,
                 circuit_output: int | None = None,
                 progress: Callable[[int, int], None] | None = None, **kwargs) -> AnalysisResult:
    """Load a model file and its data, then :func:`probe.analyze` it.

    Args:
        model: Model file in any supported format.
        data: Data file; default: the scenario's evaluation data.
        scenario: Scenario whose evaluation data to use.
        target: CSV target column.
        activation: Variant spec (needed for a bare state_dict).
        trust: Allow unpickling arbitrary code.
        circuit_output: Also trace the sign circuit of this output (under ``circuit``).
        progress: Called with ``(samples_done, samples_total)``.
        **kwargs: Passed to :func:`probe.engines.analysis.diagnose`.
    """
    loaded = load_mlp(model, activation, trust=trust)
    if circuit_output is not None:  # before the analysis, not after it
        from probe.circuit.validate import check_output

        check_output(circuit_output, loaded.mlp.widths[-1])
    dataset = resolve_data(loaded, data, scenario, target)
    total = dataset.X.shape[0]
    cb = None if progress is None else (lambda done: progress(done, total))
    result = analyze(loaded, dataset, progress=cb, **kwargs)
    if circuit_output is not None:
        from dataclasses import replace

        from probe.circuit import circuit

        traced = circuit(loaded.mlp, dataset, output=circuit_output)
        result = replace(result, circuit=traced)
    return result


def circuit_file(model: str | Path, *, data: str | Path | None = None, scenario: str | None = None,
                 target: str | None = None, activation: str | None = None, trust: bool = False,
                 output: int = 0, progress: Callable[[int, int], None] | None = None, **kwargs):
    """Load a model file and its data, then trace the sign circuit of ``output``.

    Keyword arguments go to :func:`probe.circuit.circuit`.
    """
    from probe.circuit import circuit

    loaded = load_mlp(model, activation, trust=trust)
    dataset = resolve_data(loaded, data, scenario, target)
    total = dataset.X.shape[0]
    cb = None if progress is None else (lambda done: progress(done, total))
    return circuit(loaded.mlp, dataset, output=output, progress=cb, **kwargs)
