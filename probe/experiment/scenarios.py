"""Scenarios: one TOML file per experiment setting in the top-level ``scenarios/`` folder.

A scenario fixes the data, the architecture, the initialisation and the
training recipe, so that ``probe compare relu leaky`` measures the activation
and nothing else. Required keys (more are allowed and kept)::

    name = "signed_regression"
    description = "..."
    [data]
    generator = "signed"     # see GENERATORS
    n_samples = 4096         # training samples
    n_features = 8
    # optional: seed = 0 (data seed), n_eval = 1024, noise = 0.0
    [model]
    hidden = [64, 64]
    init = "default"         # see probe.engines.training.init.INITS
    [train]
    optimizer = "adam"       # adam | sgd
    lr = 1e-3
    batch_size = 128
    epochs = 30
    target_loss = 0.05
    seeds = 10

Data are generated deterministically from ``data.seed`` (a ``torch.Generator``),
independently of the training seeds: every run of a scenario sees the same
train and evaluation sets.

Limits. A scenario (and :meth:`Scenario.with_overrides`) is refused up front,
with a :class:`~probe.core.errors.ScenarioError` naming the key, its value, the
limit and the fix, when it asks for more than these (constants in
:mod:`probe.core.limits`; "the budget" is ``max_memory``, default
``DEFAULT_MAX_MEMORY`` = 4 GiB, raised with ``--max-memory``):

* the file: at most ``MAX_SCENARIO_FILE_BYTES`` (1 MiB) of UTF-8 TOML; any
  parser failure (bad syntax, arrays nested too deep, integers of too many
  digits) is a ScenarioError;
* ``data.n_samples``, ``data.n_features``, ``data.n_eval``, ``train.batch_size``:
  integers >= 1, and the generated data, ``(n_samples + n_eval) x n_features x
  4`` bytes, within the budget; ``data.seed`` from 0 to ``MAX_DATA_SEED``
  (2**64 - 1); ``data.noise`` finite and >= 0, and the noisy targets must stay
  finite in float32;
* ``model.hidden``: 1 to ``MAX_HIDDEN_LAYERS`` (64) widths, each >= 1, and at
  most ``MAX_MEMBER_PARAMETERS`` (10,000,000) weights and biases per network,
  ``sum((fan_in + 1) x fan_out)`` over ``[n_features, *hidden, 1]``;
* ``train.seeds``: 1 to ``MAX_SEEDS`` (1000); ``train.epochs``: >= 0 with
  ``seeds x epochs x ceil(n_samples / batch_size)`` at most
  ``MAX_MEMBER_STEPS`` (20,000,000) optimiser steps;
* ``train.lr``: > 0 and at most ``MAX_LR`` (1e6, far below float32 overflow in
  the optimisers' step sizes); a learning rate so large that training diverges
  is a result, reported as divergence, not an error. ``train.target_loss``:
  finite and > 0; ``train.momentum``: finite and >= 0;
* the training memory of one variant, ``seeds x`` :meth:`Scenario.member_bytes`,
  within the budget.

``probe compare`` trains every variant: it should check the whole run with
:meth:`Scenario.check_run` (variants x seeds x :meth:`Scenario.member_steps`
steps, and the memory of all the networks together).
"""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import math

import numpy as np
import torch

from probe.core.data import Dataset
from probe.core.errors import ProbeError, ScenarioError
from probe.core.limits import (MAX_DATA_SEED, MAX_HIDDEN_LAYERS, MAX_LR, MAX_MEMBER_PARAMETERS, MAX_MEMBER_STEPS,
                               MAX_SCENARIO_FILE_BYTES, MAX_SEEDS, check_bytes, format_bytes)
from probe.engines.training.init import INITS

OPTIMIZERS = ("adam", "sgd")
DEFAULT_N_EVAL = 1024
_EVAL_BATCH = 8192  # the largest evaluation batch of the diagnostics (member_bytes counts it)


def scenarios_dir() -> Path:
    """The folder of shipped scenarios.

    ``probe/scenario_files`` is a link to the top-level ``scenarios/`` folder in a
    source checkout and a copy of it in a built wheel.
    """
    return Path(__file__).resolve().parents[1] / "scenario_files"


