"""DICOM SEG for PACS: the label map as a BINARY Segmentation object referencing the source CT slices.

Written with highdicom; segments carry the SNOMED CT codes of the module's terminology and the
model as the algorithm. Each frame refers to the CT image it was segmented on, so a viewer (and
Slicer's DICOM plugins, through dcmqi) places it exactly. Only for DICOM input whose volume is the
source slices themselves: a gantry-tilt series resampled onto another grid is not written (noted).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..tissues import COLORS, LABELS, NAMES, TERMINOLOGY
from .safe_write import atomic_path


class SegNotWritten(Exception):
    """A DICOM SEG cannot honestly be made for this input (said in the summary's notes)."""


def read_sources(volume_files: list[str]) -> list:
    """The source CT headers, as highdicom takes them."""
    import pydicom

    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in volume_files]
    for ds in sources:  # an empty value means the default repertoire; highdicom refuses the empty string
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet
    return sources


def write_dicom_seg(labels: sitk.Image, sources: list, out_path: str | os.PathLike, model_info: dict,
                    software_version: str):
    """labels: the label map on the grid of `sources` (read_sources of the volume's files; slice k =
    file k). Returns the path and the Segmentation dataset (for the SR that refers to it)."""
    try:
        import highdicom as hd
    except ImportError:
        raise SegNotWritten("highdicom is not installed (pip install highdicom)") from None
    from pydicom.sr.codedict import codes

    missing = [name for name in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
               if not str(getattr(sources[0], name, "") or "")]
    if missing:
        raise SegNotWritten(f"the source DICOM has no {', '.join(missing)} (anonymised?), so a DICOM SEG cannot refer to it")
    array = sitk.GetArrayFromImage(labels).astype(np.uint8)
    if array.shape[0] != len(sources):
        raise ValueError(f"{len(sources)} source images for {array.shape[0]} label slices")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model_info.get("name", "AdiposeSeg"), version=model_info.get("version", ""),
        family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for label in LABELS:
        (cat_code, cat_name), (type_code, type_name) = TERMINOLOGY[label]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=label, segment_label=NAMES[label],
            segmented_property_category=hd.sr.CodedConcept(cat_code, "SCT", cat_name),
            segmented_property_type=hd.sr.CodedConcept(type_code, "SCT", type_name),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*COLORS[label])))
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=array, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="AdiposeSeg",
        manufacturer_model_name=model_info.get("name", "AdiposeSeg"), software_versions=software_version,
        device_serial_number="0", series_description="AdiposeSeg SAT VAT muscle IMAT")
    with atomic_path(out_path) as tmp:
        seg.save_as(str(tmp))
    return Path(out_path), seg
