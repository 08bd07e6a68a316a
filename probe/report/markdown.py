"""Markdown reports with PNG figures beside them, written atomically.

A report ``out/name.md`` keeps its figures in ``out/name_files/``, linked by
relative paths. Everything is built in a temporary folder first and moved into
place at the end, the markdown last: an interrupted run leaves no half report.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from probe.core.io import StagedOutputs, check_report_path
from probe.core.version import __version__


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned)."""
    rows = [[str(c) for c in row] for row in rows]
    head = "| " + " | ".join(h.replace("|", "\\|") for h in header) + " |"
    sep = "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"
    body = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join([head, sep, *body])


def environment_lines(command: str, device: str = "cpu") -> list[str]:
    """What a reader needs to rerun the report."""
    return [f"- command: `{command}`", f"- probe {__version__}, torch {torch.__version__}, "
            f"Python {platform.python_version()}, device {device}, {torch.get_num_threads()} CPU threads"]


class ReportWriter:
    """Collects markdown text and figures; :meth:`commit` moves them into place.

    ``name.md`` and its figures folder ``name_files/`` are staged as part of an
    output set (:class:`probe.core.io.StagedOutputs`): the caller's, published
    with the rest of its outputs, or the writer's own, published by
    :meth:`commit`. Use as a context manager: on an exception nothing is left behind.

    Args:
        path: The markdown file to write; it must end in ``.md``.
        outputs: The output set to stage into (default: the writer's own).

    Raises:
        ProbeError: ``path`` does not end in ``.md``.
    """

    def __init__(self, path: str | Path, outputs: StagedOutputs | None = None) -> None:
        self.path = check_report_path(path)
        self.files_name = f"{self.path.stem}_files"
        self._own = outputs is None
        self.outputs = StagedOutputs() if outputs is None else outputs
        self.markdown = self.outputs.stage(self.path)
        self.files = self.outputs.stage(self.path.parent / self.files_name)
        self.files.mkdir()
        self.parts: list[str] = []
        self.figures: list[str] = []

    def add(self, *text: str) -> None:
        """Append markdown paragraphs."""
        self.parts.extend(text)

    def figure(self, fig: Figure, name: str, alt: str) -> str:
        """Save ``fig`` as a PNG and append its image link; returns the relative path."""
        fig.savefig(self.image_path(name, alt), format="png")
        return f"{self.files_name}/{name}"

    def image_path(self, name: str, alt: str) -> Path:
        """A path in the figures folder for a PNG written by other code; appends its link."""
        rel = f"{self.files_name}/{name}"
        self.figures.append(rel)
        self.add(f"![{alt}]({rel})")
        return self.files / name

    def commit(self) -> Path:
        """Finish the markdown; publish it with its figures unless the caller's output set will."""
        if not self.figures:
            self.files.rmdir()  # an older report's figures stay where they are
        self.markdown.write_text("\n\n".join(self.parts).rstrip() + "\n", encoding="utf-8")
        if self._own:
            self.outputs.publish()
        return self.path

    def discard(self) -> None:
        if self._own:
            self.outputs.discard()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def rich_table_markdown(table, heading: int | None = None) -> str:
    """A rich ``Table`` as a markdown table, so reports show exactly the terminal's numbers.

    The title becomes a bold line above (with ``heading=N``, a level-N heading
    instead, so a section is not titled twice), the caption an italic line below.
    """
    header = [str(col.header) for col in table.columns]
    columns = [[str(cell) for cell in col.cells] for col in table.columns]
    rows = list(zip(*columns)) if columns else []
    parts = []
    if table.title:
        parts.append(f"{'#' * heading} {table.title}\n" if heading else f"**{table.title}**\n")
    parts.append(md_table(header, rows))
    if table.caption:
        parts.append(f"\n*{table.caption}*")
    return "\n".join(parts)
