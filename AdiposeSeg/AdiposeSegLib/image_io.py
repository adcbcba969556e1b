"""Reading a CT from disk into a validated HU image with its geometry."""
from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from . import dicom
from .errors import ImageShapeError, InputReadError, NotCTError

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
MIN_INPLANE_PIXELS = 32


def is_volume_file(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(VOLUME_SUFFIXES)


def looks_like_dicom(path: str | os.PathLike) -> bool:
    path = str(path)
    if path.lower().endswith((".dcm", ".ima")):
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_ct(path: str | os.PathLike, series_uid: str | None = None) -> sitk.Image:
    """Read a CT (DICOM folder or file, NRRD, NIfTI, MHA) as a 3D image in HU, geometry kept.

    Raises InputReadError, NotCTError or ImageShapeError with a message naming the file.
    """
    source = str(path)
    if not os.path.exists(source):
        raise InputReadError(f"{source}: no such file or folder")
    if os.path.isdir(source):
        image = dicom.read_series(dicom.choose_series(source, series_uid), source)
    elif looks_like_dicom(source):
        image = _read_single_dicom(source, series_uid)
    else:
        image = _read_volume_file(source)
    return validate_ct(image, source)


def _read_single_dicom(source: str, series_uid: str | None) -> sitk.Image:
    modality, _ = dicom._file_header(source)
    info = dicom.SeriesInfo(uid=series_uid or "", files=[source], modality=modality, description="")
    return dicom.read_series(info, source)


def _check_gzip_complete(source: str) -> None:
    """ITK zero-fills a truncated .gz silently; read the stream through to its end to catch that."""
    import gzip
    import zlib

    try:
        with gzip.open(source, "rb") as fh:
            while fh.read(1 << 24):
                pass
    except (EOFError, OSError, zlib.error) as exc:
        raise InputReadError(f"{source}: the file is truncated or corrupt ({exc}); copy it again from its source") from None


def _read_volume_file(source: str) -> sitk.Image:
    if os.path.getsize(source) == 0:
        raise InputReadError(f"{source}: the file is empty (0 bytes)")
    if source.lower().endswith(".gz"):
        _check_gzip_complete(source)
    try:
        image = sitk.ReadImage(source)
    except RuntimeError as exc:
        if not is_volume_file(source):
            raise InputReadError(
                f"{source}: not a recognised image file; give a DICOM folder or file, NRRD, NIfTI (.nii/.nii.gz) or MHA"
            ) from None
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputReadError(f"{source}: the file could not be read, it may be truncated or corrupt ({last})") from None
    _check_size(source, image)
    return image


def _nrrd_encoding(source: str) -> str:
    with open(source, "rb") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                break
            if line.lower().startswith(b"encoding:"):
                return line.split(b":", 1)[1].strip().decode("ascii", "replace").lower()
    return "raw"


def _check_size(source: str, image: sitk.Image) -> None:
    """ITK zero-fills a truncated uncompressed file silently; its pixels need at least this many bytes."""
    name = source.lower()
    if name.endswith(".nrrd"):
        if _nrrd_encoding(source) != "raw":
            return
    elif not name.endswith(".nii"):
        return
    needed = int(np.prod(image.GetSize())) * image.GetNumberOfComponentsPerPixel() * image.GetSizeOfPixelComponent()
    have = os.path.getsize(source)
    if have < needed:
        raise InputReadError(f"{source}: the file is truncated or corrupt ({have} bytes, the image needs {needed}); copy it again from its source")


def validate_ct(image: sitk.Image, source: str = "image") -> sitk.Image:
    """Check that an image can be a CT in HU; return it as a 3D scalar image (int16 or float32)."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise NotCTError(
            f"{source}: a colour/vector image with {image.GetNumberOfComponentsPerPixel()} components per pixel; "
            "a CT has one grey value (HU) per voxel"
        )
    dim = image.GetDimension()
    if dim == 2:
        image = sitk.JoinSeries(image)
    elif dim == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    elif dim != 3:
        raise ImageShapeError(f"{source}: a {dim}D image of size {image.GetSize()}; AdiposeSeg needs a 3D CT volume or a single slice")
    size = image.GetSize()
    if 0 in size:
        raise ImageShapeError(f"{source}: the image is empty (size {size})")
    if sorted(size)[1] < MIN_INPLANE_PIXELS:
        raise ImageShapeError(
            f"{source}: the image is only {size[0]}x{size[1]}x{size[2]} voxels; at least {MIN_INPLANE_PIXELS}x{MIN_INPLANE_PIXELS} pixels per slice are needed"
        )
    if any(s <= 0 for s in image.GetSpacing()):
        raise ImageShapeError(f"{source}: invalid voxel spacing {image.GetSpacing()}")
    values = sitk.GetArrayViewFromImage(image)
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        raise ImageShapeError(f"{source}: the image is empty, every voxel is {lo:g}")
    sample = values[:: max(1, values.shape[0] // 16)]
    p1 = float(np.percentile(sample, 1))
    if p1 > -200 or hi - lo < 200:
        raise NotCTError(
            f"{source}: values range {lo:g}..{hi:g} with no air below -200 HU, so these are not CT Hounsfield units "
            "(air around the body is about -1000 HU). Is this an MR or a rescaled image, or was the DICOM rescale lost on export?"
        )
    if image.GetPixelID() in (sitk.sitkInt16, sitk.sitkFloat32):
        return image
    if np.issubdtype(values.dtype, np.integer) and lo >= -32768 and hi <= 32767:
        return sitk.Cast(image, sitk.sitkInt16)
    return sitk.Cast(image, sitk.sitkFloat32)
