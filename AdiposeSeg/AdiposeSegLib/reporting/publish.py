"""A case's result files appear together or not at all.

Files are written into a staging folder beside the destination, then moved into place with the
summary JSON last: the summary is the mark of a complete set. An earlier set of the same case is
moved aside first and restored if anything fails; a killed run leaves only dot-named leftovers,
which `clean_leftovers` removes and nothing ever reads as a result.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from ..errors import OutputError
from .safe_write import _explain

STAGING_PREFIX = ".adiposeseg-staging-"
BACKUP_MARK = ".adiposeseg-old-"


def _tag() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@contextlib.contextmanager
def staging_folder(destination: str | os.PathLike):
    """A fresh folder beside `destination` (same file system, so moves are renames); removed afterwards."""
    destination = Path(destination)
    try:
        destination.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{_tag()}-", dir=destination))
    except OSError as exc:
        raise _explain(destination / "x", exc) from None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(staged: dict[str, Path], destination: str | os.PathLike, marker: str, overwrite: bool,
            replaces: list[str] | None = None) -> None:
    """Move staged files (final name -> staged path) into `destination`, `marker` last.

    Existing files of the same names (and any in `replaces`, e.g. the earlier set's optional
    files) are an error unless `overwrite`; with it they are moved aside and restored on failure.
    """
    destination = Path(destination)
    names = [n for n in staged if n != marker] + [marker]
    old = sorted({n for n in list(staged) + list(replaces or []) if (destination / n).exists()})
    if old and not overwrite:
        raise OutputError(f"{destination / old[0]}: already exists; choose another output folder or case id "
                          "(or --overwrite to replace that case's results)")
    # the old set's marker goes aside first: from here on it is not taken as complete
    old.sort(key=lambda n: n != marker)
    aside, placed = [], []
    tag = _tag()
    try:
        for name in old:
            backup = destination / f".{name}{BACKUP_MARK}{tag}"
            os.replace(destination / name, backup)
            aside.append((name, backup))
        for name in names:
            os.replace(staged[name], destination / name)
            placed.append(destination / name)
    except BaseException as exc:
        for path in placed:
            with contextlib.suppress(OSError):
                path.unlink()
        for name, backup in aside:
            with contextlib.suppress(OSError):
                os.replace(backup, destination / name)
        if isinstance(exc, OSError):
            raise _explain(destination / (placed[-1].name if placed else names[0]), exc) from None
        raise
    for _, backup in aside:
        with contextlib.suppress(OSError):
            backup.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(name: str) -> tuple[str, int]:
    """(host, pid) from a staging folder's or a set-aside file's name."""
    try:
        if name.startswith(STAGING_PREFIX):
            host, pid, _random = name[len(STAGING_PREFIX):].rsplit("-", 2)
        else:
            host, pid = name.split(BACKUP_MARK, 1)[1].rsplit("-", 1)
        return host, int(pid)
    except ValueError:
        return "", -1


def clean_leftovers(folder: str | os.PathLike, max_age_s: float = 24 * 3600) -> list[str]:
    """Remove what killed runs left in `folder`: staging folders and set-aside files of processes
    that are gone (on this host), or older than a day (any host: cluster shards share folders).
    A set-aside file is never put back: its set was being replaced, and a case without its summary
    is simply computed again."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    host = socket.gethostname()
    for entry in folder.iterdir():
        name = entry.name
        if not (name.startswith(STAGING_PREFIX) or (name.startswith(".") and BACKUP_MARK in name)):
            continue
        owner_host, pid = _owner(name)
        try:
            age = time.time() - entry.stat().st_mtime
        except OSError:
            continue
        if not ((owner_host == host and not _alive(pid)) or age > max_age_s):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(name)
    return removed
