"""DICOM input: find the series, choose the right one, check its geometry, decode it.

Nothing about a series is taken on trust, because a wrong slice position is a wrong volume:
slices are ordered by their position along the slice normal; exact duplicates are kept once and
differing ones refused; localizers and slices of another orientation or size are set aside with
a note; gaps and uneven spacing are refused (no z is ever made up); a gantry tilt is resampled onto
a true rectilinear grid and noted; a slice that does not decode is refused, never dropped.
GDCM (through SimpleITK) decodes JPEG 2000, JPEG lossless and RLE; pydicom with pylibjpeg is the
fallback for what GDCM cannot decode. Rescale slope and intercept are applied: values are HU.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import SimpleITK as sitk

from .discover import is_hidden, looks_like_dicom
from ..errors import InputReadError, NotCTError
from .dicom_checks import (_check_consistent, _check_no_lost_files, _check_single_frame, _check_uncompressed_sizes,
                           _order_and_check, _set_aside)
from .dicom_headers import (MIN_SLICES_FOR_VOLUME, Slice, _series_step, describe, patient_from_header, plane_name,
                            read_header)


def dicom_files(folder: str) -> list[str]:
    return sorted(e.path for e in os.scandir(folder)
                  if e.is_file() and not is_hidden(e.name) and looks_like_dicom(e.path))


def choose_series(groups: dict[str, list[Slice]], source: str, series_uid: str | None) -> tuple[str, list[dict]]:
    """The series to measure: ORIGINAL/PRIMARY axial CT with enough slices, the thinnest spacing."""
    if series_uid is not None:
        if series_uid not in groups:
            known = ", ".join(sorted(u or "<no uid>" for u in groups))
            raise InputReadError(f"{source}: no series with UID {series_uid}; series here: {known}")
        return series_uid, []
    ct = {uid: s for uid, s in groups.items() if s[0].modality.upper() == "CT"}
    if not ct:
        found = ", ".join(sorted({s[0].modality or "unknown" for s in groups.values()}))
        if all(s[0].modality for s in groups.values()):
            raise NotCTError(f"{source}: no CT series here (modality {found}); AdiposeSeg measures fat and muscle on CT only")
        ct = groups  # no modality recorded: the values will be checked as HU

    def score(uid):
        slices = [s for s in ct[uid] if not s.is_localizer]
        first = slices[0] if slices else ct[uid][0]
        original = "ORIGINAL" in first.image_type and "PRIMARY" in first.image_type
        return (len(slices) > 0, len(slices) >= MIN_SLICES_FOR_VOLUME, plane_name(first.orientation) == "axial",
                original, -_series_step(ct[uid]), len(slices))

    ranked = sorted(ct, key=score, reverse=True)
    others = [dict(describe(groups[u]), why_not="not CT" if u not in ct else "ranked lower: prefers ORIGINAL/PRIMARY "
                   "axial CT with at least 10 slices and the thinnest spacing") for u in groups if u != ranked[0]]
    return ranked[0], others


def read_folder(folder: str, series_uid: str | None, info: dict) -> sitk.Image:
    files = dicom_files(folder)
    if not files:
        raise InputReadError(f"{folder}: no DICOM series found in this folder (no DICOM files; point to the folder that holds the series' files)")
    slices = [read_header(f) for f in files]
    _check_no_lost_files(folder, files, slices)
    groups: dict[str, list[Slice]] = {}
    for s in slices:
        groups.setdefault(s.series_uid, []).append(s)
    uid, others = choose_series(groups, folder, series_uid)
    if others:
        info["other_series"] = others
        info["notes"].append(f"{len(groups)} series in the folder; measured {describe(groups[uid])['description'] or uid!r} "
                             f"({len(groups[uid])} files), chosen automatically (see other_series)"
                             if series_uid is None else f"series {uid} as asked")
    return read_slices(groups[uid], folder, info)


def read_files(files: list[str], source: str, info: dict) -> sitk.Image:
    return read_slices([read_header(f) for f in files], source, info)


def read_slices(slices: list[Slice], source: str, info: dict) -> sitk.Image:
    modality = slices[0].modality
    if modality and modality.upper() != "CT":
        raise NotCTError(f"{source}: DICOM modality is {modality}, not CT; AdiposeSeg measures fat and muscle on CT only")
    info["series"] = describe(slices)
    info["files"] = [s.path for s in slices]
    info["patient"] = patient_from_header(slices[0].header)
    info["quality"]["contrast"] = info["series"]["contrast_agent"]
    _check_single_frame(slices, source)
    slices = _set_aside(slices, source, info)
    _check_consistent(slices, source)
    ordered, geometry = _order_and_check(slices, source, info)
    info["volume_files"] = [s.path for s in ordered]  # slice k of the volume is this file (DICOM SEG frames refer to them)
    info["volume_headers"] = ordered                  # their headers, for the SEG and SR (not read twice)
    return _build_image(_decode([s.path for s in ordered], source), ordered, geometry, info)


def _decode(files: list[str], source: str) -> sitk.Image | np.ndarray:
    """(slices, rows, cols) in HU, in the given order: the series reader's image as it is (no copy of a
    scan-sized array), or the files decoded one by one where it fails; a file that does not decode is
    an error."""
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")  # names without .dcm are DICOM too
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
        _check_uncompressed_sizes(files, source)
        if image.GetDimension() == 3 and image.GetSize()[2] == len(files):
            return image
    except RuntimeError:
        pass
    return np.stack([_decode_one(f, source) for f in files])


def _decode_one(path: str, source: str) -> np.ndarray:
    try:
        image = sitk.ReadImage(path, imageIO="GDCMImageIO")
        _check_uncompressed_sizes([path], source)
        return sitk.GetArrayFromImage(image).reshape(image.GetSize()[1], image.GetSize()[0])
    except RuntimeError as gdcm_error:
        import pydicom

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a truncated file only warns in pydicom: that is a failure here
                ds = pydicom.dcmread(path, force=True)
                array = ds.pixel_array.astype(np.float32)
            return array * float(getattr(ds, "RescaleSlope", 1.0)) + float(getattr(ds, "RescaleIntercept", 0.0))
        except Exception as exc:
            first = str(gdcm_error).strip().splitlines()[-1] if str(gdcm_error).strip() else "unknown error"
            raise InputReadError(
                f"{source}: {os.path.basename(path)} does not decode ({first.strip()}; pydicom: {exc.__class__.__name__}); "
                "the file is truncated or corrupt, so the series would have a gap. Copy the series again") from None


def _build_image(volume: sitk.Image | np.ndarray, ordered: list[Slice], geometry: dict, info: dict) -> sitk.Image:
    """The volume with the geometry the headers give (the reader's own image is kept, not copied)."""
    first = ordered[0]
    dy, dx = first.pixel_spacing
    if first.orientation is None:
        direction = np.eye(3)
        info["quality"]["orientation_assumed"] = True
    else:
        row, col = np.array(first.orientation[:3]), np.array(first.orientation[3:])
        direction = np.column_stack([row, col, np.cross(row, col)])
    shear = geometry["shear"]
    if np.any(shear):
        from scipy import ndimage

        array = volume if isinstance(volume, np.ndarray) else sitk.GetArrayViewFromImage(volume)
        row, col = direction[:, 0], direction[:, 1]
        per_slice = np.array([np.dot(shear, col) / dy, np.dot(shear, row) / dx])  # (rows, cols) pixels per slice
        array = np.stack([ndimage.shift(array[k].astype(np.float32), k * per_slice, order=1, mode="constant",
                                        cval=-1024.0) for k in range(array.shape[0])])
        image = sitk.GetImageFromArray(array)
    elif isinstance(volume, np.ndarray):
        image = sitk.GetImageFromArray(volume)
    else:
        image = volume
        for key in image.GetMetaDataKeys():   # GDCM's tags of one file: not the volume's
            image.EraseMetaData(key)
    image.SetSpacing((float(dx), float(dy), float(geometry["step"])))
    image.SetOrigin(tuple(float(v) for v in (first.position or (0.0, 0.0, 0.0))))
    image.SetDirection(tuple(direction.ravel()))
    if float(geometry["step"]) > 5.0:
        info["quality"]["thick_slices_mm"] = round(float(geometry["step"]), 2)
    return image


def seg_sources(info: dict, wanted: bool | None) -> list | None:
    """The CT images a DICOM SEG of this result can refer to (slice k = image k: their headers as
    read, or their files), or None: not DICOM, not wanted (None means: yes for DICOM input), or
    resampled onto another grid (noted)."""
    files = info.get("volume_files")
    if wanted and not files:
        info.setdefault("notes", []).append("no DICOM SEG written (--dicom-seg): the input is not a DICOM series, so "
                                            "there are no source images to refer to")
        return None
    if not files or wanted is False:
        return None
    if info.get("quality", {}).get("resampled"):
        info["notes"].append("no DICOM SEG written: the series was resampled (gantry tilt), so its frames would not "
                             "lie on the source images")
        return None
    headers = info.get("volume_headers")
    return list(headers) if headers and len(headers) == len(files) else files
