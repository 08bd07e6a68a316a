"""The layers of probe, declared once: a module imports from its own layer or below, never above.

``tests/test_layers.py`` parses every module's imports (function-level and
``TYPE_CHECKING`` ones included) and fails on an import from a higher layer or
on any import cycle between modules. The package face, ``probe/__init__.py``,
sits above every layer and imports lazily; no module inside probe imports it.

The one idea behind the middle layers: two engines (hooks on a trained model,
the batched training ensemble) produce the same few tensors per hidden layer
and feed the same accumulators in ``diagnostics``.
"""

from __future__ import annotations

# (layer name, the packages and modules that make it up), lowest first
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundations", ("probe.core", "probe.layers")),
    ("models", ("probe.models",)),
    ("diagnostics", ("probe.diagnostics",)),
    ("engines", ("probe.engines",)),
    ("circuit", ("probe.circuit",)),
    ("experiment", ("probe.experiment", "probe.compare", "probe.sweep")),
    ("report", ("probe.report",)),
    ("cli", ("probe.cli", "probe.integrations", "probe.__main__")),
)
FACE = "probe"  # the package itself: lazy re-exports for notebooks, above every layer


def layer_of(module: str) -> int:
    """The layer index of a dotted module name (``len(LAYERS)`` for the package face).

    Raises:
        KeyError: The module belongs to no declared layer.
    """
    best, index = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, index = prefix, i
    if index is None:
        if module == FACE:
            return len(LAYERS)
        raise KeyError(f"{module} is in no layer of probe.layers.LAYERS")
    return index
