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


class SegNotWritten(Exception):
    """A DICOM SEG cannot honestly be made for this input (said in the summary's notes)."""


# Type 2 attributes of the Patient and General Study modules that the SEG and SR copy from the
# source. De-identification often removes them; the standard lets a copy be present and empty.
COPIED_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")
REFERENCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


def read_sources(volume_files: list[str]) -> list:
    """The source CT headers, as highdicom takes them: a Type 2 attribute the source lacks is added
    empty (the file itself is never touched)."""
    import pydicom

    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in volume_files]
    for ds in sources:
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet   # an empty value means the default repertoire; highdicom refuses ""
        for name in COPIED_TYPE2:
            if name not in ds:
                setattr(ds, name, "")
    return sources


def check_references(sources: list) -> None:
    """A SEG must name the images it was made on; refuse (noted) when the source cannot be referred to."""
    missing = sorted({name for ds in sources for name in REFERENCE_UIDS if not str(getattr(ds, name, "") or "")},
                     key=REFERENCE_UIDS.index)
    if missing:
        raise SegNotWritten(f"the source DICOM has no {', '.join(missing)} (anonymised?), so a DICOM SEG cannot "
                            "refer to it")


def write_dicom_seg(array: np.ndarray, sources: list, out_path: str | os.PathLike, context: DicomContext):
    """array: (slices, rows, cols) labels, slice k on `sources[k]` (the analysed CT images).
    Returns the path and the Segmentation dataset (for the SR that refers to it)."""
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
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=context.uid(), series_number=context.series_number,
        sop_instance_uid=context.uid(), instance_number=1, manufacturer="AdiposeSeg",
        manufacturer_model_name=context.model_name, software_versions=context.software_version,
        device_serial_number="0", series_description=context.series_description("SEG"),
        content_label="ADIPOSESEG", content_description=context.content_description(),
        content_creator_name=context.content_creator or None,
        series_date=context.now.date(), series_time=context.now.time(),
        content_date=context.now.date(), content_time=context.now.time())
    if not context.content_creator:
        seg.ContentCreatorName = ""   # Type 2: present, empty for an automatic result nobody has reviewed
    with atomic_path(out_path) as tmp:
        seg.save_as(str(tmp))
    return Path(out_path), seg

