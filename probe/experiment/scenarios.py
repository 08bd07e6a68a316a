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
    target_loss = 0.05       # or, for a classifier, target_accuracy = 0.9
    seeds = 10

Optional keys of ``[model]`` (``norm``, ``dropout``) and ``[train]`` (``loss``,
``target_accuracy``, ``momentum``, ``targets``) are described in
:mod:`probe.experiment.scenario_specs`. A classification generator (see
``CLASSES`` in :mod:`probe.experiment.generators`) or file makes the task a
classification: cross-entropy over one logit per class, accuracy tracked.

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
from dataclasses import dataclass, field, replace
from pathlib import Path

from probe.core.errors import ScenarioError
from probe.core.limits import MAX_DATA_SEED, MAX_LR, MAX_SCENARIO_FILE_BYTES, MAX_SEEDS, format_bytes
from probe.experiment.file_data import load_file_data
from probe.experiment.generators import CLASSES, GENERATORS, SKLEARN_SIZES
from probe.experiment.scenario_checks import (TARGET_FACTORS, _bad, _check_budget, _check_choice,
                                              _check_float, _check_int, _check_limits, _check_steps,
                                              _check_training_memory, _section)
from probe.experiment.scenario_specs import (DEFAULT_N_EVAL, OPTIMIZERS, DataSpec, ModelSpec, TrainSpec,
                                             parse_model, parse_train)

__all__ = ["DEFAULT_N_EVAL", "OPTIMIZERS", "DataSpec", "ModelSpec", "Scenario", "TrainSpec", "list_scenarios",
           "load_scenario", "parse_scenario", "scenarios_dir"]
_EVAL_BATCH = 8192  # the largest evaluation batch of the diagnostics (member_bytes counts it)


def scenarios_dir() -> Path:
    """The folder of shipped scenarios.

    ``probe/scenario_files`` is a link to the top-level ``scenarios/`` folder in a
    source checkout and a copy of it in a built wheel.
    """
    return Path(__file__).resolve().parents[1] / "scenario_files"


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
    #: a file scenario's (train, eval) sets, read once and shared by copies made with overrides
    datasets: tuple = field(default=(), compare=False, repr=False)

    @property
    def target_measure(self) -> str:
        """``loss`` (steps until the smoothed loss is <= the target) or ``accuracy`` (>= the target)."""
        return "loss" if self.train.target_accuracy is None else "accuracy"

    @property
    def target(self) -> float:
        """The primary target: ``target_loss`` or ``target_accuracy``."""
        return self.train.target_loss if self.train.target_accuracy is None else self.train.target_accuracy

    @property
    def targets(self) -> tuple[float, ...]:
        """The levels steps to target are measured at, hardest first, with any listed in ``train.targets``.

        Loss: ``target_loss`` x 1, 2, 4, 8, ascending. Accuracy: the error rate
        ``1 - target_accuracy`` x 1, 2, 4, 8 (levels above 0 only), descending.
        """
        if self.train.target_accuracy is None:
            base = self.train.target_loss
            levels = {float(f"{base * k:.12g}") for k in TARGET_FACTORS} | set(self.train.targets)
            return tuple(sorted(levels))
        err = 1.0 - self.train.target_accuracy
        levels = {float(f"{1.0 - err * k:.12g}") for k in TARGET_FACTORS if 1.0 - err * k > 0}
        return tuple(sorted(levels | set(self.train.targets), reverse=True))

    @property
    def outputs(self) -> int:
        """One logit per class under cross-entropy, else one output."""
        return self.data.n_classes if self.train.loss == "cross_entropy" else 1

    @property
    def widths(self) -> list[int]:
        """``[n_features, hidden..., outputs]``."""
        return [self.data.n_features, *self.model.hidden, self.outputs]

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
                "data": _data_dict(self.data), "model": {"hidden": list(self.model.hidden),
                                                         "init": self.model.init, "norm": self.model.norm,
                                                         "dropout": self.model.dropout},
                "train": vars(self.train).copy(), **({"extra": self.extra} if self.extra else {})}


def _data_dict(data: DataSpec) -> dict:
    doc = {k: v for k, v in vars(data).items() if k != "source"}
    if data.source is not None:
        doc["source"] = data.source.to_dict()
    return doc


