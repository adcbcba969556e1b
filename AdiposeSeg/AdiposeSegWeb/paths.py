"""What a browser may name: files inside the data roots given on the command line, nothing else."""
from __future__ import annotations

import os
from pathlib import Path

from AdiposeSegLib.errors import AdiposeSegError
from AdiposeSegLib.reading.discover import find_inputs

DEFAULT_UPLOAD_LIMIT_MB = 512   # bigger scans: start the server with their folder as a data root


class OutsideDataRoots(AdiposeSegError):
    """A path the browser named lies outside every data root."""


class DataRoots:
    def __init__(self, roots: list[str | os.PathLike]):
        self.roots = []
        for root in roots:
            self.add(root)

    def add(self, root: str | os.PathLike) -> None:
        real = Path(root).resolve()
        if not real.is_dir():
            raise AdiposeSegError(f"data root {real} is not a folder")
        if real not in self.roots:
            self.roots.append(real)

    def resolve(self, name: str) -> Path:
        """The real path of `name` (absolute, or relative to the first root) if it lies inside a root
        once every symlink and '..' is resolved; otherwise OutsideDataRoots."""
        if not self.roots:
            raise OutsideDataRoots("no data root was given on the command line: the server opens no file")
        candidate = Path(name)
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate
        real = candidate.resolve()
        for root in self.roots:
            if real == root or root in real.parents:
                return real
        raise OutsideDataRoots(f"{name} is outside the data folders this server was started with")

    def scans(self) -> list[str]:
        """Every CT under the roots (files and DICOM folders), as paths relative to their root when possible."""
        found = []
        for root in self.roots:
            try:
                for path in find_inputs(str(root)):
                    real = Path(path).resolve()
                    if real == root or root in real.parents:   # a symlink inside may point out
                        found.append(str(real))
            except AdiposeSegError:
                continue
        return sorted(set(found))


def save_uploads(files: list[dict], folder: Path, limit_bytes: int) -> Path:
    """Write browser uploads into a fresh sub-folder of `folder`; returns the file (one) or the
    folder (a DICOM series). Sizes are checked before anything is written; names lose any path."""
    import re
    import tempfile

    if not files:
        raise AdiposeSegError("no file was uploaded")
    total = sum(int(f.get("size") or len(f.get("content") or b"")) for f in files)
    if total > limit_bytes:
        raise AdiposeSegError(f"the upload is {total / 1024 ** 2:.0f} MB, over this server's limit of "
                              f"{limit_bytes / 1024 ** 2:.0f} MB; put the scan in a data folder instead")
    target = Path(tempfile.mkdtemp(prefix="upload-", dir=folder))
    written = []
    for number, item in enumerate(files):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(item.get("name") or "")).name).strip("._") or f"file{number}"
        content = item.get("content") or b""
        if isinstance(content, list):   # chunked by the client
            content = b"".join(content)
        path = target / name
        path.write_bytes(content)
        written.append(path)
    return written[0] if len(written) == 1 else target
