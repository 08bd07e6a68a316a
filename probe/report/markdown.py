"""Markdown reports with PNG figures beside them, written atomically.

A report ``out/name.md`` keeps its figures in ``out/name_files/``, linked by
relative paths. Everything is built in a temporary folder first and moved into
place at the end, the markdown last: an interrupted run leaves no half report.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from probe.core.io import atomic_write_text


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned)."""
    rows = [[str(c) for c in row] for row in rows]
    head = "| " + " | ".join(h.replace("|", "\\|") for h in header) + " |"
    sep = "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"
    body = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join([head, sep, *body])


def environment_lines(command: str, device: str = "cpu") -> list[str]:
    """What a reader needs to rerun the report."""
    from probe import __version__

    return [f"- command: `{command}`", f"- probe {__version__}, torch {torch.__version__}, "
            f"Python {platform.python_version()}, device {device}, {torch.get_num_threads()} CPU threads"]


class ReportWriter:
    """Collects markdown text and figures; :meth:`commit` moves them into place.

    Use as a context manager: on an exception nothing is left behind.

    Args:
        path: The markdown file to write (``.md``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".md":
            self.path = self.path.with_suffix(".md")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.files_name = f"{self.path.stem}_files"
        self.tmp = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.stem}."))
        (self.tmp / self.files_name).mkdir()
        self.parts: list[str] = []
        self.figures: list[str] = []

    def add(self, *text: str) -> None:
        """Append markdown paragraphs."""
        self.parts.extend(text)

    def figure(self, fig: Figure, name: str, alt: str) -> str:
        """Save ``fig`` as a PNG and append its image link; returns the relative path."""
        import matplotlib.pyplot as plt

        rel = f"{self.files_name}/{name}"
        fig.savefig(self.tmp / rel, format="png")
        plt.close(fig)
        self.figures.append(rel)
        self.add(f"![{alt}]({rel})")
        return rel

    def image_path(self, name: str, alt: str) -> Path:
        """A path in the figures folder for a PNG written by other code; appends its link."""
        rel = f"{self.files_name}/{name}"
        self.figures.append(rel)
        self.add(f"![{alt}]({rel})")
        return self.tmp / rel

    def commit(self) -> Path:
        """Move figures then the markdown into place."""
        final_files = self.path.parent / self.files_name
        if not self.figures:
            (self.tmp / self.files_name).rmdir()
        elif final_files.exists():
            old = self.tmp / "old"
            os.replace(final_files, old)
        if self.figures:
            os.replace(self.tmp / self.files_name, final_files)
        atomic_write_text(self.path, "\n\n".join(self.parts).rstrip() + "\n")
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.path

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def rich_table_markdown(table) -> str:
    """A rich ``Table`` as a markdown table, so reports show exactly the terminal's numbers.

    The title becomes a bold line above, the caption an italic line below.
    """
    header = [str(col.header) for col in table.columns]
    columns = [[str(cell) for cell in col.cells] for col in table.columns]
    rows = list(zip(*columns)) if columns else []
    parts = []
    if table.title:
        parts.append(f"**{table.title}**\n")
    parts.append(md_table(header, rows))
    if table.caption:
        parts.append(f"\n*{table.caption}*")
    return "\n".join(parts)
