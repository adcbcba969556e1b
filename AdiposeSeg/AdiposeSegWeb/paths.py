"""What a browser may name: files inside the data roots given on the command line, nothing else."""
from __future__ import annotations

import os
from pathlib import Path

from AdiposeSegLib.errors import AdiposeSegError
from AdiposeSegLib.reading.discover import find_inputs

UPLOAD_LIMIT_BYTES = 2 * 1024 ** 3   # a large CT volume; anything bigger is refused before it is written


class OutsideDataRoots(AdiposeSegError):
    """A path the browser named lies outside every data root."""


class DataRoots:
    def __init__(self, roots: list[str | os.PathLike]):
        self.roots = [Path(r).resolve() for r in roots]
        for root in self.roots:
            if not root.is_dir():
                raise AdiposeSegError(f"data root {root} is not a folder")

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
