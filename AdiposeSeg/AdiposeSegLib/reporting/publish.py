"""A case's files appear together or not at all: a result set, or a ground-truth case.

Files are written into a staging folder beside the destination, then moved into place with a
marker last (a result's summary JSON; a dataset's manifest): the marker is the mark of a complete set. An earlier set of the same case is
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


def place_new(source: Path, final: Path) -> None:
    """Give `source`'s content the name `final`, never replacing a file there (a hard link; a copy
    where the file system has none). FileExistsError when `final` exists."""
    try:
        os.link(source, final)
        return
    except FileExistsError:
        raise
    except OSError:
        pass  # e.g. FAT or some network shares: no hard links
    with open(final, "xb") as out, open(source, "rb") as src:
        try:
            shutil.copyfileobj(src, out)
        except BaseException:
            out.close()
            final.unlink()
            raise


def publish(staged: dict[str, Path], destination: str | os.PathLike, marker: str, overwrite: bool,
            replaces: list[str] | None = None, marker_replaces: bool = False, clash_hint: str = "") -> None:
    """Move staged files (name relative to `destination` -> staged path) into place, `marker` last.

    Existing files of the same names (and any in `replaces`, e.g. the earlier set's optional
    files) are an error unless `overwrite`; with it they are moved aside and restored on failure.
    `marker_replaces`: the marker is an index rewritten by every set (a dataset manifest), so it
    replaces its earlier version even without `overwrite` (restored on failure too). Nothing is
    ever written over: a file that appears meanwhile is an error. On any failure nothing of the set
    stays in place.
    """
    destination = Path(destination)
    names = [n for n in staged if n != marker] + [marker]
    old = sorted({n for n in list(staged) + list(replaces or []) if (destination / n).exists()})
    clashes = [n for n in old if not (marker_replaces and n == marker)]
    if clashes and not overwrite:
        raise OutputError(f"{destination / clashes[0]}: already exists; nothing of this case was saved"
                          + (f" ({clash_hint})" if clash_hint else ""))
    # the old set's marker goes aside first: from here on it is not taken as complete
    old.sort(key=lambda n: n != marker)
    aside, placed = [], []
    tag = _tag()
    current = names[0]
    try:
        for current in old:
            final = destination / current
            backup = final.with_name(f".{final.name}{BACKUP_MARK}{tag}")
            os.replace(final, backup)
            aside.append((final, backup))
        for current in names:
            final = destination / current
            final.parent.mkdir(parents=True, exist_ok=True)
            place_new(staged[current], final)
            placed.append(final)
    except BaseException as exc:
        for path in placed:
            with contextlib.suppress(OSError):
                path.unlink()
        for final, backup in aside:
            with contextlib.suppress(OSError):
                os.replace(backup, final)
        if isinstance(exc, FileExistsError):
            raise OutputError(f"{destination / current}: appeared while writing and is not overwritten; "
                              "nothing of this case was saved") from None
        if isinstance(exc, OSError):
            explained = _explain(destination / current, exc)
            raise OutputError(f"{explained}; nothing of this case was saved") from None
        raise
    for _, backup in aside:
        with contextlib.suppress(OSError):
            backup.unlink()


def process_alive(pid: int) -> bool:
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
        if not ((owner_host == host and not process_alive(pid)) or age > max_age_s):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(name)
    return removed
