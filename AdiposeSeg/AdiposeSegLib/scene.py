"""SceneLogic: the MRML-facing logic of the AdiposeSeg module (MRML and slicer.util, never qt).

It turns volume nodes into engine images, runs the engine (in the caller's thread or a background
thread), and writes segmentation, table and plot nodes. It runs inside Slicer and, for tests, on the
`slicer-core` wheel's real MRML scene.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import vtk

import slicer

from .running.batch import run_batch
from .running.child_job import ChildSegmentation
from .errors import AdiposeSegError
from .reporting.manifest import MANIFEST, manifest_text, read_manifest
from .model.model_card import LoadedModel, load_model
from .reading.orientation import axial_count, from_canonical, input_axial_index, to_canonical
from .running.pipeline import SegmentationResult, canonical_pair, segment_image
from .running.progress import RunControl
from .reporting.publish import publish, staging_folder
from .reporting.safe_write import atomic_path, write_text
from .running.identity import safe_name
from .measuring.statistics import SLICE_COLUMNS, Statistics
from .tissues import COLORS, LABELS, NAMES, SegmentOptions, label_for_name
from .reporting.writers import terminology_tag, write_segmentation
from .measuring.level_measures import slice_names
from .scene_tables import fill_table
from .scene_levels import (LEVEL_MARKS_REFERENCE, LEVELS_TABLE_REFERENCE, axial_slice_at, jump_to_level, levels_of,
                           manual_l3, remeasure, write_levels)

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

class SegmentJob:
    """A segmentation running in a child process. Poll `done` from a GUI timer, then call `finish()`.

    `finish()` applies the result to the scene (on the caller's thread); a cancel, a failure or a
    crash of the child leaves the scene as it was.
    """

    def __init__(self, volume_node, runner: ChildSegmentation, apply):
        self.volume_node = volume_node
        self.runner = runner
        self._apply = apply
        self.outputs: tuple | None = None
        self._finished = False

    @property
    def done(self) -> bool:
        return self.runner.poll()

    @property
    def fraction(self) -> float:
        return self.runner.fraction

    @property
    def message(self) -> str:
        return self.runner.message

    def cancel(self) -> None:
        self.runner.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        return self.runner.wait(timeout)

    def finish(self):
        """Apply the result to the scene. Raises Cancelled (even if the child had finished: the
        user's cancel wins), the run's error, or an error when the volume left the scene meanwhile."""
        if self.outputs is not None:
            return self.outputs
        if self._finished:
            raise AdiposeSegError("this run has already ended")
        self._finished = True
        try:
            result = self.runner.result()
            self.outputs = self._apply(result)
            return self.outputs
        finally:
            self.runner.cleanup()


# ---------------------------------------------------------------- the logic

@dataclass
class SceneLogic:
    scene: object
    model_dir: str | None = None
    options: SegmentOptions = field(default_factory=SegmentOptions)
    python: str | None = None        # interpreter for background runs (Slicer: PythonSlicer); default sys.executable
    work_root: str | None = None     # where background runs exchange files; default the system's temp folder
    _model: LoadedModel | None = None

    def __post_init__(self):
        ensure_segmentation_converters()

    # -- model
    def model(self) -> LoadedModel:
        wanted = str(self.model_dir) if self.model_dir else None
        if self._model is None or (wanted and str(self._model.directory) != str(Path(wanted))):
            self._model = load_model(self.model_dir)
        return self._model

    # -- which results belong to which volume
    def resultsForVolume(self, volumeNode):
        """(segmentation, table) that AdiposeSeg made for this volume, or (None, None)."""
        segmentationNode = self.segmentationForVolume(volumeNode)
        if segmentationNode is None:
            return None, None
        return segmentationNode, segmentationNode.GetNodeReference(TABLE_REFERENCE)

    def sourceVolume(self, segmentationNode):
        return segmentationNode.GetNodeReference(SOURCE_VOLUME_REFERENCE) if segmentationNode is not None else None

    def checkBelongs(self, volumeNode, segmentationNode) -> None:
        """Refuse to pair a volume with a segmentation AdiposeSeg made for another volume."""
        if segmentationNode is None:
            raise AdiposeSegError(f"{volumeNode.GetName()} has no AdiposeSeg segmentation yet; click Segment first")
        source = self.sourceVolume(segmentationNode)
        if source is not None and source is not volumeNode:
            raise AdiposeSegError(
                f"{segmentationNode.GetName()} holds the results of {source.GetName()}, not of {volumeNode.GetName()}; "
                f"select {source.GetName()} as the input, or segment {volumeNode.GetName()} first")

    def checkTableBelongs(self, tableNode, segmentationNode) -> None:
        """Refuse a table that holds the statistics of another segmentation (None: no table given)."""
        owner = tableNode.GetNodeReference(SOURCE_SEGMENTATION_REFERENCE) if tableNode is not None else None
        if owner is not None and owner is not segmentationNode:
            raise AdiposeSegError(f"table {tableNode.GetName()} holds the statistics of {owner.GetName()}; "
                                  "leave the table empty to get the volume's own")

    # -- segment
    def processVolume(self, volumeNode, segmentationNode=None, tableNode=None, options: SegmentOptions | None = None,
                      waitForCompletion: bool = True, progress=None, replaceEdited: bool = False, l3Slice: int | None = None):
        """Segment a CT volume node. Returns (segmentation node, table node), or a SegmentJob (child
        process) when waitForCompletion is False. The scene is changed only when the run completes.

        A run on a slice range replaces only those slices of the volume's segmentation; edited
        slices in the range are replaced only with replaceEdited=True.
        """
        options = options or self.options
        existing = segmentationNode or self.segmentationForVolume(volumeNode)
        if segmentationNode is not None:
            self.checkBelongs(volumeNode, segmentationNode)
        self.checkTableBelongs(tableNode, existing)
        image = image_from_volume_node(volumeNode)
        if existing is not None and not replaceEdited:
            edited = self.editedSlices(existing, volumeNode, image)
            if options.slices is not None:
                edited = [k for k in edited if options.slices[0] <= k < options.slices[1]]
            if edited:
                raise EditedSegmentationError(
                    f"{existing.GetName()} was edited since it was computed (slices {_ranges_text(edited)}); re-running "
                    "would replace the edits (save it as ground truth first, or confirm the replacement)")

        def apply(result):
            if self.scene.GetNodeByID(volumeNode.GetID()) is not volumeNode:
                raise AdiposeSegError(f"{volumeNode.GetName()} was removed from the scene during the run; nothing was added")
            return self._apply(result, volumeNode, image, existing, tableNode)

        if waitForCompletion:
            control = RunControl(progress)
            return apply(segment_image(image, self.model(), options, control, l3_slice=l3Slice))
        runner = ChildSegmentation(image, self.model_dir, options, l3Slice, python=self.python, work_root=self.work_root)
        return SegmentJob(volumeNode, runner, apply)

    def _apply(self, result: SegmentationResult, volumeNode, image: sitk.Image, segmentationNode, tableNode):
        scene = self.scene
        labels = result.labels
        prediction_labels = labels
        processed = set(range(*result.slice_range))
        stats = result.statistics
        earlier = _processed_slices(segmentationNode, image) if segmentationNode is not None else set()
        if earlier and result.slice_range != (0, axial_count(image)):
            # a partial run: keep every other slice as it is (edited or not)
            current = self.labelImage(segmentationNode, volumeNode, image)
            labels = _replace_slices(current, labels, result.slice_range, image)
            previous = self.predictionArray(segmentationNode)
            if previous is not None and previous.shape == sitk.GetArrayViewFromImage(labels).shape:
                previous_image = sitk.GetImageFromArray(previous)
                previous_image.CopyInformation(image)
                prediction_labels = _replace_slices(previous_image, result.labels, result.slice_range, image)
            processed |= earlier
            levels = _keep_manual_l3(result.levels, levels_of(segmentationNode))
            pair = canonical_pair(labels, image)
            stats = pair.statistics(levels=slice_names(levels, axial_count(image)))
            stats.rows = [r for r in stats.rows if r["slice"] in processed]
            levels = remeasure(levels, pair, processed)
        else:
            levels = result.levels
            earlier_l3 = levels_of(segmentationNode).get("L3") if segmentationNode is not None else None
            if earlier_l3 and earlier_l3.get("source") == "manual":
                # the user's L3 stays through a re-run, measured on the new labels
                levels = remeasure(_keep_manual_l3(levels, {"L3": earlier_l3}), canonical_pair(labels, image), processed)
        if segmentationNode is None:
            segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volumeNode.GetName()} AdiposeSeg")
            segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        self._writeSegments(segmentationNode, labels, volumeNode)
        prediction = self._predictionNode(segmentationNode, volumeNode)
        slicer.util.updateVolumeFromArray(prediction, sitk.GetArrayViewFromImage(prediction_labels).copy())
        set_volume_geometry_like(prediction, volumeNode)
        segmentationNode.SetAttribute("AdiposeSeg.ModelName", result.model_info.get("name", ""))
        segmentationNode.SetAttribute("AdiposeSeg.ModelVersion", result.model_info.get("version", ""))
        segmentationNode.SetAttribute("AdiposeSeg.Device", result.device)
        segmentationNode.SetAttribute(PROCESSED_ATTRIBUTE, _ranges_text(sorted(processed)))
        segmentationNode.SetNodeReferenceID(SOURCE_VOLUME_REFERENCE, volumeNode.GetID())
        volumeNode.SetNodeReferenceID(SEGMENTATION_REFERENCE, segmentationNode.GetID())
        tableNode = self._writeTable(stats, segmentationNode, tableNode)
        self._plot(tableNode, segmentationNode)
        write_levels(scene, segmentationNode, image, levels)
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
    def updateStatistics(self, segmentationNode, volumeNode, tableNode=None, l3Slice: int | None = None):
        """Recompute the table from the (edited) segments; returns the table node."""
        self.checkBelongs(volumeNode, segmentationNode)
        self.checkTableBelongs(tableNode, segmentationNode)
        ct = image_from_volume_node(volumeNode)
        levels = levels_of(segmentationNode)
        if l3Slice is None and "L3" in levels:
            l3Slice = int(levels["L3"]["slice"])
        pair = canonical_pair(self.labelImage(segmentationNode, volumeNode, ct), ct)
        stats = pair.statistics(l3Slice, slice_names(levels, axial_count(ct)))
        processed = _processed_slices(segmentationNode, ct)
        stats.rows = _shown_rows(stats.rows, processed)
        tableNode = self._writeTable(stats, segmentationNode, tableNode or segmentationNode.GetNodeReference(TABLE_REFERENCE))
        self._plot(tableNode, segmentationNode)
        write_levels(self.scene, segmentationNode, ct, remeasure(levels, pair, processed))
        return tableNode

    # -- vertebral levels
    def levels(self, segmentationNode) -> dict:
        """The levels of a result, as in summary.json: name -> slice, range, source, confidence, indices."""
        return levels_of(segmentationNode)

    def levelsTable(self, segmentationNode):
        return segmentationNode.GetNodeReference(LEVELS_TABLE_REFERENCE) if segmentationNode is not None else None

    def levelMarks(self, segmentationNode):
        return segmentationNode.GetNodeReference(LEVEL_MARKS_REFERENCE) if segmentationNode is not None else None

    def jumpToLevel(self, volumeNode, segmentationNode=None, name: str = "L3"):
        """Centre the slice views on a level (L3 by default); returns its RAS point, None if not found."""
        segmentationNode = segmentationNode or self.segmentationForVolume(volumeNode)
        self.checkBelongs(volumeNode, segmentationNode)
        return jump_to_level(self.scene, segmentationNode, image_from_volume_node(volumeNode), name)

    def setL3(self, volumeNode, segmentationNode=None, ras=None, sliceIndex: int | None = None) -> dict:
        """Set L3 by hand at a RAS point (e.g. the red slice view's centre) or a canonical slice; the L3
        indices are recomputed on the current segments and the override is kept with the result
        (and written to the manifest by Save as ground truth). Returns the new L3 entry."""
        segmentationNode = segmentationNode or self.segmentationForVolume(volumeNode)
        self.checkBelongs(volumeNode, segmentationNode)
        ct = image_from_volume_node(volumeNode)
        count = axial_count(ct)
        k = axial_slice_at(ct, ras) if sliceIndex is None else int(sliceIndex)
        if not 0 <= k < count:
            raise AdiposeSegError(f"slice {k} is outside the CT's {count} axial slices (0..{count - 1})")
        levels = levels_of(segmentationNode)
        pair = canonical_pair(self.labelImage(segmentationNode, volumeNode, ct), ct)
        stats = pair.statistics(k, slice_names(levels, count))
        levels = manual_l3(levels, pair, k, input_axial_index(ct, k))
        stats.rows = _shown_rows(stats.rows, _processed_slices(segmentationNode, ct))
        self._writeTable(stats, segmentationNode, segmentationNode.GetNodeReference(TABLE_REFERENCE))
        write_levels(self.scene, segmentationNode, ct, levels)
        return levels["L3"]

    def _writeTable(self, stats: Statistics, segmentationNode, tableNode):
        if tableNode is None:
            tableNode = segmentationNode.GetNodeReference(TABLE_REFERENCE)
        if tableNode is None:
            tableNode = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentationNode.GetName()} areas")
        fill_table(tableNode, SLICE_COLUMNS, stats.rows)
        tableNode.SetAttribute("AdiposeSeg.Totals", ";".join(f"{k}={v:.4f}" for k, v in stats.totals.items()))
        if stats.l3_row:
            tableNode.SetAttribute("AdiposeSeg.L3", ";".join(f"{k}={v}" for k, v in stats.l3_row.items()))
        segmentationNode.SetNodeReferenceID(TABLE_REFERENCE, tableNode.GetID())
        tableNode.SetNodeReferenceID(SOURCE_SEGMENTATION_REFERENCE, segmentationNode.GetID())
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

    # -- display
    def setFalseColour(self, volumeNode, enabled: bool) -> None:
        """The seeds' view (soft tissue gray, denser tissue in blue hues by density), or back to the
        colour table and window/level the volume had before it was turned on."""
        display = volumeNode.GetDisplayNode() if volumeNode is not None else None
        if display is None:
            return
        previous = volumeNode.GetAttribute(PREVIOUS_DISPLAY_ATTRIBUTE)
        if not enabled:
            if previous:
                color_id, auto, window, level = previous.split(";")
                display.SetAndObserveColorNodeID(color_id)
                display.SetAutoWindowLevel(auto == "1")
                if auto != "1":
                    display.SetWindowLevel(float(window), float(level))
                volumeNode.RemoveAttribute(PREVIOUS_DISPLAY_ATTRIBUTE)
            return
        if not previous:
            volumeNode.SetAttribute(PREVIOUS_DISPLAY_ATTRIBUTE, "{};{};{!r};{!r}".format(
                display.GetColorNodeID() or "", int(display.GetAutoWindowLevel()), display.GetWindow(), display.GetLevel()))
        from .reporting.overlay import DENSE_HU, GRAY_WINDOW, false_colour

        colorNode = self.scene.GetFirstNodeByName(FALSE_COLOUR_NAME)
        lo, hi = GRAY_WINDOW[0], DENSE_HU[1]
        if colorNode is None:
            colorNode = self.scene.AddNewNodeByClass("vtkMRMLColorTableNode", FALSE_COLOUR_NAME)
            colorNode.SetTypeToUser()
            colorNode.SetNumberOfColors(256)
            values = np.linspace(lo, hi, 256)
            rgb = false_colour(values[None, :])[0] / 255.0
            for i, (r, g, b) in enumerate(rgb):
                colorNode.SetColor(i, f"{values[i]:.0f}", r, g, b, 1.0)
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(lo, hi)
        display.SetAndObserveColorNodeID(colorNode.GetID())

    # -- batch
    def processFiles(self, paths, outputDir, options: SegmentOptions | None = None, workers: int = 1, cancelEvent=None,
                     labelmapFormat: str | None = None):
        """Segment files from disk (one result folder each, summary.csv); bad files are reported, not fatal."""
        from .running.batch import find_inputs

        inputs = find_inputs(paths)
        return run_batch(inputs, outputDir, self.model(), options or self.options, workers=workers,
                         control=RunControl(None, cancelEvent), labelmap_format=labelmapFormat)

    # -- DICOM export
    def exportDicom(self, volumeNode, segmentationNode, sourceFiles, outputDir, caseId: str | None = None,
                    contentCreator: str = "", overwrite: bool = False) -> dict:
        """The current (edited) segmentation as DICOM SEG + SR beside the source CT (scene_dicom.py)."""
        from .scene_dicom import export_dicom

        return export_dicom(self, volumeNode, segmentationNode, sourceFiles, outputDir, caseId, contentCreator, overwrite)

    # -- ground truth
    def saveAsGroundTruth(self, volumeNode, segmentationNode, datasetDir, caseId: str | None = None, source: str = ""):
        """Write CT, edited segmentation, the unedited prediction and a manifest line into a dataset folder.

        Checked before anything is written: the segmentation belongs to this volume and lies on its
        grid. A case is written as a unit (all its files and the manifest line, or nothing), and
        nothing is ever overwritten: a case id already in use gets a numbered suffix. Returns the
        manifest row.
        """
        self.checkBelongs(volumeNode, segmentationNode)
        image = image_from_volume_node(volumeNode)
        labels_array, ignored = self.labelsFromSegmentation(segmentationNode, volumeNode)
        if labels_array.shape != sitk.GetArrayViewFromImage(image).shape:
            raise AdiposeSegError(f"{segmentationNode.GetName()} does not lie on the grid of {volumeNode.GetName()}")
        labels = sitk.GetImageFromArray(labels_array)
        labels.CopyInformation(image)
        prediction = self.predictionArray(segmentationNode)
        if prediction is not None and prediction.shape != labels_array.shape:
            prediction = None  # a prediction of another grid says nothing about this case's edits

        dataset = Path(datasetDir)
        dataset.mkdir(parents=True, exist_ok=True)
        manifest = dataset / MANIFEST
        rows = read_manifest(manifest)
        base = safe_name(caseId or volumeNode.GetName())
        used = {r["case_id"] for r in rows}
        case_id, n = base, 1
        while case_id in used or any((dataset / sub / f"{case_id}{ext}").exists()
                                     for sub, ext in (("images", ".nrrd"), ("labels", ".seg.nrrd"),
                                                      ("predictions", "_prediction.seg.nrrd"))):
            n += 1
            case_id = f"{base}_{n}"
        row = {"case_id": case_id, "image": f"images/{case_id}.nrrd", "segmentation": f"labels/{case_id}.seg.nrrd",
               "prediction": "", "source": source or volumeNode.GetName(),
               "model_version": segmentationNode.GetAttribute("AdiposeSeg.ModelVersion") or "",
               "edited": "unknown", "date": datetime.datetime.now().isoformat(timespec="seconds")}
        l3 = levels_of(segmentationNode).get("L3")
        if l3:
            row.update(l3_slice=str(l3["slice"]), l3_source=l3["source"])
        if prediction is not None:
            row["prediction"] = f"predictions/{case_id}_prediction.seg.nrrd"
            row["edited"] = "yes" if not np.array_equal(prediction, labels_array) else "no"
        with staging_folder(dataset) as staging:
            staged = {}
            with atomic_path(staging / "image.nrrd") as tmp:
                sitk.WriteImage(image, str(tmp), useCompression=True)
            staged[row["image"]] = staging / "image.nrrd"
            staged[row["segmentation"]] = write_segmentation(labels, staging / "labels.seg.nrrd")
            if prediction is not None:
                pred = sitk.GetImageFromArray(prediction)
                pred.CopyInformation(image)
                staged[row["prediction"]] = write_segmentation(pred, staging / "prediction.seg.nrrd")
            staged[MANIFEST] = write_text(staging / MANIFEST, manifest_text(rows + [row]))
            # the manifest goes last and replaces its earlier version; the case's own files never replace anything
            publish(staged, dataset, marker=MANIFEST, overwrite=False, marker_replaces=True)
        if ignored:
            row["ignored_segments"] = ignored
        return row


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
