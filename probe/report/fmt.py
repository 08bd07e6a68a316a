"""Number formatting shared by every table, so terminal and markdown agree digit for digit."""

from __future__ import annotations

import re

MISSING = "—"


def fmt(value: float | None, spec: str = ".3g") -> str:
    """Format a number that may be undefined (``None``, e.g. a ratio 0/0) as a dash."""
    return MISSING if value is None else format(value, spec)


def pct(value: float | None) -> str:
    """A share in [0, 1] as a percentage with one decimal."""
    return MISSING if value is None else f"{100 * value:.1f}%"



class Legible:
    """A rich ``Table`` that stays legible in a narrow terminal: values are never cut.

    When the table fits, it is shown as it is. Otherwise it is redrawn compactly:
    light rules instead of boxes, no outer padding, every column as wide as its
    widest cell (a variant name or a number is never cut or wrapped), and the
    headers wrap onto more lines, at spaces (``pos_pos`` becomes ``pos`` over
    ``pos``, still told apart from ``pos neg``). If that is still too wide, text
    cells (names, verdicts) wrap between their words; numbers never do.
    """

    def __init__(self, table) -> None:
        self.table = table

    def __rich_console__(self, console, options):
        if _natural_width(console, options, self.table, "maximum") <= options.max_width:
            yield self.table
            return
        for tight, wrap_text in ((False, False), (True, False), (True, True)):
            compact = _compact(self.table, tight=tight, wrap_text=wrap_text)
            if _least_width(compact) <= options.max_width:
                break
        yield compact


def _least_width(table) -> int:
    """Width of a compact table with every column at its minimum: cells, padding, one-space rules."""
    pad = table.padding[1] + table.padding[3]
    return sum(c.min_width for c in table.columns) + len(table.columns) * pad + len(table.columns) - 1


def _natural_width(console, options, table, which: str) -> int:
    """The table's width with no limit (rich clamps measurements to the console otherwise)."""
    from rich.measure import Measurement

    return getattr(Measurement.get(console, options.update(max_width=10**6), table), which)


_NUMBER = re.compile(r"^[-+0-9.,:%/eE—x ]*$")  # cells that are numbers, ratios, intervals or a dash


def _compact(table, tight: bool, wrap_text: bool = False):
    """The compact drawing; ``wrap_text`` also lets text columns (not numbers) wrap between words."""
    import copy

    from rich import box
    from rich.cells import cell_len
    from rich.text import Text

    compact = copy.copy(table)
    compact.columns = [copy.copy(c) for c in table.columns]
    compact.box = box.SIMPLE_HEAD
    compact.padding = (0, 0) if tight else (0, 1)
    compact.pad_edge = False
    compact.show_edge = False
    compact.collapse_padding = True
    for col in compact.columns:
        header = col.header.replace("_", " ") if isinstance(col.header, str) else col.header
        col.header = header
        words = str(header).split() or [""]
        cells = [c.plain if isinstance(c, Text) else str(c) for c in col._cells]
        text = wrap_text and not all(_NUMBER.match(c) for c in cells)
        if text:  # a name or a verdict may wrap between its words; a number never
            words += [w for c in cells for w in c.split()]
            widest = 0
        else:
            widest = max((cell_len(c) for c in cells), default=1)
        col.min_width = max(widest, max(cell_len(w) for w in words), 1)
        col.width = None if text else col.min_width  # fixed: rich would otherwise squeeze a value
        col.no_wrap = False
        col.overflow = "fold"
    return compact


def legible_group(*items):
    """A rich ``Group`` of the items, each table wrapped in :class:`Legible`."""
    from rich.console import Group
    from rich.table import Table

    return Group(*(Legible(item) if isinstance(item, Table) else item for item in items))
