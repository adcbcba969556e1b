"""The Slicer-facing logic (MRML and slicer.util, never qt), shared by the Slicer module and the browser
app, grouped by job: logic (SceneLogic: runs and results), volumes (which results belong to which CT,
volume nodes <-> images), jobs (the child-process run), segments, display (tables, plot, false colour),
levels (marks, levels table, Set L3), tables, ground_truth, dicom_export."""
from .jobs import SegmentJob
from .logic import SceneLogic
from .volumes import (PLOT_REFERENCE, PREDICTION_REFERENCE, SEGMENTATION_REFERENCE, TABLE_REFERENCE,
                      EditedSegmentationError, image_from_volume_node, set_volume_geometry_like,
                      volume_node_from_image)

__all__ = ["SceneLogic", "SegmentJob", "EditedSegmentationError", "image_from_volume_node", "volume_node_from_image",
           "set_volume_geometry_like", "SEGMENTATION_REFERENCE", "TABLE_REFERENCE", "PREDICTION_REFERENCE",
           "PLOT_REFERENCE"]
