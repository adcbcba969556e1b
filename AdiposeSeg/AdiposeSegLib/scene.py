"""SceneLogic: the MRML-facing logic of the AdiposeSeg module (MRML and slicer.util, never qt).

It turns volume nodes into engine images, runs the engine (in the caller's thread or a background
thread), and writes segmentation, table and plot nodes. It runs inside Slicer and, for tests, on the
`slicer-core` wheel's real MRML scene.
"""
from __future__ import annotations

import datetime
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import vtk

import slicer

from .batch import run_batch
from .errors import AdiposeSegError
from .manifest import MANIFEST, manifest_text, read_manifest
from .model_card import LoadedModel, load_model
from .pipeline import SegmentationResult, segment_image, statistics_for_labels
from .progress import RunControl
from .safe_write import atomic_path, write_text
from .statistics import SLICE_COLUMNS, Statistics
from .tissues import COLORS, LABELS, NAMES, SegmentOptions, label_for_name
from .writers import terminology_tag, write_segmentation

SEGMENTATION_REFERENCE = "AdiposeSegSegmentation"   # volume -> its AdiposeSeg segmentation
TABLE_REFERENCE = "AdiposeSegTable"                  # segmentation -> statistics table
PREDICTION_REFERENCE = "AdiposeSegPrediction"        # segmentation -> hidden label map of the unedited prediction
PLOT_REFERENCE = "AdiposeSegPlot"
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

@dataclass
class SegmentJob:
    """A segmentation running in a background thread. Poll `done`, then call `finish()` on the GUI thread."""

    volume_node: object
    control: RunControl
    thread: threading.Thread | None = None
    result: SegmentationResult | None = None
    error: BaseException | None = None
    fraction: float = 0.0
    message: str = "starting"
    apply: object = None          # callable(result) -> (segmentation node, table node)
    outputs: tuple | None = None

    @property
    def done(self) -> bool:
        return self.thread is None or not self.thread.is_alive()

    def cancel(self) -> None:
        self.control.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return self.done

    def finish(self):
        """Apply the result to the scene (GUI thread). Raises the run's error; a cancel changes nothing."""
        self.wait()
        if self.error is not None:
            raise self.error
        if self.outputs is None:
            self.outputs = self.apply(self.result)
        return self.outputs


# ---------------------------------------------------------------- the logic