def parse_scenario(raw: dict, where: str, *, max_memory: int | None = None,
                   base: Path | None = None) -> Scenario:
    """Validate a parsed TOML document into a :class:`Scenario`.

    Args:
        raw: The parsed document.
        where: The file or name, for messages.
        max_memory: Memory budget in bytes for the limits; None: the default.

    Raises:
        ScenarioError: Naming the first missing or malformed key, or the first
            limit exceeded (see the module docstring).
        DataError: A ``[data] path`` file that cannot be read.
        base: The folder relative data paths resolve against (the TOML's); None: the working folder.
    """
    max_memory = _check_budget(max_memory, where)
    for key in ("name", "description"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ScenarioError(f"Scenario {where} is missing the key '{key}'", expected=f"{key} = \"...\" at the top",
                                found=repr(raw.get(key)), fix=f"add a {key} line before the first [table]")
    on_file = isinstance(raw.get("data"), dict) and "path" in raw["data"]
    d = None if on_file else _section(raw, "data", where)  # sections are checked in file order
    m, t = (_section(raw, s, where) for s in ("model", "train"))
    if on_file:
        source, seed, datasets = load_file_data(raw["data"], where, base or Path.cwd(), max_memory)
        classes = int(max(float(d.y.max()) for d in datasets)) + 1 if source.task == "classification" else 0
        data = DataSpec("file", datasets[0].X.shape[0], datasets[0].X.shape[1], seed=seed,
                        n_eval=datasets[1].X.shape[0], source=source, n_classes=classes)
        return _finish(raw, where, data, m, t, max_memory, datasets)
    gen = _check_choice("data.generator", d["generator"], where, sorted(GENERATORS))
    data = DataSpec(gen, _check_int("data.n_samples", d["n_samples"], where),
                    _check_int("data.n_features", d["n_features"], where),
                    seed=_check_int("data.seed", d.get("seed", 0), where, minimum=0, maximum=MAX_DATA_SEED),
                    n_eval=_check_int("data.n_eval", d.get("n_eval", DEFAULT_N_EVAL), where),
                    noise=_check_float("data.noise", d.get("noise", 0.0), where, positive=False),
                    n_classes=CLASSES.get(gen, 0))
    if gen in SKLEARN_SIZES:
        total, width = SKLEARN_SIZES[gen]
        if data.n_features != width:
            raise _bad(where, "data.n_features", f"{width} (the {gen} data's width)",
                       data.n_features, f"set n_features = {width}")
        if data.n_samples >= total:
            raise _bad(where, "data.n_samples", f"fewer than the {total} {gen} samples",
                       data.n_samples, f"leave some for evaluation, e.g. n_samples = {int(total * 0.8)}")
        data = replace(data, n_eval=min(data.n_eval, total - data.n_samples))
    return _finish(raw, where, data, m, t, max_memory, ())


def _finish(raw: dict, where: str, data: DataSpec, m: dict, t: dict, max_memory: int | None,
            datasets: tuple) -> Scenario:
    """The model and train sections, then the whole scenario's limits."""
    model = parse_model(m, where)
    train = parse_train(t, where, data.task)
    if model.norm == "batch" and (train.batch_size == 1 or data.n_samples % train.batch_size == 1):
        raise _bad(where, "train.batch_size", "batches of at least 2 samples under norm = \"batch\" "
                   "(BatchNorm's batch variance needs two)",
                   f"{train.batch_size}, which leaves a last batch of 1 of the {data.n_samples} samples",
                   "change batch_size by one, or use norm = \"layer\"")
    known = {"name", "description", "data", "model", "train"}
    extra = {k: v for k, v in raw.items() if k not in known}
    scenario = Scenario(raw["name"], raw["description"].strip(), data, model, train, extra=extra,
                        max_memory=max_memory, datasets=datasets)
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
    return replace(parse_scenario(raw, str(path), max_memory=max_memory, base=path.resolve().parent),
                   path=str(path))


def list_scenarios() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped scenario, sorted by file name."""
    return [(name, load_scenario(path).description) for name, path in _shipped().items()]
