"""Atomic file writes: a result appears whole or not at all, and a full disk says so."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from ..errors import OutputError


def _explain(path: Path, exc: BaseException) -> OutputError:
    free = None
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(path.parent).free
    if getattr(exc, "errno", None) == errno.ENOSPC or (free is not None and free < 16 * 2**20):
        return OutputError(f"{path}: the disk is full ({(free or 0) / 2**20:.0f} MiB free); free some space or choose another output folder")
    if getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{path}: no permission to write here; choose another output folder")
    return OutputError(f"{path}: could not be written ({exc})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True):
    """Yield a temporary path beside `path` (same suffixes); move it into place on success.

    With overwrite=False an existing file is never replaced: OutputError instead.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputError(f"{path}: already exists and is not overwritten")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _explain(path, exc) from None
    suffix = "".join(path.suffixes) or ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.partial-{os.getpid()}{suffix}")
    try:
        yield tmp
        if not overwrite:
            # link() fails if the target appeared meanwhile, so a concurrent save cannot be clobbered
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except OutputError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    except FileExistsError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"{path}: already exists and is not overwritten") from None
    except (OSError, RuntimeError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _explain(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "w", newline="") as fh:
            fh.write(text)
    return Path(path)
