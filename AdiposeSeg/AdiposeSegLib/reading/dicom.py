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

import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .discover import is_hidden, looks_like_dicom
from ..errors import InputReadError, NotCTError

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


def dicom_files(folder: str) -> list[str]:
    return sorted(e.path for e in os.scandir(folder)
                  if e.is_file() and not is_hidden(e.name) and looks_like_dicom(e.path))


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


def _check_no_lost_files(folder: str, files: list[str], slices: list[Slice]) -> None:
    """A file that belongs with the series but cannot be read is an error wherever it lies, not
    "another series": an empty or cut-off file named like the series' files, or a DICOM file whose
    header stops before its UIDs (truncated in copy)."""
    broken = [s.path for s in slices if not s.series_uid and not s.sop_uid]
    suffixes = {os.path.splitext(f)[1].lower() for f in files}
    names = set(files)
    for entry in os.scandir(folder):
        if entry.is_file() and not is_hidden(entry.name) and entry.path not in names and entry.name.upper() != "DICOMDIR" \
                and os.path.splitext(entry.name)[1].lower() in suffixes and entry.stat().st_size < 132:
            broken.append(entry.path)
    if broken and len(broken) < len(slices):
        shown = ", ".join(os.path.basename(b) for b in sorted(broken)[:3]) + (" ..." if len(broken) > 3 else "")
        raise InputReadError(f"{folder}: {len(broken)} file(s) beside the series are empty or cut off before their "
                             f"header ends ({shown}): a slice would be missing. Copy the series again")


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
    array = _decode([s.path for s in ordered], source)
    return _build_image(array, ordered, geometry, info)


def _check_single_frame(slices: list[Slice], source: str) -> None:
    frames = max(int(float(s.header.get("NumberOfFrames") or 1)) for s in slices)
    if frames > 1 or any(s.header.get("SOPClassUID") == ENHANCED_CT for s in slices):
        raise InputReadError(f"{source}: an Enhanced (multi-frame) CT object ({frames} frames in one file); AdiposeSeg "
                             "reads single-frame CT image series. Export the series as classic CT images (the PACS's "
                             "'legacy/classic' export option, or dcm4che's emf2sf) and retry")


def _check_consistent(slices: list[Slice], source: str) -> None:
    """What must be one value for the whole series: pixel spacing, frame of reference, rescale and
    contrast. A slice unlike the others would be measured with the wrong pixel size or HU."""
    def differ(values, what, why):
        distinct = sorted(set(values))
        if len(distinct) > 1:
            raise InputReadError(f"{source}: the slices differ in {what} ({', '.join(str(v) or '<none>' for v in distinct[:3])}"
                                 f"{' ...' if len(distinct) > 3 else ''}): {why}. Give one consistent series")

    for s in slices:
        if s.pixel_spacing is None:
            imager = s.header.get("ImagerPixelSpacing")
            raise InputReadError(f"{source}: {os.path.basename(s.path)} has no PixelSpacing"
                                 + (f" (only ImagerPixelSpacing {imager}, the detector's, not the patient's)" if imager else "")
                                 + ": the pixel size, and so every area, is unknown. Re-export the CT with its PixelSpacing")
        if min(s.pixel_spacing) <= 0:
            raise InputReadError(f"{source}: {os.path.basename(s.path)} has PixelSpacing {s.pixel_spacing}: spacings must be "
                                 "positive; the file is corrupt or wrongly edited")
    differ([tuple(round(v, 4) for v in s.pixel_spacing) for s in slices], "PixelSpacing",
           "areas would be computed with the wrong pixel size on some slices")
    differ([s.header.get("FrameOfReferenceUID", "") for s in slices], "FrameOfReferenceUID",
           "two frames of reference are two scans whose positions cannot be combined")
    differ(["RescaleIntercept" if s.header.get("RescaleIntercept") != "" else "none" for s in slices],
           "whether RescaleIntercept is present", "a slice without its rescale would be off by about 1024 HU")
    differ([s.header.get("ContrastBolusAgent", "") for s in slices], "ContrastBolusAgent",
           "two contrast phases in one series are two measurements")
    by_acquisition: dict[str, list[float]] = {}
    for s in slices:
        seconds = _seconds(s.header.get("AcquisitionTime", ""))
        if seconds is not None:
            by_acquisition.setdefault(s.header.get("AcquisitionNumber", ""), []).append(seconds)
    if len(by_acquisition) > 1:
        starts = sorted(min(v) for v in by_acquisition.values())
        if starts[-1] - starts[0] > PHASE_GAP_S:
            raise InputReadError(f"{source}: the series holds {len(by_acquisition)} acquisitions {starts[-1] - starts[0]:.0f} s "
                                 "apart (AcquisitionNumber/AcquisitionTime): different contrast phases mixed in one series. "
                                 "Give one phase (split the files by AcquisitionNumber)")


