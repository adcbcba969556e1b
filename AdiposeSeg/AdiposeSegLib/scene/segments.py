"""Segments <-> label maps: writing a run's labels, reading the (edited) segments back, what was edited."""
from __future__ import annotations


import numpy as np
import SimpleITK as sitk
import vtk

import slicer

from ..errors import AdiposeSegError
from ..reading.orientation import to_canonical
from ..tissues import COLORS, LABELS, NAMES, label_for_name
from ..reporting.writers import terminology_tag
from .volumes import (PREDICTION_REFERENCE, SEGMENTATION_REFERENCE, image_from_volume_node, set_volume_geometry_like)



DEFAULT_FILL_OPACITY = 0.4
DISPLAY_SET_ATTRIBUTE = "AdiposeSeg.DisplaySet"   # a re-run keeps the user's opacity, fill and outline


class SegmentsMixin:
    def _writeSegments(self, segmentationNode, labels: sitk.Image, volumeNode) -> None:
        segmentation = segmentationNode.GetSegmentation()
        ids = vtk.vtkStringArray()
        for label in LABELS:
            name = NAMES[label]
            segment = segmentation.GetSegment(name)
            if segment is None:
                segmentation.AddEmptySegment(name, name, [c / 255.0 for c in COLORS[label]])
                segment = segmentation.GetSegment(name)
            segment.SetLabelValue(label)
            segment.SetTag(segment.GetTerminologyEntryTagName(), terminology_tag(label))
            ids.InsertNextValue(name)
        labelmap = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__adiposeseg_import__")
        try:
            slicer.util.updateVolumeFromArray(labelmap, sitk.GetArrayViewFromImage(labels).copy())
            set_volume_geometry_like(labelmap, volumeNode)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentationNode, ids):
                raise AdiposeSegError("the label map could not be imported into the segmentation")
        finally:
            self.scene.RemoveNode(labelmap)
        display = segmentationNode.GetDisplayNode()
        if display is not None and not segmentationNode.GetAttribute(DISPLAY_SET_ATTRIBUTE):
            # the node's opacity, not each segment's: an editor's undo recreates segments at 1.0, and
            # per-segment values would then jump (issue 26: one Undo made every fill more opaque)
            display.SetOpacity2DFill(DEFAULT_FILL_OPACITY)
            for label in LABELS:
                display.SetSegmentOpacity2DFill(NAMES[label], 1.0)
            segmentationNode.SetAttribute(DISPLAY_SET_ATTRIBUTE, "1")

    def _predictionNode(self, segmentationNode, volumeNode):
        node = segmentationNode.GetNodeReference(PREDICTION_REFERENCE)
        if node is None:
            node = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{volumeNode.GetName()} AdiposeSeg prediction")
            node.SetHideFromEditors(True)
            node.SetAttribute("AdiposeSeg.Role", "prediction")
            segmentationNode.SetNodeReferenceID(PREDICTION_REFERENCE, node.GetID())
        return node

    # -- reading segments back
    def segmentationForVolume(self, volumeNode):
        return volumeNode.GetNodeReference(SEGMENTATION_REFERENCE) if volumeNode is not None else None

    def labelsFromSegmentation(self, segmentationNode, volumeNode) -> tuple[np.ndarray, list[str]]:
        """Current (possibly edited) segments as a label array on the volume's grid, matched by name.

        Returns the array (k, j, i) and the names of segments that are not AdiposeSeg tissues (ignored).
        """
        segmentation = segmentationNode.GetSegmentation()
        shape = slicer.util.arrayFromVolume(volumeNode).shape
        out = np.zeros(shape, dtype=np.uint8)
        ignored = []
        for i in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(i)
            name = segmentation.GetSegment(segment_id).GetName()
            label = label_for_name(name)
            if label is None:
                ignored.append(name)
                continue
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segment_id)
            labelmap = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__adiposeseg_export__")
            try:
                if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentationNode, ids, labelmap, volumeNode):
                    raise AdiposeSegError(f"segment {name} could not be exported")
                mask = slicer.util.arrayFromVolume(labelmap)
                if mask.shape != shape:
                    raise AdiposeSegError(f"segment {name} does not lie on the volume's grid")
                out[mask > 0] = label
            finally:
                self.scene.RemoveNode(labelmap)
        return out, ignored

    def labelImage(self, segmentationNode, volumeNode, ct: sitk.Image | None = None) -> sitk.Image:
        """The segments as a label image with the CT's geometry (pass `ct` when it is already at hand)."""
        labels, _ = self.labelsFromSegmentation(segmentationNode, volumeNode)
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(ct if ct is not None else image_from_volume_node(volumeNode))
        return image

    def predictionArray(self, segmentationNode) -> np.ndarray | None:
        node = segmentationNode.GetNodeReference(PREDICTION_REFERENCE)
        return None if node is None or node.GetImageData() is None else slicer.util.arrayFromVolume(node)

    def editedSlices(self, segmentationNode, volumeNode, ct: sitk.Image | None = None) -> list[int]:
        """Canonical axial slices whose segments differ from the unedited prediction."""
        ct = ct if ct is not None else image_from_volume_node(volumeNode)
        prediction = self.predictionArray(segmentationNode)
        current = sitk.GetArrayFromImage(to_canonical(self.labelImage(segmentationNode, volumeNode, ct)))
        if prediction is None or prediction.shape != sitk.GetArrayViewFromImage(ct).shape:
            has = current.reshape(current.shape[0], -1).any(axis=1)
            return [int(k) for k in np.flatnonzero(has)]
        predicted = sitk.GetImageFromArray(prediction)
        predicted.CopyInformation(ct)
        predicted = sitk.GetArrayFromImage(to_canonical(predicted))
        differs = (current != predicted).reshape(current.shape[0], -1).any(axis=1)
        return [int(k) for k in np.flatnonzero(differs)]

    def isEdited(self, segmentationNode, volumeNode) -> bool:
        return bool(self.editedSlices(segmentationNode, volumeNode))

    # -- statistics
