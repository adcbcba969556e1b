"""What a result belongs to: the input (path, series, content) and the run (model and options).

A batch re-uses a case's earlier result only when both match; a cohort row can then always be
traced to the scan, the model and the settings that produced it.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..tissues import SegmentOptions, options_to_dict

_CHUNK = 1 << 20


def _hash_file(h, path: str, whole: bool) -> None:
    size = os.path.getsize(path)
    h.update(f"{os.path.basename(path)}:{size};".encode())
    with open(path, "rb") as fh:
        if whole or size <= 4 * _CHUNK:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                h.update(block)
        else:  # DICOM files of a series: head (header, UIDs) and tail (pixels) identify each file
            h.update(fh.read(_CHUNK))
            fh.seek(-_CHUNK, os.SEEK_END)
            h.update(fh.read(_CHUNK))


def content_fingerprint(source: str | os.PathLike, files: list[str] | None = None) -> str:
    """sha256 of a volume file's bytes, or of a DICOM series' files (names, sizes and contents)."""
    source = str(source)
    h = hashlib.sha256()
    if os.path.isfile(source) and not files:
        _hash_file(h, source, whole=True)
    else:
        for path in sorted(files or []):
            _hash_file(h, path, whole=False)
    return h.hexdigest()


def input_identity(source: str | os.PathLike, series_uid: str | None = None, files: list[str] | None = None) -> dict:
    return {"path": str(Path(source).resolve()), "series_uid": series_uid or "",
            "fingerprint": content_fingerprint(source, files)}


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def model_fingerprint(model) -> str:
    """sha256 of the model's weights file (name and version alone do not prove the same network)."""
    from ..model.model_card import WEIGHTS_FILE

    return file_sha256(Path(model.directory) / WEIGHTS_FILE)


def run_key(model, options: SegmentOptions) -> dict:
    """What decides a result's numbers besides the input: model, options and the labelling rules'
    version. Batch size and the device choice are left out: they change speed, not labels (the
    resolved device is recorded in each summary)."""
    from ..measuring.postprocess import LABEL_RULES

    opts = options_to_dict(options)
    for key in ("batch_size", "device"):
        opts.pop(key)
    return {"model": {"name": model.card.name, "version": model.card.version, "weights_sha256": model_fingerprint(model)},
            "options": opts, "label_rules": LABEL_RULES}


def safe_name(text: str) -> str:
    """A file-name-safe id: runs of other characters become "_", no leading/trailing dots."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "case"


def strip_suffix(name: str) -> str:
    for suffix in (".seg.nrrd", ".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def case_ids(inputs: list[str]) -> list[str]:
    """Stable, unique case ids from the inputs' paths (relative to their common folder), independent
    of the list's order: `p1/ct.nii.gz` -> `p1_ct`. Names that would collide get a short hash of
    their resolved path, so no two inputs ever share a result folder."""
    resolved = [str(Path(p).resolve()) for p in inputs]
    parents = [os.path.dirname(p) for p in resolved]
    root = os.path.commonpath(parents) if parents else ""
    ids = []
    for path in resolved:
        relative = os.path.relpath(path, root) if root else os.path.basename(path)
        parts = Path(relative).parts
        ids.append(safe_name("_".join(parts[:-1] + (strip_suffix(parts[-1]),))))
    counts: dict[str, int] = {}
    for cid in ids:
        counts[cid.lower()] = counts.get(cid.lower(), 0) + 1
    return [f"{cid}_{hashlib.sha1(path.encode()).hexdigest()[:8]}" if counts[cid.lower()] > 1 else cid
            for cid, path in zip(ids, resolved)]
