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

    A file output must be a new path or an existing regular file.

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
    if path.exists() and not directory and not path.is_file():
        # a device (/dev/full), a pipe or a socket: probe replaces outputs atomically, which
        # would replace the device node itself, and cannot confirm that the data arrived
        raise ProbeError(f"Cannot write to {path}", expected="a regular file (new or existing)",
                         found="a device, pipe or socket", fix="write to a file, then copy it where it must go")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise ProbeError(f"Cannot write to {path}", expected="a writable folder to hold it",
                         found=f"{ancestor} is {'not a folder' if not ancestor.is_dir() else 'not writable'}",
                         fix="choose another path")
    return path


STAGING_PREFIX = ".probe-staging-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def clean_stale_staging(folder: str | Path) -> None:
    """Remove staging folders left in ``folder`` by probe runs that were killed (SIGKILL, power loss).

    A staging folder is named ``.probe-staging-<pid>-<random>``; it is stale when
    that process no longer runs.
    """
    import shutil

    folder = Path(folder)
    if not folder.is_dir():
        return
    for entry in folder.glob(STAGING_PREFIX + "*"):
        pid = entry.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if entry.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


class StagedOutputs:
    """One output set (files and folders), built beside its destinations and published all at once.

    Each output is written to a staging folder in its destination's own folder
    (so publishing is a rename on the same file system, never a copy). Nothing
    appears at a destination until :meth:`publish`; leaving the ``with`` block
    without publishing (an error, Ctrl-C) removes everything staged. Staging
    folders of runs that were killed outright are removed by the next run that
    writes to the same folder.

    Example::

        with StagedOutputs() as outputs:
            write_json(outputs.stage("out.json"))
            write_report(outputs.stage("report.md"))
            outputs.publish()
    """

    def __init__(self) -> None:
        self._staging: dict[Path, Path] = {}
        self._items: list[tuple[Path, Path]] = []
        self.published: list[Path] = []

    def stage(self, final: str | Path) -> Path:
        """The path to write instead of ``final`` (its folder is created if missing)."""
        final = Path(final)
        parent = final.parent
        if any(f == final for _, f in self._items):
            raise ValueError(f"{final} is staged twice")
        if parent not in self._staging:
            parent.mkdir(parents=True, exist_ok=True)
            clean_stale_staging(parent)
            self._staging[parent] = Path(tempfile.mkdtemp(dir=parent, prefix=f"{STAGING_PREFIX}{os.getpid()}-"))
        staged = self._staging[parent] / final.name
        self._items.append((staged, final))
        return staged

    def publish(self) -> list[Path]:
        """Move every staged output into place (replacing older ones); returns the destinations."""
        for staged, final in self._items:
            if not staged.exists() and not staged.is_symlink():
                continue  # staged but never written: nothing to publish
            if staged.is_dir() and final.is_dir() and not final.is_symlink():
                os.replace(final, self._staging[final.parent] / f".old-{final.name}")
            os.replace(staged, final)
            self.published.append(final)
        self.discard()
        return self.published

    def discard(self) -> None:
        """Remove every staging folder (and what is in it)."""
        import shutil

        for folder in self._staging.values():
            shutil.rmtree(folder, ignore_errors=True)
        self._staging.clear()
        self._items.clear()

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def check_suffix(path: str | Path, option: str, suffixes: tuple[str, ...], kind: str) -> Path:
    """An output path whose name says what probe writes into it (never renamed behind the user's back).

    Raises:
        ProbeError: The suffix is not one of ``suffixes``.
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        from probe.core.errors import ProbeError

        raise ProbeError(f"Cannot write {kind} to {path}", expected=f"a file name ending in {' or '.join(suffixes)}",
                         found=f"'{path.suffix or 'no suffix'}'", fix=f"use {option} {path.with_suffix(suffixes[0])}")
    return path


def check_report_path(path: str | Path) -> Path:
    """A report path, which must end in ``.md`` (probe writes markdown, and says so rather than renaming)."""
    return check_suffix(path, "--report", (".md",), "a markdown report")
