"""What a browser may name: files inside the data roots given on the command line, nothing else."""
from __future__ import annotations

import os
import shutil
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
        if self._inside(real):
            return real
        raise OutsideDataRoots(f"{name} is outside the data folders this server was started with")

    def _inside(self, real: Path, roots: list[Path] | None = None) -> bool:
        return any(real == root or root in real.parents for root in (roots or self.roots))

    def check_reads(self, path: Path, own_folder: Path | None = None) -> None:
        """Every file that reading `path` touches must lie inside the roots once resolved (a folder of
        symlinks, a detached header naming `../outside/x.raw`), and for an upload inside its own folder."""
        from AdiposeSegLib.running.identity import input_files
        from .detached import detached_data_files

        allowed = [own_folder.resolve()] if own_folder else self.roots
        for file in input_files(path):
            named = [Path(file)] + detached_data_files(file)
            for item in named:
                if not self._inside(item.resolve(), allowed):
                    raise OutsideDataRoots(f"{Path(path).name}: {'its header names' if item != named[0] else 'it reads'} "
                                           f"{item.name}, which lies outside the "
                                           f"{'upload' if own_folder else 'data folders'}; not opened")

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
    contents = []
    for item in files:
        content = item.get("content") or b""
        if isinstance(content, list):   # chunked by the client
            content = b"".join(content)
        contents.append(bytes(content))
    total = sum(len(c) for c in contents)   # what arrived, not what the client declared
    if total > limit_bytes:
        raise AdiposeSegError(f"the upload is {total / 1024 ** 2:.0f} MB, over this server's limit of "
                              f"{limit_bytes / 1024 ** 2:.0f} MB; put the scan in a data folder instead")
    target = Path(tempfile.mkdtemp(prefix="upload-", dir=folder))
    written = []
    for number, item in enumerate(files):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(item.get("name") or "")).name).strip("._") or f"file{number}"
        path = target / name
        path.write_bytes(contents[number])
        written.append(path)
    try:
        for path in written:
            check_inflated_size(path, INFLATE_FACTOR * limit_bytes)
    except AdiposeSegError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return written[0] if len(written) == 1 else target


INFLATE_FACTOR = 16   # a CT compresses 2-4 times; an upload that inflates more than this is refused


def check_inflated_size(path: Path, limit: int) -> None:
    """A compressed upload (gzip bomb: 2 MB that inflates to 2 GiB) is refused before it is inflated in
    full: the gzip stream is counted as it is read, and the voxel count the header declares is checked."""
    import gzip
    import zlib

    import SimpleITK as sitk

    def refuse(size):
        raise AdiposeSegError(f"{path.name}: inflates to more than {size / 1024 ** 2:.0f} MB, over {INFLATE_FACTOR} times "
                              "this server's upload limit; put the scan in a data folder instead")

    if path.name.lower().endswith(".gz"):
        seen = 0
        try:
            with gzip.open(path, "rb") as fh:
                while True:
                    block = fh.read(1 << 20)
                    if not block:
                        break
                    seen += len(block)
                    if seen > limit:
                        refuse(limit)
        except (OSError, EOFError, zlib.error):
            return   # not gzip after all, or truncated: the reader says so
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return   # a DICOM file or not an image: its reader decides
    voxels = 1
    for n in reader.GetSize():
        voxels *= n
    if voxels * reader.GetNumberOfComponents() * 2 > limit:
        refuse(voxels * 2)
