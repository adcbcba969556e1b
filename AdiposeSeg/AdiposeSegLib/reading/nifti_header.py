"""Which NIfTI transform places the voxels: qform and sform are both allowed in one file and may
disagree; ITK picks one by its own rules. A file whose two transforms put the body in different
places is refused (which one is right cannot be known); the one used is recorded."""
from __future__ import annotations

import gzip

import numpy as np

from ..errors import InputReadError

AGREE_MM = 0.5            # voxel centres the two transforms place this far apart disagree


def _header(path: str) -> bytes:
    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        return fh.read(348)


def _qform(h: bytes, endian: str) -> np.ndarray:
    b, c, d = np.frombuffer(h[256:268], dtype=endian + "f4").astype(float)
    offset = np.frombuffer(h[268:280], dtype=endian + "f4").astype(float)
    pixdim = np.frombuffer(h[76:108], dtype=endian + "f4").astype(float)
    a = np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
    rotation = np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                         [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                         [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    scale = np.diag([pixdim[1], pixdim[2], pixdim[3] * qfac])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ scale
    affine[:3, 3] = offset
    return affine


def _sform(h: bytes, endian: str) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :] = np.frombuffer(h[280:328], dtype=endian + "f4").astype(float).reshape(3, 4)
    return affine


def check_nifti_transforms(path: str, info: dict) -> None:
    try:
        h = _header(path)
    except (OSError, EOFError):
        return  # the reader itself reports unreadable files
    if len(h) < 348:
        return
    endian = "<" if int.from_bytes(h[:4], "little") == 348 else ">"
    qcode, scode = (int(v) for v in np.frombuffer(h[252:256], dtype=endian + "i2"))
    dims = np.frombuffer(h[40:56], dtype=endian + "i2")[1:4].astype(float)
    if qcode > 0 and scode > 0:
        corners = np.array([[i, j, k, 1.0] for i in (0, dims[0] - 1) for j in (0, dims[1] - 1) for k in (0, dims[2] - 1)])
        apart = float(np.abs(corners @ _qform(h, endian).T - corners @ _sform(h, endian).T).max())
        if apart > AGREE_MM:
            raise InputReadError(f"{path}: the NIfTI header's two transforms disagree (qform and sform place the image "
                                 f"corners up to {apart:.1f} mm apart): which one is right cannot be known. Rewrite the "
                                 "file with one transform (or both the same)")
        info["geometry_from"] = "NIfTI sform and qform (they agree)"
    elif scode > 0:
        info["geometry_from"] = "NIfTI sform (no qform)"
        info.setdefault("notes", []).append("geometry from the NIfTI sform (the file has no qform)")
    elif qcode > 0:
        info["geometry_from"] = "NIfTI qform (no sform)"
    else:
        info["geometry_from"] = "NIfTI pixdim only (no qform, no sform)"
        info.setdefault("notes", []).append("the NIfTI file has no orientation (qform and sform codes are 0): "
                                            "axes assumed as stored; checked against the anatomy")
        info.setdefault("quality", {})["orientation_assumed"] = True
