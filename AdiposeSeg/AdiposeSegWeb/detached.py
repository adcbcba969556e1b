"""The data files a detached-header image names (NRRD `data file:`, MetaImage `ElementDataFile =`):
a header inside the data folders may point anywhere, so every file it names is resolved and
checked like the header itself."""
from __future__ import annotations

import re
from pathlib import Path

MAX_HEADER_BYTES = 1 << 16


def _pattern_files(base: Path, fields: list[str]) -> list[Path]:
    """`fmt min max step`: printf-style names, e.g. slice%03d.raw 1 40 1."""
    fmt, lo, hi, step = fields[0], int(fields[1]), int(fields[2]), int(fields[3]) if len(fields) > 3 else 1
    if step == 0:
        return [base / (fmt % lo)]
    return [base / (fmt % k) for k in range(lo, hi + (1 if step > 0 else -1), step)]


def _named(base: Path, value: str, rest: list[str]) -> list[Path]:
    fields = value.split()
    if not fields:
        return []
    if fields[0].upper() == "LOCAL":
        return []
    if fields[0].upper() == "LIST":
        return [base / line.strip() for line in rest if line.strip()]
    if "%" in fields[0] and len(fields) >= 3 and all(re.fullmatch(r"-?\d+", f) for f in fields[1:4]):
        return _pattern_files(base, fields)
    return [base / value.strip()]


def detached_data_files(path: str | Path) -> list[Path]:
    """The files an image header reads its voxels from (empty when the voxels are in the file itself)."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".nhdr", ".nrrd", ".mhd", ".mha")):
        return []
    with open(path, "rb") as fh:
        head = fh.read(MAX_HEADER_BYTES)
    if name.endswith((".nhdr", ".nrrd")):
        text = head.split(b"\n\n", 1)
        lines = text[0].decode("latin-1").splitlines()
        rest = text[1].decode("latin-1").splitlines() if len(text) > 1 and name.endswith(".nhdr") else []
        for k, line in enumerate(lines):
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in ("data file", "datafile"):
                return _named(path.parent, value.lstrip("=").strip(), rest or lines[k + 1:])
        return []
    lines = head.decode("latin-1", "replace").splitlines()
    for k, line in enumerate(lines):
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ElementDataFile":
            return _named(path.parent, value.strip(), lines[k + 1:])
    return []
