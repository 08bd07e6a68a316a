"""What every command shares: error handling, progress bars, output checks, JSON emission.

Imports stay light (typer, rich): torch, captum and matplotlib load only
inside the commands that need them, so ``probe --help`` is quick.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from probe.cli.signals import command_started
from probe.core.errors import ProbeError

# Piped output would get rich's 80-column default and truncated tables: use 120 unless told.
out = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120)
err = Console(stderr=True)


class Interrupted(Exception):
    """Raised after an interrupted run has shown what it finished: exit 130, nothing published."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one paragraph on stderr; the caller raises the returned Exit."""
    err.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handles_errors(fn: Callable) -> Callable:
    """Turn ProbeError, OSError and Ctrl-C into one paragraph on stderr and a non-zero exit code.

    Warnings raised by the libraries underneath (numpy, torch, captum) are
    collected rather than printed as they come: when the command fails, probe's
    own paragraph says what is wrong and they are dropped; when it succeeds,
    each distinct one is shown once, as a one-line ``warning:`` (deprecation
    notices about the libraries' own APIs are for developers, and are dropped).
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                command_started()  # a Ctrl-C or SIGTERM that came during start-up is raised here
                result = fn(*args, **kwargs)
            except ProbeError as exc:
                # the message is plain text: '[data]' in it must not be read as rich markup
                raise fail(str(exc), exc.exit_code) from None
            except OSError as exc:  # a disk full, a path that vanished mid-run
                raise fail(f"Could not write or read a file: {exc}. Nothing was published. "
                           "Fix: check the path, the permissions and the free disk space.") from None
            except (KeyboardInterrupt, Interrupted):
                err.print("interrupted: nothing was written")
                raise typer.Exit(130) from None
        shown = [w for w in caught if not issubclass(w.category, (DeprecationWarning, FutureWarning))]
        for message in dict.fromkeys(" ".join(str(w.message).split()) for w in shown):
            err.print(Text.assemble(("warning: ", "yellow"), message), highlight=False, soft_wrap=True)
        return result
    return wrapper


def progress_bar() -> Progress:
    """A rich progress bar with elapsed and estimated remaining time, on stderr (``--json`` stdout stays clean)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err, transient=True,
                    disable=not err.is_terminal)


def _printable(path: Path) -> None:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ProbeError(f"The output path {ascii(str(path))} is not valid UTF-8",
                         expected="a path that can be shown and recorded as text",
                         found="undecodable bytes in the name", fix="choose a name in UTF-8") from None


def check_outputs(*files: Path | None, folder: Path | None = None, report: Path | None = None) -> None:
    """Refuse, before any work starts, outputs that cannot be written or would collide.

    Each must be a new or regular file (not a device such as /dev/full), in a
    writable folder, with a UTF-8 name; no two outputs may be the same path
    (a report also claims its ``NAME_files/`` folder).
    """
    from probe.core.io import check_output_path, check_report_path

    claimed: dict[Path, str] = {}

    def claim(path: Path, what: str) -> None:
        key = Path(os.path.abspath(path))
        if key in claimed:
            raise ProbeError(f"Two outputs point at {path}", expected="a separate path for each output",
                             found=f"{claimed[key]} and {what} both at {path}",
                             fix="give each of --json, --report, --graph, --png its own path")
        claimed[key] = what

    if report is not None:
        _printable(report)
        check_report_path(report)
        check_output_path(report)
        claim(report, "--report")
        claim(report.parent / f"{report.stem}_files", "--report's figures folder")
    for path in files:
        if path is not None and str(path) != "-":
            _printable(path)
            check_output_path(path)
            claim(path, str(path))
    if folder is not None:
        _printable(folder)
        check_output_path(folder, directory=True)


def json_text(doc: dict) -> str:
    """Strict JSON (NaN/inf as null), indented, with a final newline."""
    from probe.core.io import finite_json

    return json.dumps(finite_json(doc), indent=2, allow_nan=False, default=str) + "\n"


def command_line() -> str:
    """The command as typed, for reports."""
    return " ".join(["probe", *sys.argv[1:]])
