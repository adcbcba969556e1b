"""DICOM SEG for PACS: the label map as a BINARY Segmentation object referencing the source CT slices.

Written with highdicom; segments carry the codes of tissues.TERMINOLOGY and the model as the
algorithm. Each frame refers to the CT image it was segmented on, so a viewer (and Slicer's DICOM
plugins, through dcmqi) places it exactly. Only the analysed slices are its source images. Only
for DICOM input whose volume is the source slices themselves: a gantry-tilt series resampled onto
another grid is not written (noted).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..tissues import COLORS, LABELS, NAMES, TERMINOLOGY
from .dicom_context import DicomContext, coded
from .safe_write import atomic_path
from .seg_frames import fill_frames, plan_frames, presence, save


class SegNotWritten(Exception):
    """A DICOM SEG cannot honestly be made for this input (said in the summary's notes)."""


# Type 2 attributes of the Patient and General Study modules that the SEG and SR copy from the
# source. De-identification often removes them; the standard lets a copy be present and empty.
COPIED_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")
REFERENCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


def read_sources(volume_sources: list) -> list:
    """The source CT headers, as highdicom takes them. The first is read in full (highdicom copies its
    patient, study and equipment modules); the others need only their UIDs and plane, made from the
    reader's headers (a reading.dicom_headers.Slice: no second read of the files) or, for a path
    (Slicer's DICOM database), read without pixels. A Type 2 attribute the first lacks is added empty
    (the file itself is never touched)."""
    import pydicom

    sources = []
    for k, item in enumerate(volume_sources):
        if k and hasattr(item, "sop_uid"):
            sources.append(_reference(item))
            continue
        ds = pydicom.dcmread(getattr(item, "path", item), stop_before_pixels=True)
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet   # an empty value means the default repertoire; highdicom refuses ""
        for name in COPIED_TYPE2:
            if name not in ds:
                setattr(ds, name, "")
        sources.append(ds)
    return sources


def _reference(header):
    """What the SEG and SR use of a source image besides the first: its UIDs and its plane."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID = header.header.get("SOPClassUID", "")
    ds.SOPInstanceUID = header.sop_uid
    ds.StudyInstanceUID = header.header.get("StudyInstanceUID", "")
    ds.SeriesInstanceUID = header.series_uid
    ds.FrameOfReferenceUID = header.header.get("FrameOfReferenceUID", "")
    if header.position is not None:
        ds.ImagePositionPatient = list(header.position)
    if header.orientation is not None:
        ds.ImageOrientationPatient = list(header.orientation)
    return ds


def check_references(sources: list) -> None:
    """A SEG must name the images it was made on; refuse (noted) when the source cannot be referred to."""
    missing = sorted({name for ds in sources for name in REFERENCE_UIDS if not str(getattr(ds, name, "") or "")},
                     key=REFERENCE_UIDS.index)
    if missing:
        raise SegNotWritten(f"the source DICOM has no {', '.join(missing)} (anonymised?), so a DICOM SEG cannot "
                            "refer to it")


def write_dicom_seg(array: np.ndarray, sources: list, out_path: str | os.PathLike, context: DicomContext):
    """array: (slices, rows, cols) labels, slice k on `sources[k]` (the analysed CT images).
    Returns the path, the Segmentation dataset (for the SR that refers to it; for a scan whose frames
    were encoded directly, without its pixel data, which went straight to the file) and where each
    segment has pixels, as (segment number, source SOP Instance UID) pairs."""
    try:
        import highdicom as hd
    except ImportError:
        raise SegNotWritten("highdicom is not installed (pip install highdicom)") from None
    from pydicom.sr.codedict import codes

    check_references(sources)
    if array.shape[0] != len(sources):
        raise ValueError(f"{len(sources)} source images for {array.shape[0]} label slices")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=context.model_name, version=context.model_version, family=codes.cid7162.ArtificialIntelligence,
        parameters=context.rules())
    descriptions = []
    for label in context.labels:
        category, kind, modifier = TERMINOLOGY[label]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=label, segment_label=NAMES[label],
            segmented_property_category=coded(category), segmented_property_type=coded(kind),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            anatomic_regions=[coded(modifier)] if modifier else None,
            display_color=hd.color.CIELabColor.from_rgb(*COLORS[label])))
        if modifier:   # where the fat lies tells it apart (tissues.TERMINOLOGY)
            descriptions[-1].SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [coded(modifier)]
    pixels = np.asarray(array, dtype=np.uint8)
    if set(context.labels) != set(LABELS):   # a tissue left out (--no-imat): cleared on a copy, in place
        pixels = pixels.copy()
        for label in set(LABELS) - set(context.labels):
            pixels[pixels == label] = 0

    def segmentation(images, pixel_array):
        return hd.seg.Segmentation(
            source_images=images, pixel_array=pixel_array,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=series_uid, series_number=context.series_number,
            sop_instance_uid=sop_uid, instance_number=1, manufacturer="AdiposeSeg",
            manufacturer_model_name=context.model_name, software_versions=context.software_version,
            device_serial_number="0", series_description=context.series_description("SEG"),
            content_label="ADIPOSESEG", content_description=context.content_description(),
            content_creator_name=context.content_creator or None,
            series_date=context.now.date(), series_time=context.now.time(),
            content_date=context.now.date(), content_time=context.now.time())

    series_uid, sop_uid = context.uid(), context.uid()
    segments = sorted(context.labels)
    present = presence(pixels, segments)
    labelled = {(segment, str(sources[k].SOPInstanceUID)) for segment in segments for k in np.flatnonzero(present[segment])}
    plan = _frame_plan(pixels, present, sources)
    if plan is None:
        seg = segmentation(sources, pixels)
    else:   # highdicom on one plane holding each segment, the frames encoded from it (seg_frames)
        template = np.zeros((1,) + pixels.shape[1:], np.uint8)
        template.flat[:len(segments)] = segments
        seg = segmentation(sources[:1], template)
        fill_frames(seg, plan, sources, pixels)
    if not context.content_creator:
        seg.ContentCreatorName = ""   # Type 2: present, empty for an automatic result nobody has reviewed
    with atomic_path(out_path) as tmp:
        if plan is None:
            seg.save_as(str(tmp))
        else:
            save(seg, str(tmp), pixels, plan)
    return Path(out_path), seg, labelled


def _frame_plan(pixels: np.ndarray, present: dict, sources: list):
    """The frames to encode directly, or None where highdicom makes them itself (from full headers):
    one segment (its identification is then shared, not per frame), labels beyond the segments (which
    highdicom refuses), a source without a plane."""
    segments = list(present)
    if len(segments) < 2 or pixels.size == 0 or int(pixels.max()) > max(segments) or pixels[0].size < len(segments):
        return None
    try:
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in sources])
        orientation = [float(v) for v in sources[0].ImageOrientationPatient]
    except (AttributeError, TypeError, ValueError):
        return None
    if positions.shape != (len(sources), 3) or len(orientation) != 6:
        return None
    return plan_frames(present, positions, orientation)
