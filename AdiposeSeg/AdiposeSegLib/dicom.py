"""DICOM series discovery and reading: SimpleITK (GDCM) first, pydicom as the fallback decoder.

GDCM reads the compressed transfer syntaxes scanners write (JPEG 2000, JPEG lossless, RLE);
pydicom with pylibjpeg covers files GDCM rejects. Rescale slope/intercept are applied by both,
so the image is in Hounsfield units.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .errors import InputReadError, NotCTError


@dataclass
class SeriesInfo:
    uid: str
    files: list[str]
    modality: str
    description: str


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _file_header(path: str) -> tuple[str, str]:
    """(modality, series description) of one DICOM file, read without decoding pixels."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.LoadPrivateTagsOn()
    try:
        reader.ReadImageInformation()
        return _tag(reader, "0008|0060"), _tag(reader, "0008|103e")
    except RuntimeError:
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises several types for broken files
            raise InputReadError(f"{path}: not a readable DICOM file ({exc.__class__.__name__}: {exc})") from None
        return str(getattr(ds, "Modality", "")), str(getattr(ds, "SeriesDescription", ""))


def list_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """All DICOM series in a folder (not recursive), largest first."""
    folder = str(folder)
    reader = sitk.ImageSeriesReader()
    uids = reader.GetGDCMSeriesIDs(folder) or ()
    series = []
    for uid in uids:
        files = list(reader.GetGDCMSeriesFileNames(folder, uid))
        if not files:
            continue
        modality, description = _file_header(files[0])
        series.append(SeriesInfo(uid, files, modality, description))
    series.sort(key=lambda s: len(s.files), reverse=True)
    return series


def _check_left_out(folder: str, series: list[SeriesInfo], chosen: SeriesInfo) -> None:
    """GDCM leaves broken files out of a series without a word; a gap would corrupt volumes and areas."""
    import pydicom

    listed = {os.path.abspath(f) for s in series for f in s.files}
    for entry in os.scandir(folder):
        if not entry.is_file() or os.path.abspath(entry.path) in listed or entry.name.upper() == "DICOMDIR":
            continue
        with open(entry.path, "rb") as fh:
            head = fh.read(132)
        if not (entry.name.lower().endswith(".dcm") or head[128:132] == b"DICM"):
            continue
        try:
            ds = pydicom.dcmread(entry.path)
            belongs = str(getattr(ds, "SeriesInstanceUID", "")) in ("", chosen.uid)
            if belongs and "PixelData" in ds:
                ds.pixel_array  # decoding fails on truncated pixel data
            elif not belongs:
                continue
        except Exception as exc:
            raise InputReadError(
                f"{folder}: {entry.name} is a broken DICOM file ({exc.__class__.__name__}); the series would have a gap. "
                "Copy the series again or remove that file"
            ) from None


def choose_series(folder: str, series_uid: str | None) -> SeriesInfo:
    series = list_series(folder)
    if not series:
        raise InputReadError(f"{folder}: no DICOM series found in this folder (point to the folder that holds the .dcm files)")
    if series_uid is not None:
        for s in series:
            if s.uid == series_uid:
                return s
        known = ", ".join(s.uid or "<no uid>" for s in series)
        raise InputReadError(f"{folder}: no series with UID {series_uid}; series here: {known}")
    ct = [s for s in series if s.modality.upper() == "CT"]
    if ct:
        _check_left_out(folder, series, ct[0])
        return ct[0]
    if all(s.modality for s in series):
        found = ", ".join(sorted({s.modality for s in series}))
        raise NotCTError(f"{folder}: no CT series here (modality {found}); AdiposeSeg measures fat and muscle on CT only")
    return series[0]


def read_series(info: SeriesInfo, source: str) -> sitk.Image:
    if info.modality and info.modality.upper() != "CT":
        raise NotCTError(f"{source}: DICOM modality is {info.modality}, not CT; AdiposeSeg measures fat and muscle on CT only")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(info.files)
    try:
        image = reader.Execute()
        _check_uncompressed_sizes(info.files, source)
        return image
    except RuntimeError as gdcm_error:
        try:
            return read_with_pydicom(info.files)
        except InputReadError:
            raise
        except Exception as exc:
            first = str(gdcm_error).strip().splitlines()[-1] if str(gdcm_error).strip() else "unknown error"
            raise InputReadError(
                f"{source}: the DICOM pixel data could not be decoded ({first}; pydicom: {exc}). "
                "Check that the files are complete; for compressed data install pylibjpeg-openjpeg or python-gdcm"
            ) from None


def read_with_pydicom(files: list[str]) -> sitk.Image:
    """Decode a series with pydicom, rebuilding geometry from the patient position tags."""
    import pydicom

    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(f)
        except Exception as exc:
            raise InputReadError(f"{f}: not a readable DICOM file ({exc})") from None
        slices.append(ds)
    first = slices[0]
    row, col = (np.array(first.ImageOrientationPatient[:3], float), np.array(first.ImageOrientationPatient[3:], float))
    normal = np.cross(row, col)
    slices.sort(key=lambda ds: float(np.dot(normal, np.array(ds.ImagePositionPatient, float))))
    arrays = []
    for ds in slices:
        a = ds.pixel_array.astype(np.float32)
        a = a * float(getattr(ds, "RescaleSlope", 1.0)) + float(getattr(ds, "RescaleIntercept", 0.0))
        arrays.append(a)
    volume = np.stack(arrays)
    image = sitk.GetImageFromArray(volume)
    dy, dx = (float(v) for v in first.PixelSpacing)
    if len(slices) > 1:
        p0, p1 = (np.array(s.ImagePositionPatient, float) for s in slices[:2])
        dz = float(abs(np.dot(normal, p1 - p0))) or float(getattr(first, "SliceThickness", 1.0))
    else:
        dz = float(getattr(first, "SliceThickness", 1.0) or 1.0)
    image.SetSpacing((dx, dy, dz))
    image.SetOrigin(tuple(float(v) for v in slices[0].ImagePositionPatient))
    image.SetDirection(tuple(np.column_stack([row, col, normal]).ravel()))
    return image


UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def _check_uncompressed_sizes(files: list[str], source: str) -> None:
    """GDCM zero-fills pixel data cut off at the end of a file; catch that for uncompressed files."""
    from pydicom.filereader import read_file_meta_info

    needed = None
    for path in files:
        try:
            syntax = str(read_file_meta_info(path).get("TransferSyntaxUID", ""))
        except Exception:
            continue  # no file meta: GDCM already judged the file readable
        if syntax not in UNCOMPRESSED:
            continue
        if needed is None:  # every file of a series has the same rows, columns and bits
            reader = sitk.ImageFileReader()
            reader.SetFileName(path)
            reader.ReadImageInformation()
            rows, cols = int(_tag(reader, "0028|0010") or 0), int(_tag(reader, "0028|0011") or 0)
            needed = rows * cols * int(_tag(reader, "0028|0100") or 16) // 8
        if os.path.getsize(path) < needed:
            raise InputReadError(f"{source}: {os.path.basename(path)} is truncated (its pixel data is incomplete); copy the series again")
