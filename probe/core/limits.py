"""Documented limits that probe enforces before it materialises or runs anything.

A file can declare far more data than it holds (a compressed zip, a stride-0
view), and a scenario can ask for more work than a machine can do. probe checks
declared sizes against these limits first and refuses with the numbers; each
limit names the option that raises it.
"""

from __future__ import annotations

from probe.core.errors import ProbeError

GIB = 2**30
DEFAULT_MAX_MEMORY = 4 * GIB  # bytes of tensors/arrays one input may declare (--max-memory)
MAX_HIDDEN_LAYERS = 64  # deeper chains are refused: every engine walks the layers one by one
MAX_MEMBER_STEPS = 20_000_000  # compare: members x optimiser steps (--epochs, --seeds)


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``12 MiB``, ``300 B``: sizes as a person reads them."""
    for unit, size in (("TiB", 2**40), ("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def parse_memory(text: str) -> int:
    """``--max-memory`` values: ``8GiB``, ``512MiB``, ``2G``, or a byte count.

    Raises:
        ProbeError: Not a positive size.
    """
    units = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
             "mib": 2**20, "g": GIB, "gb": GIB, "gib": GIB, "t": 2**40, "tb": 2**40, "tib": 2**40}
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("kmgtib")
    unit = raw[len(number):]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise ProbeError(f"Cannot read the memory limit '{text}'", expected="a size such as 8GiB or 512MiB",
                         found=repr(text), fix="write e.g. --max-memory 8GiB")
    return int(value)


def check_bytes(nbytes: float, what: str, max_memory: int | None = None) -> None:
    """Refuse ``what`` when it declares more than ``max_memory`` bytes (default 4 GiB).

    Call it with the *declared* size (shape x element size), before anything is allocated.
    """
    limit = DEFAULT_MAX_MEMORY if max_memory is None else max_memory
    if nbytes > limit:
        raise ProbeError(f"{what} is too large to load", expected=f"at most {format_bytes(limit)}",
                         found=f"{format_bytes(nbytes)} declared",
                         fix="check the file; if it is really that large and the machine has the memory, "
                             f"raise the limit with --max-memory (e.g. --max-memory "
                             f"{format_bytes(2 * nbytes).replace(' ', '')})")


# Scenario limits (probe.experiment.scenarios), refused when a scenario is loaded or overridden
MAX_SEEDS = 1000  # train.seeds and --seeds
MAX_MEMBER_PARAMETERS = 10_000_000  # weights and biases of one network: sum of (fan_in + 1) x fan_out
MAX_DATA_SEED = 2**64 - 1  # data.seed: the range of torch.Generator.manual_seed
MAX_SCENARIO_FILE_BYTES = 2**20  # a scenario TOML file (the shipped ones are under 1 KiB)
MAX_LR = 1e6  # train.lr: far above any useful rate, far below float32 overflow in the optimiser's scalars
MAX_MODULE_DEPTH = 32  # an MLP is a chain; a few levels of containers are plenty
MAX_MODULES = 10_000  # 64 hidden layers need ~130 modules; room for dropouts and wrappers
MAX_PICKLE_BYTES = 16 * 2**20  # the pickled part of a file (data.pkl), not its tensor records
