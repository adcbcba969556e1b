"""A series' slices checked before a pixel is decoded: no file lost, single-frame, one size and
orthogonal geometry, localizers and other phases set aside with a note, ordered along the normal
with duplicates, gaps, uneven steps and tilts found, and uncompressed pixel data of the right size."""
from __future__ import annotations

import math
import os

import numpy as np
import SimpleITK as sitk

from .discover import is_hidden
from ..errors import InputReadError

from .dicom_headers import (DRIFT_LIMIT_DEG, ENHANCED_CT, PHASE_GAP_S, POSITION_TOLERANCE_MM, SPACING_TOLERANCE,
                            TILT_DEGREES, Slice, _normal, _pixels)


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
