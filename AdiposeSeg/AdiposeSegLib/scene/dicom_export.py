"""Export the current (possibly edited) segmentation of a DICOM-loaded CT as DICOM SEG + SR, through
the engine's writers (reporting/dicom_export.py), for the Slicer module and the browser app alike.

The caller resolves the CT's source files: in Slicer, the volume's `DICOM.instanceUIDs` attribute
(one UID per slice, in slice order) through `slicer.dicomDatabase.fileForInstance`.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import AdiposeSegError
from ..reading.orientation import axial_count
from ..reporting.dicom_context import DicomContext
from ..reporting.dicom_export import write_dicom_pair
from ..reporting.publish import publish, staging_folder
from ..running.identity import safe_name
from ..measuring.level_measures import slice_names
from ..running.pipeline import canonical_pair
from ..tissues import IMAT, NAMES, options_to_dict

DICOM_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"   # set by Slicer's DICOM scalar volume plugin


def dicom_source_files(volumeNode, file_for_instance) -> list[str]:
    """The CT's DICOM files in slice order, from the node's instance UIDs (Slicer's DICOM scalar volume
    plugin orders them like the slices); file_for_instance: e.g. slicer.dicomDatabase.fileForInstance.
    Empty when the volume was not loaded from DICOM."""
    uids = (volumeNode.GetAttribute(DICOM_UIDS_ATTRIBUTE) or "").split()
    return [file_for_instance(uid) for uid in uids]


def export_dicom(logic, volumeNode, segmentationNode, sourceFiles: list, outputDir: str | os.PathLike,
                 caseId: str | None = None, contentCreator: str = "", overwrite: bool = False) -> dict:
    """Write `<case>_seg.dcm` and `<case>_sr.dcm` of the segmentation as it is now into outputDir.
    sourceFiles: the CT's files in slice order, or the reader's headers of them (reading.dicom_headers.Slice,
    as the browser app keeps them: their UIDs and planes are not read again).
    Returns {"files": {...}, "notes": [...], "failures": [...]}; raises when nothing can be written."""
    from .. import __version__
    from .volumes import _processed_slices, image_from_volume_node
    from .levels import levels_of, remeasure

    logic.checkBelongs(volumeNode, segmentationNode)
    if not sourceFiles:
        raise AdiposeSegError(f"{volumeNode.GetName()} was not loaded from DICOM (no source images to refer to): "
                              "a DICOM SEG needs them")
    ct = image_from_volume_node(volumeNode)
    if len(sourceFiles) != ct.GetSize()[2]:
        raise AdiposeSegError(f"{len(sourceFiles)} DICOM files for the {ct.GetSize()[2]} slices of {volumeNode.GetName()}")
    paths = [getattr(f, "path", f) for f in sourceFiles]
    missing = [f for f in paths if not f or not Path(f).is_file()]
    if missing:
        raise AdiposeSegError(f"{len(missing)} of the CT's DICOM files are gone from the DICOM database folder "
                              f"(e.g. {missing[0] or 'an unknown file'}): import the series again")
    labels = logic.labelImage(segmentationNode, volumeNode, ct)
    pair = canonical_pair(labels, ct)
    processed = _processed_slices(segmentationNode, ct) or set(range(axial_count(ct)))
    levels = remeasure(levels_of(segmentationNode), pair, processed)
    stats = pair.statistics(int(levels["L3"]["slice"]) if "L3" in levels else None,
                            slice_names(levels, axial_count(ct)))
    include_imat = bool(segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(NAMES[IMAT]))
    context = DicomContext(
        model_name=segmentationNode.GetAttribute("AdiposeSeg.ModelName") or "AdiposeSeg",
        model_version=segmentationNode.GetAttribute("AdiposeSeg.ModelVersion") or "", software_version=__version__,
        run={"options": {**options_to_dict(logic.options), "include_imat": include_imat}}, slice_range=(min(processed), max(processed) + 1),
        slice_count=axial_count(ct), levels=levels, content_creator=contentCreator)
    case_id = safe_name(caseId or volumeNode.GetName())
    out = Path(outputDir)
    out.mkdir(parents=True, exist_ok=True)
    with staging_folder(out) as stage:
        staged, notes, failures = write_dicom_pair(labels, list(sourceFiles), stage, case_id, context, stats.totals,
                                                   replaces_dir=out if overwrite else None)
        if not staged:
            raise AdiposeSegError("; ".join(notes) or "no DICOM SEG written")
        marker = f"{case_id}_sr.dcm" if f"{case_id}_sr.dcm" in staged else f"{case_id}_seg.dcm"
        publish(staged, out, marker=marker, overwrite=overwrite, replaces=[f"{case_id}_seg.dcm", f"{case_id}_sr.dcm"],
                clash_hint="choose another folder or case id, or replace the earlier export")
    return {"files": {name: str(out / name) for name in staged}, "notes": notes, "failures": failures}
