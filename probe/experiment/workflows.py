"""The notebook face of analysis: one call from a model and data to what ``probe analyze`` prints.

Every entry point takes a model as an ``nn.Module``, a loaded model or a file
path, and data as tensors, numpy arrays, a ``Dataset`` or a data file
(:func:`probe.core.checks.as_dataset`); options are keyword arguments.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

from probe.circuit import CircuitResult, trace_circuit
from probe.circuit.sample import DEFAULT_MAX_SAMPLES
from probe.circuit.target import check_target
from probe.circuit.validate import check_output, check_positive_int
from probe.core.checks import as_dataset
from probe.core.data import Dataset
from probe.core.devices import check_device
from probe.core.errors import DataError
from probe.engines.analysis import AnalysisResult, diagnose_with_loss
from probe.models.coerce import as_model
from probe.models.loading import LoadedModel


def analyze(model: object, X: object, y: object = None, *, activation: str | None = None,
            layer_order: list[str] | str | None = None, trust: bool = False, loss: str | None = None,
            batch_size: int = 4096,
            near_dead_threshold: float = 0.01, dormant_tau: float = 0.025, circuit: bool = False,
            circuit_output: int = 0, circuit_samples: int | None = DEFAULT_MAX_SAMPLES,
            circuit_target: str | None = None, device: str = "cpu",
            progress: Callable[[int, int], None] | None = None) -> AnalysisResult:
    """Every diagnostic of a trained MLP on ``X`` (and ``y``): what ``probe analyze`` prints.

    Args:
        model: An ``nn.Module`` (chain-shaped MLP), a ``LoadedModel`` or a model file path.
        X: Inputs ``[samples, features]`` (tensor, numpy array, ``Dataset`` or data file).
        y: Targets (``[samples]`` or ``[samples, outputs]``), or None.
        activation: Variant spec, needed for a bare state_dict (a file or a dict).
        layer_order: A state_dict's Linear layers (module names) in the order
            ``forward`` calls them, when its names and shapes leave it open.
        trust: Allow model files that carry code (pickled custom classes, TorchScript).
        loss: ``mse``, ``cross_entropy``, ``bce`` or ``sum``; default inferred from the
            targets (:func:`probe.core.losses.choose_loss`) and recorded as such.
        batch_size: Samples per forward/backward pass; memory does not grow with the data.
        near_dead_threshold: Active fraction below which a unit counts as near-dead.
        dormant_tau: ReDo dormancy threshold.
        circuit: Also trace the sign circuit of ``circuit_output`` (``result.circuit``).
        circuit_output: The output whose circuit is traced.
        circuit_samples: Trace the circuit on a stratified sample of at most this many
            rows (default 2000; None: all rows; see :mod:`probe.circuit.sample`).
        circuit_target: ``logit`` or ``margin`` (a classifier's class margin; see
            :mod:`probe.circuit.target`); None: ``margin`` when the loss is
            cross-entropy (as the sign routes), else ``logit``.
        device: ``cpu`` or an available ``cuda[:N]``: the model and the batches go there.
        progress: Called with ``(samples_done, samples_total)``.

    Returns:
        An :class:`AnalysisResult`; ``print`` it through rich, or ``to_dict()`` it.

    Raises:
        ProbeError: A model or data that probe cannot analyse, with the fix.
    """
    loaded = as_model(model, activation, trust=trust, layer_order=layer_order)
    data = as_dataset(X, y)
    return analyze_loaded(loaded, data, loss=loss, batch_size=batch_size,
                          near_dead_threshold=near_dead_threshold, dormant_tau=dormant_tau,
                          circuit_output=circuit_output if circuit else None, circuit_samples=circuit_samples,
                          circuit_target=circuit_target, device=device, progress=progress)


def _on_device(loaded: LoadedModel, data: Dataset, device: str) -> tuple[LoadedModel, Dataset]:
    """Copies of the model and the data on ``device`` (the same objects on the CPU)."""
    if device == "cpu":
        return loaded, data
    moved = dataclasses.replace(loaded, mlp=copy.deepcopy(loaded.mlp).to(device))
    y = None if data.y is None else data.y.to(device)
    return moved, dataclasses.replace(data, X=data.X.to(device), y=y)


def analyze_loaded(loaded: LoadedModel, data: Dataset, *, loss: str | None = None, batch_size: int = 4096,
                   near_dead_threshold: float = 0.01, dormant_tau: float = 0.025,
                   circuit_output: int | None = None, circuit_samples: int | None = DEFAULT_MAX_SAMPLES,
                   circuit_target: str | None = None, device: str = "cpu",
                   progress: Callable[[int, int], None] | None = None) -> AnalysisResult:
    """:func:`analyze` on an already loaded model and validated data (``circuit_output=None``: no circuit)."""
    device = check_device(device)
    if circuit_output is not None:  # refuse a bad circuit request before the analysis, not after it
        check_output(circuit_output, loaded.mlp.widths[-1])
        if circuit_target is not None:
            check_target(circuit_target, loaded.mlp.widths[-1])
        if circuit_samples is not None:
            check_positive_int("circuit_samples", circuit_samples)
    total = data.X.shape[0]
    cb = None if progress is None else (lambda done: progress(done, total))
    run_model, run_data = _on_device(loaded, data, device)
    diag, fit = diagnose_with_loss(run_model, run_data, loss=loss, batch_size=batch_size,
                                   near_dead_threshold=near_dead_threshold, dormant_tau=dormant_tau, progress=cb)
    if circuit_target is None:  # a classifier's circuit follows the class margin, like its sign routes
        circuit_target = "margin" if fit.name == "cross_entropy" and loaded.mlp.widths[-1] > 1 else "logit"
    traced = None if circuit_output is None else trace_circuit(
        loaded.mlp, data, output=circuit_output, max_samples=circuit_samples, target=circuit_target, device=device)
    # the loader's warnings (unverified conversions), then the loss choice's
    warnings = tuple(getattr(loaded, "warnings", ())) + fit.warnings
    return AnalysisResult(loaded.to_dict(), data.to_dict(), fit.name, diag, traced, fit=fit, warnings=warnings)


def scenario_eval_data(scenario: str | Path, **load_options) -> Dataset:
    """The evaluation split of a scenario (shipped name or TOML path); ``load_options``: ``max_memory``."""
    from probe.experiment.datasets import make_datasets
    from probe.experiment.scenarios import load_scenario

    return make_datasets(load_scenario(scenario, **load_options))[1]


def resolve_data(loaded: LoadedModel, data: str | Path | None, scenario: str | None,
                 target: str | None, **load_options) -> Dataset:
    """``--data``, else ``--scenario``, else the scenario recorded in a probe checkpoint.

    Raises:
        DataError: Both ``data`` and ``scenario`` given (one would be ignored), a
            ``target`` column for a file that has no columns, or no data at all.
    """
    if data is not None and scenario is not None:
        raise DataError("Both --data and --scenario were given", expected="one source of evaluation data",
                        found=f"--data {data} and --scenario {scenario}", fix="drop one of them")
    if target is not None and (data is None or Path(data).suffix.lower() != ".csv"):
        raise DataError("--target names a CSV column, but the data is not a CSV file",
                        expected="--target with --data FILE.csv",
                        found=f"--target {target} with {f'--data {data}' if data is not None else 'scenario data'}",
                        fix="drop --target (.npz and .pt files carry y, scenarios carry their targets)")
    if data is not None:
        from probe.core.data import load_data

        return load_data(data, target, **load_options)
    if scenario is not None:
        return scenario_eval_data(scenario, **load_options)
    recorded, name = loaded.meta.get("scenario_path"), loaded.meta.get("scenario")
    if isinstance(recorded, str) and Path(recorded).is_file():  # a user's own scenario, still in place
        return scenario_eval_data(recorded, **load_options)
    if isinstance(name, str):
        from probe.core.errors import ScenarioError
        from probe.experiment.scenarios import list_scenarios

        if name in {n for n, _ in list_scenarios()}:
            return scenario_eval_data(name, **load_options)
        where = f" from {recorded}, which is no longer there" if isinstance(recorded, str) else ""
        raise ScenarioError(f"The checkpoint was trained on scenario '{name}'{where}",
                            expected="the scenario file the checkpoint recorded, or a shipped scenario",
                            found=f"no file at {recorded}" if where else f"no shipped scenario named '{name}'",
                            fix="pass --scenario path/to/that.toml (or --data FILE with the evaluation data)")
    raise DataError(
        "No evaluation data was given",
        expected="--data FILE, or --scenario NAME, or a probe checkpoint saved by probe compare",
        found=f"a {loaded.format} without a recorded scenario",
        fix="pass --data eval.npz (arrays X and y) or --scenario signed_regression")


def analyze_file(model: str | Path, *, data: str | Path | None = None, scenario: str | None = None,
                 target: str | None = None, activation: str | None = None, trust: bool = False,
                 max_memory: int | None = None, circuit_output: int | None = None,
                 layer_order: list[str] | str | None = None,
                 progress: Callable[[int, int], None] | None = None, **options) -> AnalysisResult:
    """Load a model file and its data (``data``, ``scenario`` or the checkpoint's scenario), then analyse.

    ``options`` are :func:`analyze_loaded`'s (``loss``, ``batch_size``, ...).
    """
    check_device(options.get("device", "cpu"))  # refuse a missing GPU before loading anything
    memory = {} if max_memory is None else {"max_memory": max_memory}
    loaded = as_model(model, activation, trust=trust, layer_order=layer_order, **memory)
    if circuit_output is not None:
        check_output(circuit_output, loaded.mlp.widths[-1])
    dataset = resolve_data(loaded, data, scenario, target, **memory)
    return analyze_loaded(loaded, dataset, circuit_output=circuit_output, progress=progress, **options)


def circuit_file(model: str | Path, *, data: str | Path | None = None, scenario: str | None = None,
                 target: str | None = None, activation: str | None = None, trust: bool = False,
                 max_memory: int | None = None, output: int = 0, layer_order: list[str] | str | None = None,
                 circuit_samples: int | None = DEFAULT_MAX_SAMPLES, circuit_target: str | None = None,
                 progress: Callable[[int, int], None] | None = None, **options) -> CircuitResult:
    """Load a model file and its data, then trace the sign circuit of ``output``.

    ``circuit_samples`` and ``circuit_target`` are :func:`probe.circuit.trace_circuit`'s
    ``max_samples`` and ``target`` (``target`` here is the CSV column; None: ``margin`` for
    integer class labels and several outputs, else ``logit``); ``options`` go to it
    too (``method``, ``baseline``, ``n_steps``, ``device``, ...).
    """
    check_device(options.get("device", "cpu"))  # refuse a missing GPU before loading anything
    memory = {} if max_memory is None else {"max_memory": max_memory}
    loaded = as_model(model, activation, trust=trust, layer_order=layer_order, **memory)
    dataset = resolve_data(loaded, data, scenario, target, **memory)
    if circuit_target is None:  # class labels and several logits: a classifier, traced by its class margin
        circuit_target = "margin" if dataset.labels and loaded.mlp.widths[-1] > 1 else "logit"
    total = dataset.X.shape[0]
    cb = None if progress is None else (lambda done: progress(done, total))
    return trace_circuit(loaded.mlp, dataset, output=output, max_samples=circuit_samples, target=circuit_target,
                         progress=cb, **options)