def _seconds(time_text: str) -> float | None:
    text = time_text.replace(":", "")
    try:
        return int(text[:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:] or 0)
    except ValueError:
        return None


def _angle_deg(a, b) -> float:
    """Angle between the slice normals of two ImageOrientationPatient values."""
    na, nb = _normal(a), _normal(b)
    return math.degrees(math.acos(float(np.clip(abs(np.dot(na, nb)) / (np.linalg.norm(na) * np.linalg.norm(nb)), 0, 1))))


def _set_aside(slices: list[Slice], source: str, info: dict) -> list[Slice]:
    """Localizers and slices unlike the series (orientation, size) are not part of the volume."""
    keep = [s for s in slices if not s.is_localizer]
    aside = [s for s in slices if s.is_localizer]
    if keep:
        # group by orientation (within a tolerance: scanners write cosines with jitter) and size
        groups: list[tuple[Slice, list[Slice]]] = []
        for s in keep:
            for reference, members in groups:
                if (s.rows, s.cols) == (reference.rows, reference.cols) and (
                        (s.orientation is None and reference.orientation is None)
                        or (s.orientation is not None and reference.orientation is not None
                            and np.allclose(s.orientation, reference.orientation, atol=1e-3))):
                    members.append(s)
                    break
            else:
                groups.append((s, [s]))
        main = max(groups, key=lambda g: len(g[1]))[1]
        chosen = {id(s) for s in main}
        reference = main[0]
        drifted = [s for s in keep if s.orientation is not None and reference.orientation is not None and id(s) not in chosen
                   and (s.rows, s.cols) == (reference.rows, reference.cols)
                   and _angle_deg(s.orientation, reference.orientation) < DRIFT_LIMIT_DEG]
        if drifted:
            worst = max(_angle_deg(s.orientation, reference.orientation) for s in drifted)
            raise InputReadError(f"{source}: the slice orientation drifts within the series ({len(drifted)} slice(s) "
                                 f"tilted up to {worst:.2f} degrees against the others): not one rigid stack, so slice "
                                 "positions and areas cannot be trusted. Re-export the series")
        aside += [s for s in keep if id(s) not in chosen]
        keep = main
    if not keep:
        raise InputReadError(f"{source}: the series holds only localizer (scout) images; give the axial CT series")
    if aside:
        names = ", ".join(os.path.basename(s.path) for s in aside[:3]) + (" ..." if len(aside) > 3 else "")
        info["notes"].append(f"{len(aside)} file(s) set aside as localizer or of another orientation/size: {names}")
        info["quality"]["set_aside_files"] = len(aside)
    return keep


