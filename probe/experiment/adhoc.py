"""``probe compare relu leaky --data train.csv --target price``: a scenario built on the spot.

The ad-hoc scenario takes these documented defaults, overridable from the
command line: hidden ``[64, 64]`` (``--hidden``), default initialisation,
Adam at lr 1e-3 (``--lr``), batch 128, 30 epochs (``--epochs``), 10 seeds
(``--seeds``); a seeded 80/20 split; features and targets standardised with
the training statistics (``standardize = "both"``), so that the default
``target_loss = 0.1`` means "10% of the target's variance left". It is printed
as TOML and recorded in the JSON (``scenario_toml``) and the report, so that
the run can be repeated with ``--scenario``. ``--drop id,city`` leaves columns
(IDs, categories) out of a CSV. A classification target (integer labels, at
most 20 classes) is inferred as such: its labels are kept as class indices and
the networks train with cross-entropy over one logit per class (``target_loss``
is then a cross-entropy level, and the accuracies are reported next to it).
"""

from __future__ import annotations

from pathlib import Path

from probe.core.errors import ScenarioError
from probe.experiment.scenarios import Scenario, parse_scenario

DEFAULTS = {"hidden": [64, 64], "init": "default", "optimizer": "adam", "lr": 1e-3, "batch_size": 128,
            "epochs": 30, "target_loss": 0.1, "seeds": 10}


def parse_hidden(text: str) -> list[int]:
    """``"64,64"`` as ``[64, 64]``."""
    try:
        widths = [int(w) for w in text.replace(" ", "").split(",") if w]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise ScenarioError(f"--hidden {text!r} is not a list of widths", expected="positive integers "
                            "separated by commas", found=repr(text), fix="write e.g. --hidden 64,64")
    return widths


def adhoc_raw(data: str | Path, target: str | None, *, hidden: list[int] | None = None,
              epochs: int | None = None, lr: float | None = None, drop: list[str] | None = None,
              seeds: int | None = None) -> dict:
    """The scenario document for ``--data`` (paths absolute, so the TOML runs from anywhere)."""
    path = Path(data).expanduser().resolve()
    data_section: dict = {"path": str(path), "standardize": "both", "eval_fraction": 0.2, "seed": 0}
    if target is not None:
        data_section["target"] = target
    if drop:
        data_section["drop"] = list(drop)
    return {
        "name": f"adhoc_{path.stem}",
        "description": f"probe compare on {path.name} (ad-hoc scenario from --data)",
        "data": data_section,
        "model": {"hidden": hidden or DEFAULTS["hidden"], "init": DEFAULTS["init"]},
        "train": {"optimizer": DEFAULTS["optimizer"], "lr": lr if lr is not None else DEFAULTS["lr"],
                  "batch_size": DEFAULTS["batch_size"],
                  "epochs": epochs if epochs is not None else DEFAULTS["epochs"],
                  "target_loss": DEFAULTS["target_loss"], "seeds": seeds or DEFAULTS["seeds"]},
    }


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)


def to_toml(raw: dict) -> str:
    """A scenario document as TOML text (top-level strings, then one table per section)."""
    lines = [f"{k} = {_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for section, table in raw.items():
        if isinstance(table, dict):
            lines += ["", f"[{section}]"] + [f"{k} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def adhoc_scenario(data: str | Path, target: str | None, *, hidden: list[int] | None = None,
                   epochs: int | None = None, lr: float | None = None, drop: list[str] | None = None,
                   seeds: int | None = None, max_memory: int | None = None) -> tuple[Scenario, str]:
    """``(scenario, toml_text)`` for ``probe compare --data FILE --target COLUMN [--drop id,city]``."""
    raw = adhoc_raw(data, target, hidden=hidden, epochs=epochs, lr=lr, drop=drop, seeds=seeds)
    scenario = parse_scenario(raw, f"--data {data}", max_memory=max_memory)
    return scenario, to_toml(raw)
