"""Validation of scenario values: each check names the key, the value, the limit and the fix.

Helpers of :mod:`probe.experiment.scenarios`; the limits themselves are listed
in that module's docstring and defined in :mod:`probe.core.limits`. The checks
that span several keys take the scenario itself (duck-typed: it has ``data``,
``model``, ``train``, ``max_memory`` and the size methods).
"""

from __future__ import annotations

import math

from probe.core.errors import ProbeError, ScenarioError
from probe.core.limits import MAX_MEMBER_PARAMETERS, MAX_MEMBER_STEPS, check_bytes, format_bytes

_REQUIRED = {
    "data": ("generator", "n_samples", "n_features"),
    "model": ("hidden", "init"),
    "train": ("optimizer", "lr", "batch_size", "epochs", "seeds"),
}
_OPTIONAL = {"data": ("seed", "n_eval", "noise"), "model": ("norm", "dropout"),
             "train": ("target_loss", "target_accuracy", "loss", "momentum", "targets")}
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


def _check_data_memory(sc, where: str, budget: int | None) -> None:
    d = sc.data
    _memory_error(where, "'data.n_samples', 'data.n_eval' and 'data.n_features'",
                  f"the generated data, (n_samples + n_eval) x n_features x 4 bytes = "
                  f"({d.n_samples} + {d.n_eval}) x {d.n_features} x 4,", sc.data_bytes(), budget,
                  "lower n_samples, n_eval or n_features")


def _check_steps(sc, where: str, variants: int, key: str) -> None:
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


def _check_training_memory(sc, where: str, variants: int, budget: int | None) -> None:
    networks = variants * sc.train.seeds
    runs = f"{variants} variants x " if variants > 1 else ""
    _memory_error(where, "'train.seeds', 'model.hidden' and 'data.n_samples'",
                  f"the generated data plus the training memory of {runs}seeds networks, "
                  f"{format_bytes(sc.data_bytes())} + {networks} x {format_bytes(sc.member_bytes())} "
                  "(shuffled data copy, parameters with gradients and Adam moments, batch activations),",
                  sc.data_bytes() + networks * sc.member_bytes(), budget,
                  "lower seeds, the hidden widths or n_samples")


def _check_limits(sc, where: str, steps_key: str = "train.epochs") -> None:
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