def _order_and_check(slices: list[Slice], source: str, info: dict) -> tuple[list[Slice], dict]:
    if len(slices) == 1:
        s = slices[0]
        thickness = float(s.header.get("SliceThickness") or 0) or 1.0
        return slices, {"step": thickness, "shear": np.zeros(3)}
    if any(s.position is None or s.orientation is None for s in slices):
        raise InputReadError(f"{source}: some files lack ImagePositionPatient/ImageOrientationPatient, so the slices "
                             "cannot be placed in space; export the series as an original CT image series")
    normal = _normal(slices[0].orientation)
    depth = {id(s): float(np.dot(normal, s.position)) for s in slices}
    ordered = sorted(slices, key=lambda s: depth[id(s)])
    unique = [ordered[0]]
    for s in ordered[1:]:
        prev = unique[-1]
        if abs(depth[id(s)] - depth[id(prev)]) > POSITION_TOLERANCE_MM:
            unique.append(s)
            continue
        if _pixels(s.path) == _pixels(prev.path):
            info["notes"].append(f"{os.path.basename(s.path)} repeats {os.path.basename(prev.path)} "
                                 "(same position, same pixels): kept once")
            info["quality"]["duplicates_removed"] = info["quality"].get("duplicates_removed", 0) + 1
            continue
        raise InputReadError(
            f"{source}: {os.path.basename(prev.path)} and {os.path.basename(s.path)} are two different images at the same "
            f"position ({depth[id(s)]:.2f} mm along the slice normal); the folder mixes two series or reconstructions. "
            "Give one series (--series-uid) or separate the files")
    d = np.array([depth[id(s)] for s in unique])
    steps = np.diff(d)
    step = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - step) > max(SPACING_TOLERANCE * step, 0.1))
    if bad.size:
        k = int(bad[0])
        raise InputReadError(
            f"{source}: the slices are not evenly spaced: {steps[k]:.2f} mm between {os.path.basename(unique[k].path)} and "
            f"{os.path.basename(unique[k + 1].path)} where the series steps {step:.2f} mm ({bad.size} uneven step(s); "
            f"spacing {steps.min():.2f}..{steps.max():.2f} mm). Slices are missing or spacings are mixed; AdiposeSeg does "
            "not invent slice positions. Copy the complete series")
    positions = np.array([s.position for s in unique])
    shift = (positions[-1] - positions[0]) / (len(unique) - 1)
    shear = shift - np.dot(shift, normal) * normal
    tilt = math.degrees(math.atan2(float(np.linalg.norm(shear)), float(np.dot(shift, normal))))
    if abs(tilt) < TILT_DEGREES:
        shear = np.zeros(3)
    else:
        info["notes"].append(f"gantry tilt of {tilt:.1f} degrees: the slices were shifted in-plane onto a rectilinear grid "
                             f"(linear interpolation); slice spacing along the normal {step:.2f} mm")
        info["quality"]["gantry_tilt_deg"] = round(tilt, 2)
        info["quality"]["resampled"] = True
    return unique, {"step": step, "shear": shear}


def _pixels(path: str) -> bytes:
    import pydicom

    ds = pydicom.dcmread(path, force=True)
    return bytes(ds.PixelData) if "PixelData" in ds else b""


def _decode(files: list[str], source: str) -> np.ndarray:
    """(slices, rows, cols) in HU, in the given order; a file that does not decode is an error."""
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")  # names without .dcm are DICOM too
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
        _check_uncompressed_sizes(files, source)
        array = sitk.GetArrayFromImage(image)
        if array.shape[0] == len(files):
            return array
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


def _build_image(array: np.ndarray, ordered: list[Slice], geometry: dict, info: dict) -> sitk.Image:
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

        row, col = direction[:, 0], direction[:, 1]
        per_slice = np.array([np.dot(shear, col) / dy, np.dot(shear, row) / dx])  # (rows, cols) pixels per slice
        array = np.stack([ndimage.shift(array[k].astype(np.float32), k * per_slice, order=1, mode="constant",
                                        cval=-1024.0) for k in range(array.shape[0])])
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((float(dx), float(dy), float(geometry["step"])))
    image.SetOrigin(tuple(float(v) for v in (first.position or (0.0, 0.0, 0.0))))
    image.SetDirection(tuple(direction.ravel()))
    if float(geometry["step"]) > 5.0:
        info["quality"]["thick_slices_mm"] = round(float(geometry["step"]), 2)
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
            reader.SetImageIO("GDCMImageIO")
            reader.SetFileName(path)
            reader.ReadImageInformation()
            rows = int(reader.GetMetaData("0028|0010")) if reader.HasMetaDataKey("0028|0010") else 0
            cols = int(reader.GetMetaData("0028|0011")) if reader.HasMetaDataKey("0028|0011") else 0
            bits = int(reader.GetMetaData("0028|0100")) if reader.HasMetaDataKey("0028|0100") else 16
            needed = rows * cols * bits // 8
        if os.path.getsize(path) < needed:
            raise InputReadError(f"{source}: {os.path.basename(path)} is truncated (its pixel data is incomplete); copy the series again")


def seg_sources(info: dict, wanted: bool | None) -> list[str] | None:
    """The CT files a DICOM SEG of this result can refer to (slice k = file k), or None: not DICOM,
    not wanted (None means: yes for DICOM input), or resampled onto another grid (noted)."""
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
    return files
