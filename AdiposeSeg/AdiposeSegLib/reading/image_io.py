"""Reading a CT from disk into a validated HU image with its geometry."""
from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from . import dicom
from .discover import is_volume_file, looks_like_dicom
from ..errors import ImageShapeError, InputReadError, NotCTError
from .anatomy_checks import check_patient_anatomy, check_slices_consistent
from .nifti_header import check_nifti_transforms
from .hu_checks import check_hounsfield, check_body_size, replace_outside_fov_nan
from .orientation import axial_axis

MIN_INPLANE_PIXELS = 32
OBLIQUE_NOTE_DEG = 3.0
OBLIQUE_REFUSE_DEG = 10.0


def read_ct(path: str | os.PathLike, series_uid: str | None = None, info: dict | None = None) -> sitk.Image:
    """Read a CT (DICOM folder or file, NRRD, NIfTI, MHA) as a 3D image in HU, geometry kept.

    Raises InputReadError, NotCTError or ImageShapeError with a message naming the file. `info`,
    when given, receives how the input was read: format, the DICOM series chosen and what else
    was there, notes on anything set aside or resampled, and quality flags.
    """
    source = str(path)
    info = {} if info is None else info
    info.setdefault("notes", [])
    info.setdefault("quality", {})
    if not os.path.exists(source):
        raise InputReadError(f"{source}: no such file or folder")
    if os.path.isdir(source):
        info["format"] = "DICOM series"
        image = dicom.read_folder(source, series_uid, info)
    elif looks_like_dicom(source):
        info["format"] = "DICOM file"
        image = dicom.read_files([source], source, info)
    else:
        info["format"] = "volume file"
        if source.lower().endswith((".nii", ".nii.gz")):
            check_nifti_transforms(source, info)
        image = _read_volume_file(source)
    return validate_ct(image, source, info)


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
    return _restore_nifti_nan(source, image)


def _restore_nifti_nan(source: str, image: sitk.Image) -> sitk.Image:
    """ITK's NIfTI reader turns NaN into 0, which would then pass for water (0 HU). Read the raw
    float voxels to find NaNs and put them back, so that the NaN rule (padding or refusal) decides."""
    name = source.lower()
    if not name.endswith((".nii", ".nii.gz")) or image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return image
    import gzip

    opener = gzip.open if name.endswith(".gz") else open
    with opener(source, "rb") as fh:
        header = fh.read(352)
        if len(header) < 348:
            return image
        endian = "<" if int.from_bytes(header[:4], "little") == 348 else ">"
        datatype = int(np.frombuffer(header[70:72], dtype=endian + "i2")[0])
        offset = int(np.frombuffer(header[108:112], dtype=endian + "f4")[0])
        dtype = {16: "f4", 64: "f8"}.get(datatype)
        if dtype is None:
            return image
        fh.read(max(0, offset - len(header)))
        raw = np.frombuffer(fh.read(), dtype=endian + dtype)
    count = int(np.prod(image.GetSize()))
    if raw.size < count:
        return image
    bad = ~np.isfinite(raw[:count])
    if not bad.any():
        return image
    array = sitk.GetArrayFromImage(image)
    array.reshape(-1)[bad] = np.nan
    restored = sitk.GetImageFromArray(array)
    restored.CopyInformation(image)
    return restored


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


def check_geometry(image: sitk.Image, source: str, info: dict) -> None:
    """Axes must be perpendicular (a sheared grid has no true pixel area) and the slices near axial:
    an oblique cross-section of the trunk is larger than the axial one by 1/cos(angle)."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    gram = direction.T @ direction
    if not np.allclose(gram, np.eye(3), atol=1e-3):
        off = float(np.degrees(np.arccos(np.clip(abs(gram[0, 1]), 0.0, 1.0))))
        raise ImageShapeError(f"{source}: the image axes are not perpendicular (in-plane axes at {off:.1f} degrees, or not "
                              "unit length): a sheared grid, whose pixel areas are not what its spacing says. Re-export "
                              "the CT on an orthogonal grid")
    axis = axial_axis(image)[0]
    others = [a for a in range(3) if a != axis]
    normal = np.cross(direction[:, others[0]], direction[:, others[1]])
    angle = float(np.degrees(np.arccos(np.clip(abs(normal[2]), 0.0, 1.0))))
    if angle > OBLIQUE_REFUSE_DEG:
        raise ImageShapeError(f"{source}: the slices are oblique, {angle:.1f} degrees from axial: cross-section areas "
                              f"would be about {100 / np.cos(np.radians(angle)) - 100:.0f}% larger than axial ones. "
                              f"Reformat to axial slices (at most {OBLIQUE_REFUSE_DEG:.0f} degrees) and retry")
    if angle > OBLIQUE_NOTE_DEG:
        info["quality"]["oblique_deg"] = round(angle, 1)
        info["notes"].append(f"the slices are {angle:.1f} degrees from axial: areas are about "
                             f"{100 / np.cos(np.radians(angle)) - 100:.1f}% larger than on true axial slices")


def validate_ct(image: sitk.Image, source: str = "image", info: dict | None = None) -> sitk.Image:
    """Check that an image can be a CT in HU; return it as a 3D scalar image (int16 or float32).

    Refused: not one value per voxel, not 3D, empty, tiny, NaN inside the image, values that are
    not Hounsfield units (no air near -1000 HU, or air offset), a body of no human size.
    NaN padding outside the field of view becomes air (-1024 HU), with a note in `info`."""
    info = {} if info is None else info
    info.setdefault("notes", [])
    info.setdefault("quality", {})
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
    check_geometry(image, source, info)
    image = replace_outside_fov_nan(image, source, info)
    values = sitk.GetArrayViewFromImage(image)
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        raise ImageShapeError(f"{source}: the image is empty, every voxel is {lo:g}")
    check_hounsfield(values, source)
    check_body_size(values, image.GetSpacing(), source)
    check_slices_consistent(values, 2 - axial_axis(image)[0], source)
    check_patient_anatomy(image, source)
    if image.GetPixelID() not in (sitk.sitkInt16, sitk.sitkFloat32):
        integer = np.issubdtype(values.dtype, np.integer) and lo >= -32768 and hi <= 32767
        image = sitk.Cast(image, sitk.sitkInt16 if integer else sitk.sitkFloat32)
    image.SetMetaData(VALIDATED_KEY, _signature(image))
    return image


VALIDATED_KEY = "AdiposeSeg.validated"
_THIS_PROCESS = os.urandom(8).hex()   # a mark written into a file and read back by another process never counts


def _signature(image: sitk.Image) -> str:
    return repr((_THIS_PROCESS, image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection(), image.GetPixelID(),
                 int(image.GetNumberOfComponentsPerPixel())))


def already_validated(image: sitk.Image) -> bool:
    """True for the very image validate_ct returned (read_ct's): the pipeline then skips checking it
    again (0.3 s on 807 slices). A filter's output or a copy made from an array carries no mark, and
    a mark whose geometry or pixel type no longer matches does not count."""
    return image.HasMetaDataKey(VALIDATED_KEY) and image.GetMetaData(VALIDATED_KEY) == _signature(image)