@dataclass(frozen=True)
class DataSpec:
    """``[data]``: which generator, how many samples, which data seed."""

    generator: str
    n_samples: int
    n_features: int
    seed: int = 0
    n_eval: int = DEFAULT_N_EVAL
    noise: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: hidden widths and initialisation scheme."""

    hidden: tuple[int, ...]
    init: str


@dataclass(frozen=True)
class TrainSpec:
    """``[train]``: the optimisation recipe shared by every variant."""

    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    target_loss: float
    seeds: int
    momentum: float = 0.0
    targets: tuple[float, ...] = ()  # further loss levels to measure steps at (besides target_loss x 1, 2, 4, 8)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. ``extra`` keeps any keys beyond the required ones."""

    name: str
    description: str
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    path: str | None = None
    extra: dict = field(default_factory=dict)
    #: the memory budget (bytes) it was validated against; None: the default. Not part of the scenario.
    max_memory: int | None = field(default=None, compare=False, repr=False)

    @property
    def targets(self) -> tuple[float, ...]:
        """The loss levels steps to target are measured at, ascending: ``target_loss`` x 1, 2, 4, 8
        and any listed in ``train.targets``."""
        base = self.train.target_loss
        levels = {float(f"{base * k:.12g}") for k in TARGET_FACTORS} | set(self.train.targets)
        return tuple(sorted(levels))

    @property
    def widths(self) -> list[int]:
        """``[n_features, hidden..., 1]``: every scenario has one output."""
        return [self.data.n_features, *self.model.hidden, 1]

    def with_overrides(self, *, seeds: int | None = None, epochs: int | None = None,
                       lr: float | None = None, max_memory: int | None = None) -> Scenario:
        """A copy with ``seeds``/``epochs``/``lr`` replaced where given, checked against the limits.

        Args:
            seeds: Training seeds per variant (1 to ``MAX_SEEDS``).
            epochs: Epochs (>= 0, within ``MAX_MEMBER_STEPS`` together with the seeds).
            lr: Learning rate (> 0, at most ``MAX_LR``).
            max_memory: A new memory budget in bytes; None keeps the scenario's.

        Raises:
            ScenarioError: A value out of range or over a limit (see the module docstring).
        """
        where = self._where
        budget = _check_budget(self.max_memory if max_memory is None else max_memory, where)
        train = self.train
        if seeds is not None:
            train = replace(train, seeds=_check_int("train.seeds", seeds, where, maximum=MAX_SEEDS,
                                                    flag="--seeds"))
        if epochs is not None:
            train = replace(train, epochs=_check_int("train.epochs", epochs, where, minimum=0, flag="--epochs"))
        if lr is not None:
            train = replace(train, lr=_check_float("train.lr", lr, where, maximum=MAX_LR))
        out = replace(self, train=train, max_memory=budget)
        _check_limits(out, where, steps_key="train.seeds" if seeds is not None and epochs is None
                      else "train.epochs")
        return out

    def member_steps(self) -> int:
        """Optimiser steps of one network: ``epochs x ceil(n_samples / batch_size)``.

        A run trains ``variants x seeds`` networks; :meth:`check_run` bounds the product.
        """
        return self.train.epochs * -(-self.data.n_samples // self.train.batch_size)

    def member_parameters(self) -> int:
        """Weights and biases of one network, ``sum((fan_in + 1) x fan_out)``."""
        w = self.widths
        return sum((a + 1) * b for a, b in zip(w[:-1], w[1:]))

    def data_bytes(self) -> int:
        """Bytes of the generated train and evaluation inputs, ``(n_samples + n_eval) x n_features x 4``."""
        return (self.data.n_samples + self.data.n_eval) * self.data.n_features * 4

    def member_bytes(self) -> int:
        """An estimate of the training memory of one network, in bytes.

        Its shuffled copy of the training data each epoch (``n_samples x
        (n_features + 1) x 4``), its parameters with their gradients and two
        Adam moments (``parameters x 16``), and the activations of one batch,
        forward and backward (``max(batch, evaluation batch) x sum(hidden) x 8``).
        """
        d, t = self.data, self.train
        batch = max(min(t.batch_size, d.n_samples), min(_EVAL_BATCH, d.n_eval))
        return d.n_samples * (d.n_features + 1) * 4 + self.member_parameters() * 16 \
            + batch * sum(self.model.hidden) * 8

    def check_run(self, variants: int, max_memory: int | None = None) -> None:
        """Refuse a run of ``variants`` variants that exceeds the step or memory limits.

        ``variants x seeds x member_steps()`` must stay within ``MAX_MEMBER_STEPS``,
        and ``data_bytes() + variants x seeds x member_bytes()`` within the budget
        (``max_memory``, else the scenario's, else the default).

        Raises:
            ScenarioError: Naming the keys, the numbers, the limit and the fix.
        """
        budget = _check_budget(self.max_memory if max_memory is None else max_memory, self._where)
        _check_steps(self, self._where, variants, "train.epochs")
        _check_training_memory(self, self._where, variants, budget)

    @property
    def _where(self) -> str:
        return self.path or self.name

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "path": self.path,
                "data": vars(self.data).copy(), "model": {"hidden": list(self.model.hidden),
                                                         "init": self.model.init},
                "train": vars(self.train).copy(), **({"extra": self.extra} if self.extra else {})}


