"""The sweep cache: one JSON file per finished cell, named by the cell's content hash.

``DIR/<key>.json`` holds ``{"key", "probe", "settings", "record"}``. Files are
written atomically (:func:`probe.core.io.atomic_write_text`) as each cell
finishes, so an interrupted sweep keeps every cell that completed and a reader
never sees half a file. Only successful cells are stored: a failed cell is
tried again on the next run. A file that cannot be read or does not match its
key counts as missing.
"""

from __future__ import annotations

import json
from pathlib import Path

from probe.core.errors import ProbeError
from probe.core.io import atomic_write_text, check_output_path
from probe.core.version import __version__


class SweepCache:
    """Cell records under ``folder`` (created when the first one is stored).

    Args:
        folder: The cache folder.

    Raises:
        ProbeError: ``folder`` is a file or cannot be written.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = check_output_path(folder, directory=True)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored record of ``key``, or None when missing, unreadable or for another key."""
        try:
            doc = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("key") != key or not isinstance(doc.get("record"), dict):
            return None
        return doc["record"]

    def put(self, key: str, settings: dict, record: dict) -> None:
        """Store a finished cell's record atomically."""
        doc = {"key": key, "probe": __version__, "settings": settings, "record": record}
        try:
            atomic_write_text(self._path(key), json.dumps(doc, allow_nan=False) + "\n")
        except OSError as exc:
            raise ProbeError(f"Cannot write to the sweep cache {self.folder}", expected="a writable folder",
                             found=str(exc)[:200], fix="check the path, its permissions and the free space") from None
