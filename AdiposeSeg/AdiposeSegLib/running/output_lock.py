"""One batch at a time per output folder (or per shard of it).

Two runs writing one folder with different options each report "done" while summary.csv mixes
both runs' rows. A run holds `.adiposeseg-lock-<scope>` (pid, host, start, command) while it
works; shards of one job array hold one lock each and may run together, but never beside a
whole-folder run. A lock whose process is gone (same host) or that is older than a day is stale
and taken over.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputError
from ..reporting.publish import process_alive

LOCK_PREFIX = ".adiposeseg-lock-"
STALE_AFTER_S = 24 * 3600


def _holder(path: Path) -> dict | None:
    """The live holder of a lock file, or None when the file is gone or stale."""
    try:
        record = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or age > STALE_AFTER_S:
        return None
    if record.get("host") == socket.gethostname() and not process_alive(int(record.get("pid", -1))):
        return None
    return record


def _conflicts(folder: Path, scope: str) -> list[tuple[Path, dict]]:
    found = []
    for entry in folder.glob(LOCK_PREFIX + "*"):
        other = entry.name[len(LOCK_PREFIX):]
        if scope == "all" or other == "all" or other == scope:
            holder = _holder(entry)
            if holder is not None:
                found.append((entry, holder))
    return found


@contextmanager
def output_lock(folder: str | os.PathLike, shard: tuple[int, int] | None = None, command: str = "batch"):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scope = "all" if shard is None else f"shard-{shard[0]}-of-{shard[1]}"
    path = folder / f"{LOCK_PREFIX}{scope}"
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "command": command}
    for _attempt in range(2):
        conflicts = _conflicts(folder, scope)
        if conflicts:
            entry, holder = conflicts[0]
            raise OutputError(f"{folder}: another AdiposeSeg run is writing into this folder ({holder.get('command', '?')}, "
                              f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}; lock "
                              f"{entry.name}). Wait for it to finish or give another output folder")
        try:
            if path.exists() and _holder(path) is None:
                path.unlink(missing_ok=True)   # stale: its holder is gone
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue   # another run took it between the check and now: check again
        except OSError as exc:
            raise OutputError(f"{folder}: cannot create the lock file ({exc.strerror or exc})") from None
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        break
    else:
        raise OutputError(f"{folder}: another AdiposeSeg run took the folder's lock at the same moment; try again")
    try:
        yield path
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
