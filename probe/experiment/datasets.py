"""A scenario's training and evaluation sets, made from its generator."""

from __future__ import annotations

import torch

from probe.core.data import Dataset
from probe.core.limits import MAX_DATA_SEED
from probe.experiment.generators import GENERATORS
from probe.experiment.scenario_checks import _bad, _check_budget, _check_choice, _check_data_memory, _check_int
from probe.experiment.scenarios import Scenario


def make_datasets(scenario: Scenario, *, max_memory: int | None = None) -> tuple[Dataset, Dataset]:
    """The scenario's training and evaluation sets, deterministic given ``data.seed``.

    Both splits are drawn in one stream and standardised with the *training*
    statistics: inputs per feature, the target to zero mean and unit variance
    (the ``positive`` generator then shifts it so its minimum over both splits
    is 0.1); a classification generator's labels stay class indices. ``noise`` adds Gaussian noise of that standard deviation to the
    raw targets first.

    Args:
        scenario: A scenario (its data size is checked again here).
        max_memory: Memory budget in bytes; None: the scenario's, else the default.

    Returns:
        ``(train, eval)``, float32 with ``y`` of shape ``[samples, 1]``.

    Raises:
        ScenarioError: The data would exceed the budget, the generator or the
            data seed is out of range, or the generated data are not finite.
    """
    if scenario.datasets:  # a file scenario: read once when it was loaded
        return scenario.datasets
    spec = scenario.data
    where = scenario._where
    budget = _check_budget(scenario.max_memory if max_memory is None else max_memory, where)
    _check_choice("data.generator", spec.generator, where, sorted(GENERATORS))
    _check_int("data.seed", spec.seed, where, minimum=0, maximum=MAX_DATA_SEED)
    _check_data_memory(scenario, where, budget)
    fn, _, shift = GENERATORS[spec.generator]
    gen = torch.Generator().manual_seed(spec.seed)
    n_train, n_total = spec.n_samples, spec.n_samples + spec.n_eval
    X, y = fn(spec, n_total, gen)
    if spec.noise > 0 and not spec.n_classes:  # classification generators apply their own noise
        y = y + spec.noise * torch.randn(y.shape, generator=gen)
    y = y.reshape(-1, 1).float()
    X = X.float()
    x_mean, x_std = X[:n_train].mean(0), X[:n_train].std(0).clamp_min(1e-8)
    X = X.sub_(x_mean).div_(x_std)  # in place: the inputs are the bulk of the memory (same numbers)
    if not spec.n_classes:  # class labels stay 0..K-1
        y = (y - y[:n_train].mean()) / y[:n_train].std().clamp_min(1e-8)
    if shift:
        y = y - y.min() + 0.1
    if not (torch.isfinite(y).all() and torch.isfinite(X).all()):  # a huge noise overflows float32
        raise _bad(where, "data.noise", "a noise level whose noisy targets stay finite in float32",
                   spec.noise, "lower noise (the targets are standardised: noise = 1 already equals the signal)")
    source = f"scenario:{scenario.name}"
    return (Dataset(X[:n_train].contiguous(), y[:n_train].contiguous(), source + ":train"),
            Dataset(X[n_train:].contiguous(), y[n_train:].contiguous(), source + ":eval"))
