"""What a result belongs to: the input (path, series, content) and the run (model and options).

A batch re-uses a case's earlier result only when both match; a cohort row can then always be
traced to the scan, the model and the settings that produced it.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..file_hash import file_sha256  # noqa: F401  (part of this module's API)
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


def model_fingerprint(model) -> str:
    """sha256 of the model's weights file (name and version alone do not prove the same network)."""
    from ..model.model_card import WEIGHTS_FILE

    return file_sha256(Path(model.directory) / WEIGHTS_FILE)


def run_key(model, options: SegmentOptions) -> dict:
    """What decides a result's numbers besides the input: model (its weights and whether the int8
    network computes them), options and the labelling rules' version. Batch size and the device are
    left out: they change speed, not labels (the network that ran is recorded in each summary; GPU
    runs use the fp32 weights)."""
    from ..measuring.postprocess import LABEL_RULES
    from ..model.device import resolve_device

    opts = options_to_dict(options)
    for key in ("batch_size", "device"):
        opts.pop(key)
    precision = "int8" if model.network_kind(resolve_device(options.device)).endswith("int8") else "fp32"
    return {"model": {"name": model.card.name, "version": model.card.version, "weights_sha256": model_fingerprint(model),
                      "precision": precision},
            "options": opts, "label_rules": LABEL_RULES}


MAX_ID_CHARS = 100   # + "_prediction.seg.nrrd" and the like stays far below the 255-byte name limit


def safe_name(text: str) -> str:
    """A file-name-safe id: runs of other characters become "_", no leading/trailing dots; a long
    one is cut and keeps a hash of the whole, so two long names still differ."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "case"
    if len(name) > MAX_ID_CHARS:
        name = name[:MAX_ID_CHARS - 9].rstrip("._") + "_" + hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return name


def bounded_id(name: str) -> str:
    """A case id as given, unless it would make file names over the 255-byte limit: then cut, with a hash."""
    return name if len(name.encode("utf-8", "surrogateescape")) <= MAX_ID_CHARS else safe_name(name)


def strip_suffix(name: str) -> str:
    for suffix in (".seg.nrrd", ".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _relative_parts(inputs: list[str]) -> tuple[list[str], list[tuple[str, ...]]]:
    """The resolved paths and each one's parts below the inputs' common folder (suffix stripped)."""
    resolved = [str(Path(p).resolve()) for p in inputs]
    parents = [os.path.dirname(p) for p in resolved]
    root = os.path.commonpath(parents) if parents else ""
    out = []
    for path in resolved:
        parts = Path(os.path.relpath(path, root) if root else os.path.basename(path)).parts
        out.append(parts[:-1] + (strip_suffix(parts[-1]),))
    return resolved, out


def _unique_with_hash(ids: list[str], resolved: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for cid in ids:
        counts[cid.lower()] = counts.get(cid.lower(), 0) + 1
    return [f"{cid}_{hashlib.sha1(path.encode()).hexdigest()[:8]}" if counts[cid.lower()] > 1 else cid
            for cid, path in zip(ids, resolved)]


def case_ids(inputs: list[str]) -> list[str]:
    """Stable, unique case ids, independent of the list's order: the shortest end of each input's path
    below the inputs' common folder that no other input shares (`/data/a/p1/ct.nii.gz` beside
    `/data/b/p2/ct.nii.gz` -> `p1_ct`, `p2_ct`; a file name no other input has is the id alone, wherever
    it lies). Names that still collide (case-insensitively) get a short hash of their resolved path."""
    resolved, parts = _relative_parts(inputs)
    depth = [1] * len(parts)
    while True:
        ids = [safe_name("_".join(p[-d:])) for p, d in zip(parts, depth)]
        groups: dict[str, list[int]] = {}
        for i, cid in enumerate(ids):
            groups.setdefault(cid.lower(), []).append(i)
        grown = False
        for members in groups.values():
            if len(members) > 1:
                for i in members:
                    if depth[i] < len(parts[i]):
                        depth[i] += 1
                        grown = True
        if not grown:
            return _unique_with_hash(ids, resolved)


def legacy_case_ids(inputs: list[str]) -> list[str]:
    """The ids before 0.1.0's issue 26 (the whole path below the common folder): a result folder made
    under one of them is still found, so a batch started before resumes instead of running again."""
    resolved, parts = _relative_parts(inputs)
    return _unique_with_hash([safe_name("_".join(p)) for p in parts], resolved)


def input_files(source: str | os.PathLike) -> list[str]:
    """The files a scan is read from: a volume file, or every DICOM file of a folder."""
    from ..reading.dicom import dicom_files

    return dicom_files(str(source)) if os.path.isdir(source) else [str(source)]


def file_states(files: list[str]) -> dict:
    """What changes when a file is rewritten or replaced (size, modification time, inode)."""
    states = {}
    for path in files:
        try:
            st = os.stat(path)
            states[path] = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            states[path] = None
    return states


def check_unchanged(source: str | os.PathLike, before: dict) -> None:
    """The input must be what it was when its fingerprint was taken: a scan replaced while it was
    read would record one content's fingerprint beside another's numbers."""
    from ..errors import InputReadError

    after = file_states(list(before)) | {p: (0, 0, 0) for p in input_files(source) if p not in before}
    changed = sorted(p for p in after if after[p] != before.get(p))
    if changed:
        raise InputReadError(f"{source}: changed while it was being read ({os.path.basename(changed[0])}"
                             f"{' and ' + str(len(changed) - 1) + ' more' if len(changed) > 1 else ''}); nothing measured. "
                             "Run it again once the copy is complete")


def recorded_input(out_root: str | os.PathLike, case_id: str) -> str | None:
    """The input path a case folder's result (or failure) was made from; None when it holds none."""
    import json

    for name in (f"{case_id}_summary.json", f"{case_id}_failed.json"):
        try:
            record = json.loads((Path(out_root) / case_id / name).read_text())
            path = (record.get("input") or {}).get("path")
        except (OSError, ValueError, AttributeError):
            continue
        if path:
            return str(path)
    return None


def case_id_in(out_root: str | os.PathLike, case_id: str, source: str | os.PathLike, legacy: str | None = None) -> str:
    """This input's case folder in OUT: its id, unless that folder holds another input's result (two
    sites laid out alike, batched one after the other): then the id with a hash of the input's path.
    `legacy` (legacy_case_ids) is used instead where only it holds this input's earlier result."""
    mine = str(Path(source).resolve())
    other = recorded_input(out_root, case_id)
    if other is None and legacy and legacy != case_id and recorded_input(out_root, legacy) == mine:
        return legacy
    if other is None or other == mine:
        return case_id
    return f"{case_id}_{hashlib.sha1(mine.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
