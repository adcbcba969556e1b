"""DICOM headers: what a slice says about itself (position, orientation, spacing, patient), read
without its pixels, and the tolerances the series checks use."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputReadError

POSITION_TOLERANCE_MM = 0.01
SPACING_TOLERANCE = 0.05          # relative deviation of one slice step from the series' step
MIN_SLICES_FOR_VOLUME = 10        # a series with fewer is chosen only if nothing else is there
TILT_DEGREES = 0.5                # below this a shear is rounding, not a tilt
TAGS = ["SOPInstanceUID", "SeriesInstanceUID", "Modality", "ImageType", "ImageOrientationPatient",
        "ImagePositionPatient", "Rows", "Columns", "PixelSpacing", "InstanceNumber", "SeriesDescription",
        "SliceThickness", "ConvolutionKernel", "KVP", "ContrastBolusAgent", "GantryDetectorTilt", "SeriesNumber",
        "BodyPartExamined", "PatientSize", "PatientWeight", "PatientSex", "PatientAge", "StudyInstanceUID",
        "FrameOfReferenceUID", "RescaleIntercept", "RescaleSlope", "NumberOfFrames", "SOPClassUID", "ImagerPixelSpacing",
        "AcquisitionNumber", "AcquisitionTime", "ContrastBolusStartTime"]
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
DRIFT_LIMIT_DEG = 5.0             # slices tilted less than this against the series are drift, not another orientation
PHASE_GAP_S = 30.0                # acquisitions this far apart in one series are different phases


@dataclass
class Slice:
    path: str
    sop_uid: str
    series_uid: str
    modality: str
    image_type: list[str]
    orientation: tuple | None
    position: tuple | None
    rows: int
    cols: int
    pixel_spacing: tuple | None
    header: dict = field(default_factory=dict)

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def read_header(path: str) -> Slice:
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=TAGS)
    except Exception as exc:  # pydicom raises several types for broken files
        raise InputReadError(f"{path}: not a readable DICOM file ({exc.__class__.__name__}: {exc})") from None

    def floats(name, n):
        value = getattr(ds, name, None)
        try:
            out = tuple(float(v) for v in value)
            return out if len(out) == n else None
        except (TypeError, ValueError):
            return None

    return Slice(path=path, sop_uid=_text(getattr(ds, "SOPInstanceUID", "")),
                 series_uid=_text(getattr(ds, "SeriesInstanceUID", "")), modality=_text(getattr(ds, "Modality", "")),
                 image_type=[t.upper() for t in _text(getattr(ds, "ImageType", "")).split("\\") if t],
                 orientation=floats("ImageOrientationPatient", 6), position=floats("ImagePositionPatient", 3),
                 rows=int(getattr(ds, "Rows", 0) or 0), cols=int(getattr(ds, "Columns", 0) or 0),
                 pixel_spacing=floats("PixelSpacing", 2),
                 header={name: _text(getattr(ds, name, "")) for name in TAGS[10:]})


def _normal(orientation) -> np.ndarray:
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    return np.cross(row, col)


def plane_name(orientation) -> str:
    if orientation is None:
        return "unknown"
    n = np.abs(_normal(orientation))
    axis = int(np.argmax(n))
    if n[axis] < 0.8:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def describe(slices: list[Slice]) -> dict:
    """What a series is, as recorded in each result's summary."""
    first = slices[0]
    return {"uid": first.series_uid, "description": first.header.get("SeriesDescription", ""),
            "series_number": first.header.get("SeriesNumber", ""), "modality": first.modality,
            "image_type": "\\".join(first.image_type), "plane": plane_name(first.orientation), "files": len(slices),
            "slice_thickness_mm": first.header.get("SliceThickness", ""), "kernel": first.header.get("ConvolutionKernel", ""),
            "kVp": first.header.get("KVP", ""), "contrast_agent": first.header.get("ContrastBolusAgent", ""),
            "body_part": first.header.get("BodyPartExamined", "")}


def patient_from_header(header: dict) -> dict:
    """Height (m), weight (kg) and sex as the DICOM header records them; missing values are absent."""
    out: dict = {"source": "DICOM header"}
    for key, tag in (("height_m", "PatientSize"), ("weight_kg", "PatientWeight")):
        try:
            value = float(header.get(tag) or 0)
        except ValueError:
            value = 0.0
        if value > 0:
            out[key] = value
    if header.get("PatientSex", "").upper() in ("M", "F"):
        out["sex"] = header["PatientSex"].upper()
    return out


def _series_step(slices: list[Slice]) -> float:
    usable = [s for s in slices if s.position and s.orientation and not s.is_localizer]
    if len(usable) < 2:
        return float("inf")
    n = _normal(usable[0].orientation)
    d = sorted(float(np.dot(n, s.position)) for s in usable)
    steps = [b - a for a, b in zip(d, d[1:]) if b - a > POSITION_TOLERANCE_MM]
    return float(np.median(steps)) if steps else float("inf")


def _pixels(path: str) -> bytes:
    import pydicom

    ds = pydicom.dcmread(path, force=True)
    return bytes(ds.PixelData) if "PixelData" in ds else b""
