"""Helpers the scene suites share: a reviewer's edit, as the Segment Editor leaves it (a label map
imported into the segmentation by segment name), on slicer-core's real MRML."""
import slicer
import vtk

from AdiposeSegLib.scene import volume_node_from_image
from AdiposeSegLib.tissues import LABELS, NAMES


def paint(scene, logic, segmentation, volume, labels) -> None:
    """Replace the segmentation's segments with `labels` (an array on the volume's grid)."""
    labelmap = volume_node_from_image(scene, logic.labelImage(segmentation, volume), "edit", "vtkMRMLLabelMapVolumeNode")
    slicer.util.updateVolumeFromArray(labelmap, labels)
    ids = vtk.vtkStringArray()
    for label in LABELS:
        ids.InsertNextValue(NAMES[label])
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation, ids)
    scene.RemoveNode(labelmap)