@dataclass
class SceneLogic:
    scene: object
    model_dir: str | None = None
    options: SegmentOptions = field(default_factory=SegmentOptions)
    _model: LoadedModel | None = None

    def __post_init__(self):
        ensure_segmentation_converters()

    # -- model
    def model(self) -> LoadedModel:
        wanted = str(self.model_dir) if self.model_dir else None
        if self._model is None or (wanted and str(self._model.directory) != str(Path(wanted))):
            self._model = load_model(self.model_dir)
        return self._model

    # -- segment
    def processVolume(self, volumeNode, segmentationNode=None, tableNode=None, options: SegmentOptions | None = None,
                      waitForCompletion: bool = True, progress=None, replaceEdited: bool = False, l3Slice: int | None = None):
        """Segment a CT volume node. Returns (segmentation node, table node), or a SegmentJob when
        waitForCompletion is False. The scene is changed only when the run completes."""
        options = options or self.options
        existing = segmentationNode or self.segmentationForVolume(volumeNode)
        if existing is not None and not replaceEdited and self.isEdited(existing, volumeNode):
            raise EditedSegmentationError(
                f"{existing.GetName()} was edited since it was computed; re-running would replace the edits "
                "(save it as ground truth first, or confirm the replacement)")
        image = image_from_volume_node(volumeNode)
        model = self.model()
        job = SegmentJob(volumeNode, RunControl(None))

        def report(fraction, message):
            job.fraction, job.message = fraction, message
            if progress is not None and waitForCompletion:
                progress(fraction, message)

        job.control.callback = report
        job.apply = lambda result: self._apply(result, volumeNode, existing, tableNode, model, l3Slice)

        def work():
            try:
                job.result = segment_image(image, model, options, job.control, l3_slice=l3Slice)
            except BaseException as exc:  # handed to the GUI thread by finish()
                job.error = exc

        if waitForCompletion:
            work()
            return job.finish()
        job.thread = threading.Thread(target=work, name="AdiposeSeg", daemon=True)
        job.thread.start()
        return job

    def _apply(self, result: SegmentationResult, volumeNode, segmentationNode, tableNode, model: LoadedModel, l3Slice):
        scene = self.scene
        if segmentationNode is None:
            segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volumeNode.GetName()} AdiposeSeg")
            segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        self._writeSegments(segmentationNode, result.labels, volumeNode)
        prediction = self._predictionNode(segmentationNode, volumeNode)
        slicer.util.updateVolumeFromArray(prediction, sitk.GetArrayViewFromImage(result.labels).copy())
        set_volume_geometry_like(prediction, volumeNode)
        segmentationNode.SetAttribute("AdiposeSeg.ModelName", model.card.name)
        segmentationNode.SetAttribute("AdiposeSeg.ModelVersion", model.card.version)
        segmentationNode.SetAttribute("AdiposeSeg.Device", result.device)
        volumeNode.SetNodeReferenceID(SEGMENTATION_REFERENCE, segmentationNode.GetID())
        tableNode = self._writeTable(result.statistics, segmentationNode, tableNode)
        self._plot(tableNode, segmentationNode)
        return segmentationNode, tableNode

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
        if display is not None:
            for label in LABELS:
                display.SetSegmentOpacity2DFill(NAMES[label], 0.5)

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

    def isEdited(self, segmentationNode, volumeNode) -> bool:
        prediction = self.predictionArray(segmentationNode)
        if prediction is None:
            return segmentationNode.GetSegmentation().GetNumberOfSegments() > 0
        current, _ = self.labelsFromSegmentation(segmentationNode, volumeNode)
        return not np.array_equal(current, prediction)

    # -- statistics
    def updateStatistics(self, segmentationNode, volumeNode, tableNode=None, l3Slice: int | None = None):
        """Recompute the table from the (edited) segments; returns the table node."""
        ct = image_from_volume_node(volumeNode)
        stats = statistics_for_labels(self.labelImage(segmentationNode, volumeNode, ct), ct, l3Slice)
        tableNode = self._writeTable(stats, segmentationNode, tableNode or segmentationNode.GetNodeReference(TABLE_REFERENCE))
        self._plot(tableNode, segmentationNode)
        return tableNode

    def _writeTable(self, stats: Statistics, segmentationNode, tableNode):
        if tableNode is None:
            tableNode = segmentationNode.GetNodeReference(TABLE_REFERENCE)
        if tableNode is None:
            tableNode = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentationNode.GetName()} areas")
        table = vtk.vtkTable()
        for column in SLICE_COLUMNS:
            array = vtk.vtkIntArray() if column == "slice" else vtk.vtkDoubleArray()
            array.SetName(column)
            array.SetNumberOfTuples(len(stats.rows))
            for i, row in enumerate(stats.rows):
                array.SetValue(i, row[column])
            table.AddColumn(array)
        tableNode.SetAndObserveTable(table)
        for column in SLICE_COLUMNS:
            if column.endswith("_area_cm2"):
                tableNode.SetColumnUnitLabel(column, "cm2")
            elif column.endswith("_mean_HU"):
                tableNode.SetColumnUnitLabel(column, "HU")
        tableNode.SetAttribute("AdiposeSeg.Totals", ";".join(f"{k}={v:.4f}" for k, v in stats.totals.items()))
        if stats.l3_row:
            tableNode.SetAttribute("AdiposeSeg.L3", ";".join(f"{k}={v}" for k, v in stats.l3_row.items()))
        segmentationNode.SetNodeReferenceID(TABLE_REFERENCE, tableNode.GetID())
        return tableNode

    def _plot(self, tableNode, segmentationNode):
        chart = segmentationNode.GetNodeReference(PLOT_REFERENCE)
        if chart is None:
            chart = self.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{segmentationNode.GetName()} area per slice")
            chart.SetTitle("Area per slice")
            chart.SetXAxisTitle("z (mm)")
            chart.SetYAxisTitle("area (cm2)")
            for name in PLOTTED:
                series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
                series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
                series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
                label = next(k for k in LABELS if NAMES[k] == name)
                series.SetColor(*[c / 255.0 for c in COLORS[label]])
                chart.AddAndObservePlotSeriesNodeID(series.GetID())
            segmentationNode.SetNodeReferenceID(PLOT_REFERENCE, chart.GetID())
        for i in range(chart.GetNumberOfPlotSeriesNodes()):
            series = chart.GetNthPlotSeriesNode(i)
            series.SetAndObserveTableNodeID(tableNode.GetID())
            series.SetXColumnName("z_mm")
            series.SetYColumnName(f"{series.GetName()}_area_cm2")
        return chart

    # -- batch
    def processFiles(self, paths, outputDir, options: SegmentOptions | None = None, workers: int = 1, cancelEvent=None,
                     labelmapFormat: str | None = None):
        """Segment files from disk (one result folder each, summary.csv); bad files are reported, not fatal."""
        from .batch import find_inputs

        inputs = find_inputs(paths)
        return run_batch(inputs, outputDir, self.model(), options or self.options, workers=workers,
                         control=RunControl(None, cancelEvent), labelmap_format=labelmapFormat)

    # -- ground truth
    def saveAsGroundTruth(self, volumeNode, segmentationNode, datasetDir, caseId: str | None = None, source: str = ""):
        """Write CT, edited segmentation, the unedited prediction and a manifest line into a dataset folder.

        Nothing is ever overwritten: a case id already in use gets a numbered suffix. Returns the manifest row.
        """
        dataset = Path(datasetDir)
        dataset.mkdir(parents=True, exist_ok=True)
        manifest = dataset / MANIFEST
        rows = read_manifest(manifest)
        base = _safe_id(caseId or volumeNode.GetName())
        used = {r["case_id"] for r in rows}
        case_id, n = base, 1
        while case_id in used or any((dataset / sub / f"{case_id}{ext}").exists()
                                     for sub, ext in (("images", ".nrrd"), ("labels", ".seg.nrrd"))):
            n += 1
            case_id = f"{base}_{n}"
        image = image_from_volume_node(volumeNode)
        labels_array, ignored = self.labelsFromSegmentation(segmentationNode, volumeNode)
        labels = sitk.GetImageFromArray(labels_array)
        labels.CopyInformation(image)
        prediction = self.predictionArray(segmentationNode)
        row = {"case_id": case_id, "image": f"images/{case_id}.nrrd", "segmentation": f"labels/{case_id}.seg.nrrd",
               "prediction": "", "source": source or volumeNode.GetName(),
               "model_version": segmentationNode.GetAttribute("AdiposeSeg.ModelVersion") or "",
               "edited": "", "date": datetime.datetime.now().isoformat(timespec="seconds")}
        with atomic_path(dataset / row["image"], overwrite=False) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)
        write_segmentation(labels, dataset / row["segmentation"], overwrite=False)
        if prediction is not None:
            pred = sitk.GetImageFromArray(prediction)
            pred.CopyInformation(image)
            row["prediction"] = f"predictions/{case_id}_prediction.seg.nrrd"
            write_segmentation(pred, dataset / row["prediction"], overwrite=False)
            row["edited"] = "yes" if not np.array_equal(prediction, labels_array) else "no"
        else:
            row["edited"] = "unknown"
        rows.append(row)
        write_text(manifest, manifest_text(rows))
        if ignored:
            row["ignored_segments"] = ignored
        return row


def _safe_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "case"
