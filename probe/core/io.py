"""Atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path


def finite_json(obj: object) -> object:
    """``obj`` with every NaN/inf float replaced by None, so that it is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_output_path(path: str | Path, *, directory: bool = False) -> Path:
    """Refuse, before any work starts, an output path that cannot be written.

    Args:
        path: A file to write (or a folder, with ``directory=True``).
        directory: The path is a folder that will be created if missing.

    Raises:
        ProbeError: The path (or its nearest existing ancestor) is of the wrong kind
            or not writable.
    """
    from probe.core.errors import ProbeError

    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        kind = "a folder" if path.is_dir() else "a file"
        raise ProbeError(f"Cannot write to {path}", expected="a folder" if directory else "a file path",
                         found=kind, fix="choose another path")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise ProbeError(f"Cannot write to {path}", expected="a writable folder to hold it",
                         found=f"{ancestor} is {'not a folder' if not ancestor.is_dir() else 'not writable'}",
                         fix="choose another path")
    return path
