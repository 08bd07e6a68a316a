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
"""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from probe.core.data import Dataset
from probe.core.errors import ScenarioError
from probe.engines.training.init import INITS

OPTIMIZERS = ("adam", "sgd")
DEFAULT_N_EVAL = 1024


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

    @property
    def widths(self) -> list[int]:
        """``[n_features, hidden..., 1]``: every scenario has one output."""
        return [self.data.n_features, *self.model.hidden, 1]

    def with_overrides(self, *, seeds: int | None = None, epochs: int | None = None) -> Scenario:
        """A copy with ``seeds``/``epochs`` replaced (validated) where given."""
        train = self.train
        if seeds is not None:
            train = replace(train, seeds=_check_int("train.seeds", seeds, self._where, minimum=1))
        if epochs is not None:
            train = replace(train, epochs=_check_int("train.epochs", epochs, self._where, minimum=0))
        return replace(self, train=train)

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
}


def make_datasets(scenario: Scenario) -> tuple[Dataset, Dataset]:
    """The scenario's training and evaluation sets, deterministic given ``data.seed``.

    Both splits are drawn in one stream and standardised with the *training*
    statistics: inputs per feature, the target to zero mean and unit variance
    (the ``positive`` generator then shifts it so its minimum over both splits
    is 0.1). ``noise`` adds Gaussian noise of that standard deviation to the
    raw targets first.

    Returns:
        ``(train, eval)``, float32 with ``y`` of shape ``[samples, 1]``.
    """
    spec = scenario.data
    fn, _, shift = GENERATORS[spec.generator]
    gen = torch.Generator().manual_seed(spec.seed)
    n_train, n_total = spec.n_samples, spec.n_samples + spec.n_eval
    X, y = fn(spec, n_total, gen)
    if spec.noise > 0:
        y = y + spec.noise * torch.randn(y.shape, generator=gen)
    y = y.reshape(-1, 1).float()
    X = X.float()
    x_mean, x_std = X[:n_train].mean(0), X[:n_train].std(0).clamp_min(1e-8)
    X = (X - x_mean) / x_std
    y = (y - y[:n_train].mean()) / y[:n_train].std().clamp_min(1e-8)
    if shift:
        y = y - y.min() + 0.1
    source = f"scenario:{scenario.name}"
    return (Dataset(X[:n_train].contiguous(), y[:n_train].contiguous(), source + ":train"),
            Dataset(X[n_train:].contiguous(), y[n_train:].contiguous(), source + ":eval"))


# ---------------------------------------------------------------- validation
_REQUIRED = {
    "data": ("generator", "n_samples", "n_features"),
    "model": ("hidden", "init"),
    "train": ("optimizer", "lr", "batch_size", "epochs", "target_loss", "seeds"),
}
_OPTIONAL = {"data": ("seed", "n_eval", "noise"), "model": (), "train": ("momentum",)}


def _bad(where: str, key: str, expected: str, found: object, fix: str) -> ScenarioError:
    return ScenarioError(f"Scenario {where} has a bad value for '{key}'", expected=expected,
                         found=repr(found), fix=fix)


def _check_int(key: str, value: object, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(where, key, f"an integer >= {minimum}", value, f"write e.g. {key.split('.')[-1]} = {max(minimum, 1)}")
    return value


def _check_float(key: str, value: object, where: str, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or (value <= 0 if positive else value < 0):
        raise _bad(where, key, "a positive number" if positive else "a number >= 0", value,
                   f"write e.g. {key.split('.')[-1]} = 0.001")
    return float(value)


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


def parse_scenario(raw: dict, where: str) -> Scenario:
    """Validate a parsed TOML document into a :class:`Scenario`.

    Raises:
        ScenarioError: Naming the first missing or malformed key.
    """
    for key in ("name", "description"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ScenarioError(f"Scenario {where} is missing the key '{key}'", expected=f"{key} = \"...\" at the top",
                                found=repr(raw.get(key)), fix=f"add a {key} line before the first [table]")
    d, m, t = (_section(raw, s, where) for s in ("data", "model", "train"))
    gen = _check_choice("data.generator", d["generator"], where, sorted(GENERATORS))
    data = DataSpec(gen, _check_int("data.n_samples", d["n_samples"], where),
                    _check_int("data.n_features", d["n_features"], where),
                    seed=_check_int("data.seed", d.get("seed", 0), where, minimum=0),
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
    if not isinstance(hidden, list) or not hidden or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise _bad(where, "model.hidden", "a non-empty list of positive integers", hidden, "write e.g. hidden = [64, 64]")
    model = ModelSpec(tuple(hidden), _check_choice("model.init", m["init"], where, sorted(INITS)))
    train = TrainSpec(_check_choice("train.optimizer", t["optimizer"], where, list(OPTIMIZERS)),
                      _check_float("train.lr", t["lr"], where),
                      _check_int("train.batch_size", t["batch_size"], where),
                      _check_int("train.epochs", t["epochs"], where, minimum=0),
                      _check_float("train.target_loss", t["target_loss"], where),
                      _check_int("train.seeds", t["seeds"], where),
                      momentum=_check_float("train.momentum", t.get("momentum", 0.0), where, positive=False))
    known = {"name", "description", "data", "model", "train"}
    extra = {k: v for k, v in raw.items() if k not in known}
    return Scenario(raw["name"], raw["description"].strip(), data, model, train, extra=extra)


def _shipped() -> dict[str, Path]:
    folder = scenarios_dir()
    return {p.stem: p for p in sorted(folder.glob("*.toml"))} if folder.is_dir() else {}


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``signed_regression``) or the user's own TOML file.

    A string is a path when it names an existing file or ends in ``.toml``.

    Raises:
        ScenarioError: Unknown name (listing the shipped ones), unreadable file,
            or a missing or malformed key.
    """
    text = str(name_or_path)
    path = Path(text)
    if not (isinstance(name_or_path, Path) or text.endswith(".toml") or path.is_file()):
        shipped = _shipped()
        if text not in shipped:
            raise ScenarioError(f"Unknown scenario '{text}'", expected="a shipped scenario or a .toml path",
                                found=f"'{text}'; known: {', '.join(shipped) or 'none'}",
                                fix="pick one of those names (probe scenarios lists them), or pass a path to a TOML file")
        path = shipped[text]
    if not path.is_file():
        raise ScenarioError(f"Scenario file {path} does not exist", expected="a TOML file",
                            found="nothing at that path", fix="check the path")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"Scenario file {path} is not valid TOML", expected="a TOML document",
                            found=str(exc), fix="fix the syntax at that line") from None
    return replace(parse_scenario(raw, str(path)), path=str(path))


def list_scenarios() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped scenario, sorted by file name."""
    return [(name, load_scenario(path).description) for name, path in _shipped().items()]
