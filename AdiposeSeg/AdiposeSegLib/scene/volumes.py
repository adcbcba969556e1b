"""Which results belong to which CT, and CT volume nodes <-> engine images (MRML only)."""
from __future__ import annotations


import numpy as np
import SimpleITK as sitk
import vtk

import slicer

from ..errors import AdiposeSegError
from ..reading.orientation import axial_count, from_canonical, to_canonical
from ..tissues import LABELS, NAMES


SEGMENTATION_REFERENCE = "AdiposeSegSegmentation"   # volume -> its AdiposeSeg segmentation
TABLE_REFERENCE = "AdiposeSegTable"                  # segmentation -> statistics table
PREDICTION_REFERENCE = "AdiposeSegPrediction"        # segmentation -> hidden label map of the unedited prediction
PLOT_REFERENCE = "AdiposeSegPlot"
SOURCE_VOLUME_REFERENCE = "AdiposeSegSourceVolume"        # segmentation -> the volume it was computed from
SOURCE_SEGMENTATION_REFERENCE = "AdiposeSegSourceSegmentation"  # table -> the segmentation it describes
PREVIOUS_DISPLAY_ATTRIBUTE = "AdiposeSeg.DisplayBeforeFalseColour"
FALSE_COLOUR_NAME = "AdiposeSeg false colour"
PROCESSED_ATTRIBUTE = "AdiposeSeg.ProcessedSlices"         # canonical axial slices segmented so far, e.g. "0-29"
PLOTTED = ("SAT", "VAT", "Muscle")


class EditedSegmentationError(AdiposeSegError):
    """Re-running would replace a segmentation the user has edited."""


def ensure_segmentation_converters() -> None:
    """Outside Slicer nothing registers the segmentation converter rules; inside Slicer they exist already."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.ConstructRepresentationObjectByRepresentation("Binary labelmap") is None:
        for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule, slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
            factory.RegisterConverterRule(rule())


# ---------------------------------------------------------------- geometry: volume node <-> SimpleITK

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def image_from_volume_node(volume_node) -> sitk.Image:
    """A volume node's voxels and geometry as a SimpleITK image in LPS (what the engine works in)."""
    if volume_node is None or volume_node.GetImageData() is None:
        raise AdiposeSegError("the volume has no image data; load a CT first")
    if volume_node.GetParentTransformNode() is not None:
        raise AdiposeSegError(f"{volume_node.GetName()}: harden or remove its transform first (Data module, right-click > Harden transform)")
    array = slicer.util.arrayFromVolume(volume_node)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    m = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASDirectionMatrix(m)
    ras = np.array([[m.GetElement(r, c) for c in range(3)] for r in range(3)])
    image.SetDirection(tuple((_RAS_TO_LPS @ ras).ravel()))
    image.SetOrigin(tuple(_RAS_TO_LPS @ np.array(volume_node.GetOrigin())))
    image.SetSpacing(volume_node.GetSpacing())
    return image


def set_volume_geometry_like(target_node, source_node) -> None:
    m = vtk.vtkMatrix4x4()
    source_node.GetIJKToRASMatrix(m)
    target_node.SetIJKToRASMatrix(m)


def volume_node_from_image(scene, image: sitk.Image, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(class_name, name)
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayViewFromImage(image).copy())
    node.SetSpacing(image.GetSpacing())
    node.SetOrigin(tuple(_RAS_TO_LPS @ np.array(image.GetOrigin())))
    direction = _RAS_TO_LPS @ np.array(image.GetDirection()).reshape(3, 3)
    m = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, direction[r, c])
    node.SetIJKToRASDirectionMatrix(m)
    return node


# ---------------------------------------------------------------- the job that runs off the GUI thread


def _keep_manual_l3(new_levels: dict, old_levels: dict) -> dict:
    """A partial re-run finds the levels again; an L3 the user set by hand stays."""
    manual = old_levels.get("L3")
    if manual and manual.get("source") == "manual":
        return {**new_levels, "L3": manual}
    return new_levels


def _shown_rows(rows: list[dict], processed: set) -> list[dict]:
    """The table's rows: slices segmented so far, and any other slice that holds tissue (painted by hand)."""
    return [r for r in rows if r["slice"] in processed or any(r[f"{NAMES[k]}_area_cm2"] > 0 for k in LABELS)]


def _ranges_text(indices) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    parts, run = [], []
    for k in sorted(set(int(i) for i in indices)):
        if run and k == run[-1] + 1:
            run.append(k)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [k]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def _parse_ranges(text: str) -> set[int]:
    out = set()
    for part in filter(None, (text or "").split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _processed_slices(segmentationNode, ct: sitk.Image) -> set[int]:
    """Canonical slices AdiposeSeg has segmented; a segmentation from before this was recorded counts as whole."""
    text = segmentationNode.GetAttribute(PROCESSED_ATTRIBUTE)
    if text is not None:
        return _parse_ranges(text)
    if segmentationNode.GetSegmentation().GetNumberOfSegments() == 0:
        return set()
    return set(range(axial_count(ct)))


def _replace_slices(current: sitk.Image, new: sitk.Image, slice_range: tuple[int, int], reference: sitk.Image) -> sitk.Image:
    """`current` with the canonical axial slices start..stop taken from `new` (both on the reference's grid)."""
    start, stop = slice_range
    merged = sitk.GetArrayFromImage(to_canonical(current)).astype(np.uint8)
    merged[start:stop] = sitk.GetArrayFromImage(to_canonical(new))[start:stop]
    canonical = sitk.GetImageFromArray(merged)
    canonical.CopyInformation(to_canonical(reference))
    return from_canonical(canonical, reference)