# ---------------------------------------------------------------- generators
def _teacher(spec: DataSpec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian inputs and the raw teacher signal ``s1 + 0.8 sin(2 s2)``, both signs."""
    f = spec.n_features
    w, v = torch.randn(f, generator=gen), torch.randn(f, generator=gen)
    X = torch.randn(n, f, generator=gen)
    s1, s2 = X @ w / f ** 0.5, X @ v / f ** 0.5
    return X, s1 + 0.8 * torch.sin(2.0 * s2)


def _anticorrelated(spec: DataSpec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets that fall as every input rises: ``-(s + 0.5 tanh(2 s))``, ``s = X|w|/||w||``."""
    w = torch.randn(spec.n_features, generator=gen).abs() + 0.1
    X = torch.randn(n, spec.n_features, generator=gen)
    s = X @ w / w.norm()
    return X, -(s + 0.5 * torch.tanh(2.0 * s))


def _mixed(spec: DataSpec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the inputs raise the target and half lower it: ``s + 0.5 tanh(2 s)``, ``s = X w / ||w||``
    with ``w_i > 0`` on the first half of the features and ``w_i < 0`` on the rest."""
    f = spec.n_features
    w = torch.randn(f, generator=gen).abs() + 0.1
    w[f // 2:] = -w[f // 2:]
    X = torch.randn(n, f, generator=gen)
    s = X @ w / w.norm()
    return X, s + 0.5 * torch.tanh(2.0 * s)


def _diabetes(spec: DataSpec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled diabetes data (442 x 10, no download), in a seeded random order."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    order = torch.randperm(X.shape[0], generator=gen)
    X = torch.as_tensor(np.asarray(X, dtype=np.float32))[order]
    y = torch.as_tensor(np.asarray(y, dtype=np.float32))[order]
    return X[:n], y[:n]


DIABETES_SAMPLES, DIABETES_FEATURES = 442, 10

#: generator name -> (function, one-line description, positive shift of the target)
GENERATORS: dict[str, tuple[Callable, str, bool]] = {
    "signed": (_teacher, "Gaussian inputs, teacher s1 + 0.8 sin(2 s2), standardised: zero mean, both signs", False),
    "positive": (_teacher, "the signed teacher shifted so every target is positive (min 0.1)", True),
    "anticorrelated": (_anticorrelated, "targets that fall as every input rises, standardised", False),
    "diabetes": (_diabetes, "scikit-learn's bundled diabetes data, inputs and target standardised", False),
    "mixed": (_mixed, "half the inputs raise the target, half lower it, standardised", False),
}


def make_datasets(scenario: Scenario, *, max_memory: int | None = None) -> tuple[Dataset, Dataset]:
    """The scenario's training and evaluation sets, deterministic given ``data.seed``.

    Both splits are drawn in one stream and standardised with the *training*
    statistics: inputs per feature, the target to zero mean and unit variance
    (the ``positive`` generator then shifts it so its minimum over both splits
    is 0.1). ``noise`` adds Gaussian noise of that standard deviation to the
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
    if spec.noise > 0:
        y = y + spec.noise * torch.randn(y.shape, generator=gen)
    y = y.reshape(-1, 1).float()
    X = X.float()
    x_mean, x_std = X[:n_train].mean(0), X[:n_train].std(0).clamp_min(1e-8)
    X = X.sub_(x_mean).div_(x_std)  # in place: the inputs are the bulk of the memory (same numbers)
    y = (y - y[:n_train].mean()) / y[:n_train].std().clamp_min(1e-8)
    if shift:
        y = y - y.min() + 0.1
    if not (torch.isfinite(y).all() and torch.isfinite(X).all()):  # a huge noise overflows float32
        raise _bad(where, "data.noise", "a noise level whose noisy targets stay finite in float32",
                   spec.noise, "lower noise (the targets are standardised: noise = 1 already equals the signal)")
    source = f"scenario:{scenario.name}"
    return (Dataset(X[:n_train].contiguous(), y[:n_train].contiguous(), source + ":train"),
            Dataset(X[n_train:].contiguous(), y[n_train:].contiguous(), source + ":eval"))


# ---------------------------------------------------------------- validation
_REQUIRED = {
    "data": ("generator", "n_samples", "n_features"),
    "model": ("hidden", "init"),
    "train": ("optimizer", "lr", "batch_size", "epochs", "target_loss", "seeds"),
}
_OPTIONAL = {"data": ("seed", "n_eval", "noise"), "model": (), "train": ("momentum", "targets")}
TARGET_FACTORS = (1, 2, 4, 8)  # steps to target are measured at target_loss times each of these


def _bad(where: str, key: str, expected: str, found: object, fix: str) -> ScenarioError:
    return ScenarioError(f"Scenario {where} has a bad value for '{key}'", expected=expected,
                         found=repr(found), fix=fix)


def _check_int(key: str, value: object, where: str, minimum: int = 1, maximum: int | None = None,
               flag: str | None = None) -> int:
    short = key.split(".")[-1]
    how = f" (or {flag})" if flag else ""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(where, key, f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else ""),
                   value, f"write e.g. {short} = {max(minimum, 1)}{how}")
    if maximum is not None and value > maximum:
        raise _bad(where, key, f"an integer from {minimum} to {maximum} (the limit)", _short_repr(value),
                   f"set {short} to at most {maximum}{how}")
    return value


class _Shown(str):
    """Text shown as is where a value's repr is expected."""

    def __repr__(self) -> str:
        return str(self)


def _short_repr(value: object) -> _Shown:
    """A value as its repr, an integer of a thousand digits as its first digits and size."""
    text = repr(value)
    return _Shown(text if len(text) <= 40 else f"{text[:12]}...({len(text)} digits)")


def _check_float(key: str, value: object, where: str, *, positive: bool = True,
                 maximum: float | None = None) -> float:
    try:  # an integer of 400 digits is not a float: float() raises OverflowError
        number = float(value) if not isinstance(value, bool) and isinstance(value, (int, float)) else None
    except OverflowError:
        number = float("inf")
    if number is None or not math.isfinite(number) or (number <= 0 if positive else number < 0):
        raise _bad(where, key, ("a positive number" if positive else "a number >= 0") + ", finite"
                   + (f", at most {maximum:g}" if maximum is not None else ""),
                   _short_repr(value), f"write e.g. {key.split('.')[-1]} = 0.001")
    if maximum is not None and number > maximum:
        raise _bad(where, key, f"a positive number of at most {maximum:g} (the limit)", _short_repr(value),
                   f"set {key.split('.')[-1]} to at most {maximum:g} (training diverges far below it)")
    return number


def _check_targets(value: object, where: str) -> tuple[float, ...]:
    """``train.targets``: a list of at most 16 positive finite loss levels."""
    if not isinstance(value, list) or len(value) > 16:
        raise _bad(where, "train.targets", "a list of at most 16 loss levels", _short_repr(value),
                   "write e.g. targets = [0.02, 0.3]")
    return tuple(sorted({_check_float("train.targets", v, where) for v in value}))


def _check_budget(max_memory: object, where: str) -> int | None:
    if max_memory is not None and (isinstance(max_memory, bool) or not isinstance(max_memory, int)
                                   or max_memory <= 0):
        raise ScenarioError(f"The memory limit for scenario {where} is not a positive number of bytes",
                            expected="max_memory a positive int (bytes) or None for the default",
                            found=repr(max_memory), fix="pass e.g. max_memory=8 * 2**30 (or --max-memory 8GiB)")
    return max_memory


def _memory_error(where: str, keys: str, formula: str, nbytes: int, budget: int | None, fix: str) -> None:
    """:func:`check_bytes` on ``nbytes``, as a ScenarioError that names the keys and the formula."""
    try:
        check_bytes(nbytes, f"Scenario {where}", budget)
    except ProbeError as exc:
        raise ScenarioError(f"Scenario {where} has too large a value for {keys}",
                            expected=f"{formula} within the memory budget, {exc.expected}",
                            found=f"{format_bytes(nbytes)} ({nbytes:,} bytes)",
                            fix=f"{fix}; or, if the machine has the memory, raise the budget with --max-memory "
                                f"(e.g. --max-memory {format_bytes(2 * nbytes).replace(' ', '')})") from None


def _check_data_memory(sc: Scenario, where: str, budget: int | None) -> None:
    d = sc.data
    _memory_error(where, "'data.n_samples', 'data.n_eval' and 'data.n_features'",
                  f"the generated data, (n_samples + n_eval) x n_features x 4 bytes = "
                  f"({d.n_samples} + {d.n_eval}) x {d.n_features} x 4,", sc.data_bytes(), budget,
                  "lower n_samples, n_eval or n_features")


def _check_steps(sc: Scenario, where: str, variants: int, key: str) -> None:
    t = sc.train
    spe = -(-sc.data.n_samples // t.batch_size)
    total = variants * t.seeds * t.epochs * spe
    if total <= MAX_MEMBER_STEPS:
        return
    runs = f"{variants} variants x " if variants > 1 else ""
    max_epochs = MAX_MEMBER_STEPS // (variants * t.seeds * spe)
    fix = (f"lower epochs to at most {max_epochs} (train.epochs or --epochs)" if key == "train.epochs" else
           f"lower seeds to at most {max(1, MAX_MEMBER_STEPS // (variants * t.epochs * spe))} (train.seeds or --seeds)")
    raise ScenarioError(f"Scenario {where} has too large a value for '{key}'",
                        expected=f"{runs}seeds x epochs x steps per epoch (ceil(n_samples / batch_size) = {spe}) "
                                 f"at most {MAX_MEMBER_STEPS:,} optimiser steps",
                        found=f"{runs}{t.seeds} x {_short_repr(t.epochs)} x {spe} = {_short_repr(total)}",
                        fix=fix + ", or raise batch_size")


def _check_training_memory(sc: Scenario, where: str, variants: int, budget: int | None) -> None:
    networks = variants * sc.train.seeds
    runs = f"{variants} variants x " if variants > 1 else ""
    _memory_error(where, "'train.seeds', 'model.hidden' and 'data.n_samples'",
                  f"the generated data plus the training memory of {runs}seeds networks, "
                  f"{format_bytes(sc.data_bytes())} + {networks} x {format_bytes(sc.member_bytes())} "
                  "(shuffled data copy, parameters with gradients and Adam moments, batch activations),",
                  sc.data_bytes() + networks * sc.member_bytes(), budget,
                  "lower seeds, the hidden widths or n_samples")


def _check_limits(sc: Scenario, where: str, steps_key: str = "train.epochs") -> None:
    """The limits that involve several keys (see the module docstring), for one variant."""
    budget = sc.max_memory
    _check_data_memory(sc, where, budget)
    params = sc.member_parameters()
    if params > MAX_MEMBER_PARAMETERS:
        raise _bad(where, "model.hidden", f"at most {MAX_MEMBER_PARAMETERS:,} weights and biases per network, "
                   f"sum((fan_in + 1) x fan_out) over the widths [n_features, *hidden, 1]",
                   f"{_short_repr(list(sc.model.hidden))} with n_features = {_short_repr(sc.data.n_features)}: "
                   f"{_short_repr(params)} parameters", "use narrower hidden layers (or fewer features)")
    _check_steps(sc, where, 1, steps_key)
    _check_training_memory(sc, where, 1, budget)


def _check_choice(key: str, value: object, where: str, choices: list[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _bad(where, key, "one of " + ", ".join(choices), value, f"set {key} to one of those")
    return value


def _section(raw: dict, name: str, where: str) -> dict:
    sec = raw.get(name)
    if not isinstance(sec, dict):
        raise ScenarioError(f"Scenario {where} has no [{name}] table", expected=f"a [{name}] table with keys "
                            + ", ".join(_REQUIRED[name]), found="missing" if sec is None else repr(sec),
                            fix=f"add a [{name}] section (see scenarios/signed_regression.toml)")
    # a typo in an optional key (momentun = 0.9) must not pass silently as a default
    unknown = sorted(set(sec) - set(_REQUIRED[name]) - set(_OPTIONAL[name]))
    if unknown:
        allowed = ", ".join(f"{name}.{k}" for k in (*_REQUIRED[name], *_OPTIONAL[name]))
        raise ScenarioError(f"Scenario {where} has an unknown key '{name}.{unknown[0]}'",
                            expected=f"only {allowed}", found=f"'{unknown[0]}' in [{name}]",
                            fix="fix the spelling, or move your own settings to the top level of the file")
    missing = [k for k in _REQUIRED[name] if k not in sec]
    if missing:
        raise ScenarioError(f"Scenario {where} is missing the key '{name}.{missing[0]}'",
                            expected="keys " + ", ".join(f"{name}.{k}" for k in _REQUIRED[name]),
                            found=f"keys {sorted(sec)} in [{name}]", fix=f"add {missing[0]} = ... under [{name}]")
    return sec


def parse_scenario(raw: dict, where: str, *, max_memory: int | None = None) -> Scenario:
    """Validate a parsed TOML document into a :class:`Scenario`.

    Args:
        raw: The parsed document.
        where: The file or name, for messages.
        max_memory: Memory budget in bytes for the limits; None: the default.

    Raises:
        ScenarioError: Naming the first missing or malformed key, or the first
            limit exceeded (see the module docstring).
    """
    max_memory = _check_budget(max_memory, where)
    for key in ("name", "description"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ScenarioError(f"Scenario {where} is missing the key '{key}'", expected=f"{key} = \"...\" at the top",
                                found=repr(raw.get(key)), fix=f"add a {key} line before the first [table]")
    d, m, t = (_section(raw, s, where) for s in ("data", "model", "train"))
    gen = _check_choice("data.generator", d["generator"], where, sorted(GENERATORS))
    data = DataSpec(gen, _check_int("data.n_samples", d["n_samples"], where),
                    _check_int("data.n_features", d["n_features"], where),
                    seed=_check_int("data.seed", d.get("seed", 0), where, minimum=0, maximum=MAX_DATA_SEED),
                    n_eval=_check_int("data.n_eval", d.get("n_eval", DEFAULT_N_EVAL), where),
                    noise=_check_float("data.noise", d.get("noise", 0.0), where, positive=False))
    if gen == "diabetes":
        if data.n_features != DIABETES_FEATURES:
            raise _bad(where, "data.n_features", f"{DIABETES_FEATURES} (the diabetes data's width)",
                       data.n_features, f"set n_features = {DIABETES_FEATURES}")
        if data.n_samples >= DIABETES_SAMPLES:
            raise _bad(where, "data.n_samples", f"fewer than the {DIABETES_SAMPLES} diabetes samples",
                       data.n_samples, "leave some for evaluation, e.g. n_samples = 354")
        data = replace(data, n_eval=min(data.n_eval, DIABETES_SAMPLES - data.n_samples))
    hidden = m["hidden"]
    if isinstance(hidden, list) and len(hidden) > MAX_HIDDEN_LAYERS:
        raise _bad(where, "model.hidden", f"at most {MAX_HIDDEN_LAYERS} hidden layers (the limit)",
                   f"{len(hidden)} layers", f"use at most {MAX_HIDDEN_LAYERS} widths")
    if not isinstance(hidden, list) or not hidden or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise _bad(where, "model.hidden", "a non-empty list of positive integers (widths >= 1)",
                   _short_repr(hidden), "write e.g. hidden = [64, 64]")
    model = ModelSpec(tuple(hidden), _check_choice("model.init", m["init"], where, sorted(INITS)))
    train = TrainSpec(_check_choice("train.optimizer", t["optimizer"], where, list(OPTIMIZERS)),
                      _check_float("train.lr", t["lr"], where, maximum=MAX_LR),
                      _check_int("train.batch_size", t["batch_size"], where),
                      _check_int("train.epochs", t["epochs"], where, minimum=0),
                      _check_float("train.target_loss", t["target_loss"], where),
                      _check_int("train.seeds", t["seeds"], where, maximum=MAX_SEEDS),
                      momentum=_check_float("train.momentum", t.get("momentum", 0.0), where, positive=False),
                      targets=_check_targets(t.get("targets", []), where))
    known = {"name", "description", "data", "model", "train"}
    extra = {k: v for k, v in raw.items() if k not in known}
    scenario = Scenario(raw["name"], raw["description"].strip(), data, model, train, extra=extra,
                        max_memory=max_memory)
    _check_limits(scenario, where)
    return scenario


def _shipped() -> dict[str, Path]:
    folder = scenarios_dir()
    return {p.stem: p for p in sorted(folder.glob("*.toml"))} if folder.is_dir() else {}


def load_scenario(name_or_path: str | Path, *, max_memory: int | None = None) -> Scenario:
    """A shipped scenario by name (``signed_regression``) or the user's own TOML file.

    A string is a path when it names an existing file or ends in ``.toml``.

    Args:
        name_or_path: Shipped name or path.
        max_memory: Memory budget in bytes for the limits; None: the default.
            The scenario keeps it for :meth:`Scenario.with_overrides` and
            :func:`make_datasets`.

    Raises:
        ScenarioError: Unknown name (listing the shipped ones), unreadable or
            too large file, invalid TOML, a missing or malformed key, or a
            limit exceeded (see the module docstring).
    """
    text = str(name_or_path)
    path = Path(text)
    try:
        is_file = path.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the file system
        raise ScenarioError(f"Cannot look at the scenario file {text[:200]}", expected="a TOML file",
                            found=str(exc)[:200], fix="check the path") from None
    if not (isinstance(name_or_path, Path) or text.endswith(".toml") or is_file):
        shipped = _shipped()
        if text not in shipped:
            raise ScenarioError(f"Unknown scenario '{text[:200]}'", expected="a shipped scenario or a .toml path",
                                found=f"'{text[:200]}'; known: {', '.join(shipped) or 'none'}",
                                fix="pick one of those names (probe scenarios lists them), or pass a path to a TOML file")
        path = shipped[text]
        is_file = path.is_file()
    if not is_file:
        raise ScenarioError(f"Scenario file {path} does not exist", expected="a TOML file",
                            found="nothing at that path (or not a regular file)", fix="check the path")
    try:
        size = path.stat().st_size
        if size > MAX_SCENARIO_FILE_BYTES:
            raise ScenarioError(f"Scenario file {path} is too large", expected=f"a TOML file of at most "
                                f"{format_bytes(MAX_SCENARIO_FILE_BYTES)} (the limit)", found=format_bytes(size),
                                fix="check that it is the scenario file; a scenario needs a few lines")
        with open(path, "rb") as fh:
            data = fh.read(MAX_SCENARIO_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(f"Cannot read the scenario file {path}", expected="a readable TOML file",
                            found=str(exc), fix="check the path and its permissions") from None
    if len(data) > MAX_SCENARIO_FILE_BYTES:  # grew since stat
        raise ScenarioError(f"Scenario file {path} is too large", expected=f"at most "
                            f"{format_bytes(MAX_SCENARIO_FILE_BYTES)}", found="more",
                            fix="check that it is the scenario file")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except RecursionError:
        raise ScenarioError(f"Scenario file {path} nests arrays or tables too deeply", expected="a TOML "
                            "document of ordinary depth", found="nesting beyond what the parser can follow",
                            fix="flatten the nested values") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"Scenario file {path} is not valid TOML", expected="a UTF-8 TOML document",
                            found=str(exc)[:300], fix="fix the syntax at that line") from None
    except Exception as exc:  # any other parser failure (e.g. an integer of more than 4300 digits)
        raise ScenarioError(f"Scenario file {path} could not be parsed", expected="a TOML document",
                            found=f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}",
                            fix="fix the value the message names") from None
    return replace(parse_scenario(raw, str(path), max_memory=max_memory), path=str(path))


def list_scenarios() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped scenario, sorted by file name."""
    return [(name, load_scenario(path).description) for name, path in _shipped().items()]
