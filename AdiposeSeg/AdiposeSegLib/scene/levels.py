"""Vertebral levels in the MRML scene: where a result's levels are kept (a JSON attribute of the
segmentation), the level marks (a locked markups point list, seen in the sagittal view), the levels
table (L3 on top, then the other levels from head to feet), slice jumps, and the user's own L3.

Used by SceneLogic; MRML only, no Qt.
"""
from __future__ import annotations

import json

import SimpleITK as sitk

import slicer

from ..errors import AdiposeSegError
from ..measuring.indices import level_measures, level_report
from ..measuring.level_measures import TRUSTED, manual_l3_entry
from ..reading.orientation import axial_axis, input_axial_index
from .tables import fill_table

LEVELS_ATTRIBUTE = "AdiposeSeg.Levels"           # JSON: the summary's "levels" for this segmentation
LEVEL_MARKS_REFERENCE = "AdiposeSegLevelMarks"   # segmentation -> markups point list, one point per level
LEVELS_TABLE_REFERENCE = "AdiposeSegLevelsTable"  # segmentation -> one row per level, L3 first
PATIENT_ATTRIBUTE = "AdiposeSeg.Patient"         # JSON: {"height_m", "weight_kg", "sex", "source"}
LEVEL_COLUMNS = ("level", "slice", "source", "confidence", "SMA_cm2", "SMD_HU", "SMI_cm2_m2", "IMAT_cm2", "SAT_cm2",
                 "VAT_cm2", "VAT_SAT_ratio", "LAMA_cm2", "NAMA_cm2")


def levels_of(segmentationNode) -> dict:
    text = segmentationNode.GetAttribute(LEVELS_ATTRIBUTE) if segmentationNode is not None else None
    return json.loads(text) if text else {}


def patient_of(segmentationNode) -> dict:
    text = segmentationNode.GetAttribute(PATIENT_ATTRIBUTE) if segmentationNode is not None else None
    return json.loads(text) if text else {}


def level_reports(segmentationNode, levels: dict | None = None) -> dict:
    """The levels with the patient-normalised indices (SMI, SATI, VATI, BMI: with a height) as
    summary.json has them; the cut-off flags at L3 only."""
    patient = patient_of(segmentationNode)
    levels = levels_of(segmentationNode) if levels is None else levels
    return {name: level_report(level, patient, with_flags=name == "L3") for name, level in levels.items()}


def ordered(levels: dict) -> list[str]:
    """L3 first, then the others from head to feet."""
    rest = sorted((name for name in levels if name != "L3"), key=lambda name: -levels[name]["slice"])
    return (["L3"] if "L3" in levels else []) + rest


def _ras(level: dict, image: sitk.Image) -> list[float]:
    """The level's mark: its vertebral-body centre (LPS -> RAS) at its slice's height."""
    if level.get("centre_lps_mm"):
        x, y, _ = level["centre_lps_mm"]
    else:
        x, y, _ = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in image.GetSize()])
    return [-x, -y, float(level["z_mm"])]


def write_levels(scene, segmentationNode, image: sitk.Image, levels: dict):
    """Store the levels on the segmentation and show them: marks and the levels table."""
    segmentationNode.SetAttribute(LEVELS_ATTRIBUTE, json.dumps(levels))
    marks = segmentationNode.GetNodeReference(LEVEL_MARKS_REFERENCE)
    if marks is None and levels:
        marks = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{segmentationNode.GetName()} levels")
        marks.CreateDefaultDisplayNodes()
        segmentationNode.SetNodeReferenceID(LEVEL_MARKS_REFERENCE, marks.GetID())
    if marks is not None:
        marks.RemoveAllControlPoints()
        for name in ordered(levels):
            index = marks.AddControlPoint(*_ras(levels[name], image), name)
            marks.SetNthControlPointLocked(index, True)
            marks.SetNthControlPointDescription(index, f"{levels[name]['source']}, {levels[name]['confidence']} confidence")
    table = segmentationNode.GetNodeReference(LEVELS_TABLE_REFERENCE)
    if table is None and levels:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentationNode.GetName()} levels")
        segmentationNode.SetNodeReferenceID(LEVELS_TABLE_REFERENCE, table.GetID())
    if table is not None:
        _fill_table(table, level_reports(segmentationNode, levels))
    return marks, table


def refill_levels_table(segmentationNode) -> None:
    """The levels table again (after the patient's height, weight or sex changed)."""
    table = segmentationNode.GetNodeReference(LEVELS_TABLE_REFERENCE)
    if table is not None:
        _fill_table(table, level_reports(segmentationNode))


def _fill_table(tableNode, levels: dict) -> None:
    fill_table(tableNode, LEVEL_COLUMNS, [{**levels[name], "level": name} for name in ordered(levels)])


def jump_to_level(scene, segmentationNode, image: sitk.Image, name: str = "L3"):
    """Centre every slice view on the level's mark; returns its RAS position (None: no such level)."""
    level = levels_of(segmentationNode).get(name)
    if level is None:
        return None
    ras = _ras(level, image)
    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, *ras, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
    return ras


def axial_slice_at(image: sitk.Image, ras, clip: bool = False) -> int:
    """The canonical axial slice (counted from the inferior end) through a RAS point, e.g. the red
    slice view's centre; a point beyond the CT is refused, or with clip=True gives the nearest slice."""
    axis, _ = axial_axis(image)
    count = image.GetSize()[axis]
    index = image.TransformPhysicalPointToContinuousIndex((-ras[0], -ras[1], ras[2]))[axis]
    if not -0.5 <= index <= count - 0.5:
        if not clip:
            raise AdiposeSegError(f"the point is outside the CT's {count} axial slices")
        index = min(max(index, 0.0), count - 1.0)
    return input_axial_index(image, int(round(index)))


def manual_l3(levels: dict, pair, k: int, input_slice: int) -> dict:
    """The levels with L3 set by the user at canonical slice k: indices recomputed on the current
    (possibly edited) labels of `pair` (pipeline.CanonicalPair); the level found on the bone is
    kept as auto_slice."""
    entry = manual_l3_entry(k, input_slice, pair.z[k], levels.get("L3"))
    return {**levels, "L3": {**entry, **level_measures(pair.labels[k], pair.hu[k], pair.pixel_area_mm2)}}


def remeasure(levels: dict, pair, processed: set) -> dict:
    """The levels' indices recomputed on the current labels of `pair` (after edits or a re-run)."""
    out = {}
    for name, level in levels.items():
        k = int(level["slice"])
        trusted = level.get("source") == "manual" or level.get("confidence") in TRUSTED
        if trusted and k in processed and 0 <= k < pair.labels.shape[0]:
            level = {key: value for key, value in level.items() if key != "not_measured"}
            level.update(level_measures(pair.labels[k], pair.hu[k], pair.pixel_area_mm2))
        out[name] = level
    return out


def levels_picture_png(volumeNode, segmentationNode, labels: sitk.Image) -> bytes | None:
    """The levels picture (sagittal, coronal bone slab, L3 slice with its overlay) of the segmentation as it
    is now, as PNG bytes for the module panel and the web page; None when no level is known."""
    import io

    from ..reading.orientation import to_canonical
    from ..reporting.levels_figure import levels_figure
    from .volumes import image_from_volume_node

    levels = levels_of(segmentationNode)
    if not levels:
        return None
    canonical = to_canonical(image_from_volume_node(volumeNode))
    hu = sitk.GetArrayViewFromImage(canonical)
    label_array = sitk.GetArrayViewFromImage(to_canonical(labels))
    sheet = levels_figure(canonical, hu, label_array, levels)
    if sheet is None:
        return None
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
