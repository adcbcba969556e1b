"""Finding the scans of a cohort: a list file, a folder tree of volumes and DICOM series, or paths.

Walks folders to any depth (patient/study/series, DICOM/ST/SE), recognises DICOM files with or
without their 128-byte preamble, and skips what is not a scan: hidden and macOS `._` files,
AdiposeSeg's own outputs, DICOMDIR.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable

from ..errors import AdiposeSegError

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
OUTPUT_MARKS = (".seg.nrrd", "_labels.nrrd", "_labels.nii.gz", "_labels.nii", "_labels.mha", "_seg.dcm", "_sr.dcm")
LIST_SUFFIXES = (".txt", ".lst", ".list", ".csv")


def is_volume_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def is_hidden(name: str) -> bool:
    return name.startswith(".")  # also macOS resource forks "._name"


def looks_like_dicom(path: str | os.PathLike) -> bool:
    """A DICOM Part 10 file (preamble + DICM), a .dcm/.ima name, or a bare data set without preamble."""
    path = str(path)
    name = os.path.basename(path)
    if is_hidden(name) or name.upper() == "DICOMDIR":
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if head[128:132] == b"DICM":
        return True
    if name.lower().endswith((".dcm", ".ima")):
        return True
    # no preamble: the file meta group (0002) or a data set's first group (0008), little endian
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[3:4] == b"\x00" and (
        head[4:6].isalpha() or head[6:8] == b"\x00\x00")


def _is_output(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(OUTPUT_MARKS) or lower.endswith("_summary.json")


def _decode_list(path: str) -> str:
    """A list file as text: UTF-8 (with or without the BOM Windows editors write) or UTF-16 with its BOM."""
    import codecs

    data = Path(path).read_bytes()
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(encoding)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdiposeSegError(f"{path}: the list is neither UTF-8 nor UTF-16 with a byte-order mark (byte {exc.start}); "
                              "save it as UTF-8") from None


def read_list(path: str) -> list[str]:
    """Paths in a list file, relative ones taken from the list's folder; a CSV gives its first column."""
    import csv

    base = Path(path).parent
    text = _decode_list(path)
    if path.lower().endswith(".csv"):
        lines = [row[0] if row else "" for row in csv.reader(io.StringIO(text, newline=""))]
    else:
        lines = text.splitlines()
    out = []
    for line in (line.strip() for line in lines):
        if not line or line.startswith("#") or line.lower() in ("path", "input", "source"):
            continue
        out.append(line if os.path.isabs(line) else str(base / line))
    return out


def find_inputs(source: str | os.PathLike | Iterable[str]) -> list[str]:
    """Scans to process, each once (resolved paths, sorted): a list file (one path a line, or a CSV
    whose first column is the path), a folder tree, or an iterable of paths."""
    if not isinstance(source, (str, os.PathLike)):
        paths = [str(p) for p in source]
    else:
        source = str(source)
        if os.path.isfile(source) and source.lower().endswith(LIST_SUFFIXES):
            paths = read_list(source)
        elif os.path.isdir(source):
            paths = _walk(source)
        elif os.path.isfile(source):
            paths = [source]
        else:
            raise AdiposeSegError(f"{source}: no such file or folder; give a folder of scans or a .txt list of paths")
    unique = {}
    for p in paths:
        unique.setdefault(str(Path(p).resolve()), p)
    return sorted(unique)


def _walk(root: str) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        files = [f for f in sorted(files) if not is_hidden(f)]
        for name in files:
            if is_volume_file(name) and not _is_output(name):
                found.append(os.path.join(folder, name))
        if any(looks_like_dicom(os.path.join(folder, f)) for f in files if not is_volume_file(f) and not _is_output(f)):
            found.append(folder)
    return found
