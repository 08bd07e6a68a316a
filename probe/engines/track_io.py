"""The history file of ``probe.track``: JSON lines, each flushed as it is written.

The first line is a header (``{"format": "probe-track/1", ...}``), every other
line one recorded step. Lines are strict JSON (NaN and infinities as null).
A run that crashes or is killed keeps every line written before; at worst its
last line is cut short, and :func:`read_lines` skips such a line with a note.
"""

from __future__ import annotations

import json
from pathlib import Path

from probe.core.errors import ProbeError
from probe.core.io import check_output_path, finite_json

FORMAT = "probe-track/1"


def json_line(doc: dict) -> str:
    """One strict-JSON line (no newline inside), newline-terminated; NaN and infinities as null."""
    try:  # the usual record is all finite: one pass in json's C encoder
        return json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n"
    except ValueError:  # a non-finite float somewhere (a diverged run): nulls instead
        return json.dumps(finite_json(doc), allow_nan=False, separators=(",", ":")) + "\n"


class LineWriter:
    """Appends lines to a new history file (an existing one is replaced), flushing each.

    Raises:
        ProbeError: The path cannot be written (a folder, a device, a read-only folder).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = check_output_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, doc: dict) -> None:
        self._file.write(json_line(doc))
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_lines(path: str | Path) -> tuple[dict | None, list[dict], list[str]]:
    """The header, the records and notes about what was skipped, from a history file.

    A last line that is not valid JSON and has no newline (a run killed
    mid-write) is skipped with a note; any other line that is not a JSON object
    is an error.

    Raises:
        ProbeError: Missing, unreadable, not UTF-8 or corrupt before its last line.
    """
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"Cannot read the history {path}", expected="a JSON-lines file written by probe.track",
                         found="no such file" if not path.exists() else "not a regular file",
                         fix="check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProbeError(f"The history {path} is not text", expected="UTF-8 JSON lines",
                         found=f"undecodable bytes at offset {exc.start}",
                         fix="pass the .jsonl file probe.track wrote") from None
    lines = text.split("\n")
    ended = bool(lines) and lines[-1] == ""  # every line probe writes ends in a newline: one without was cut
    if ended:
        lines.pop()
    header, records, notes = None, [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not ended:
                notes.append(f"{path}: line {number} is cut short (a run stopped mid-write) and was skipped")
                break
            raise ProbeError(f"The history {path} is corrupt at line {number}", expected="one JSON object a line",
                             found=f"{exc.msg} (column {exc.colno})",
                             fix="pass the file probe.track wrote, unedited") from None
        if not isinstance(doc, dict):
            raise ProbeError(f"The history {path} is corrupt at line {number}", expected="one JSON object a line",
                             found=f"a JSON {type(doc).__name__}", fix="pass the file probe.track wrote, unedited")
        if number == 1 and doc.get("format") is not None:
            header = doc
        else:
            records.append(doc)
    return header, records, notes
