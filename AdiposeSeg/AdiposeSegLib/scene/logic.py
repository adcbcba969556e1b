"""SceneLogic: the MRML-facing logic of the AdiposeSeg module (MRML and slicer.util, never qt).

It turns volume nodes into engine images, runs the engine (in the caller's thread or a background
thread), and writes segmentation, table and plot nodes. It runs inside Slicer and, for tests, on the
`slicer-core` wheel's real MRML scene.

The methods are grouped by job: segments.py, display.py, ground_truth.py; levels.py, tables.py
and dicom_export.py hold the scene-side helpers."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

import slicer

from ..running.batch import run_batch
from ..running.child_job import ChildSegmentation
from ..errors import AdiposeSegError
from ..model.model_card import LoadedModel, load_model
from ..reading.orientation import axial_count, input_axial_index
from ..running.pipeline import SegmentationResult, canonical_pair, segment_image
from ..running.progress import RunControl
from ..tissues import SegmentOptions
from ..measuring.level_measures import slice_names
from .levels import (LEVEL_MARKS_REFERENCE, LEVELS_TABLE_REFERENCE, axial_slice_at, jump_to_level, levels_of,
                           manual_l3, remeasure, write_levels)

from .segments import SegmentsMixin
from .display import DisplayMixin
from .ground_truth import GroundTruthMixin
from .patient import NOTES_ATTRIBUTE, PatientMixin
from .jobs import SegmentJob
from .volumes import (EditedSegmentationError, PROCESSED_ATTRIBUTE, SEGMENTATION_REFERENCE, SOURCE_SEGMENTATION_REFERENCE, SOURCE_VOLUME_REFERENCE, TABLE_REFERENCE, _keep_manual_l3, _processed_slices, _ranges_text, _replace_slices, _shown_rows, ensure_segmentation_converters, image_from_volume_node, set_volume_geometry_like)


@dataclass
class SceneLogic(SegmentsMixin, DisplayMixin, GroundTruthMixin, PatientMixin):
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
        segmentationNode.SetAttribute(NOTES_ATTRIBUTE, json.dumps(list(result.statistics.notes)))
        segmentationNode.SetAttribute(PROCESSED_ATTRIBUTE, _ranges_text(sorted(processed)))
        segmentationNode.SetNodeReferenceID(SOURCE_VOLUME_REFERENCE, volumeNode.GetID())
        volumeNode.SetNodeReferenceID(SEGMENTATION_REFERENCE, segmentationNode.GetID())
        tableNode = self._writeTable(stats, segmentationNode, tableNode)
        self._plot(tableNode, segmentationNode)
        write_levels(scene, segmentationNode, image, levels)
        return segmentationNode, tableNode


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

    def levelsPicture(self, volumeNode, segmentationNode) -> bytes | None:
        """PNG of the levels picture for the segmentation as it is now (edits and a hand-set L3 included)."""
        from .levels import levels_picture_png

        self.checkBelongs(volumeNode, segmentationNode)
        return levels_picture_png(volumeNode, segmentationNode, self.labelImage(segmentationNode, volumeNode))

    def levelsTable(self, segmentationNode):
        return segmentationNode.GetNodeReference(LEVELS_TABLE_REFERENCE) if segmentationNode is not None else None

    def levelMarks(self, segmentationNode):
        return segmentationNode.GetNodeReference(LEVEL_MARKS_REFERENCE) if segmentationNode is not None else None

    def jumpToLevel(self, volumeNode, segmentationNode=None, name: str = "L3"):
        """Centre the slice views on a level (L3 by default); returns its RAS point, None if not found."""
        segmentationNode = segmentationNode or self.segmentationForVolume(volumeNode)
        self.checkBelongs(volumeNode, segmentationNode)
        return jump_to_level(self.scene, segmentationNode, image_from_volume_node(volumeNode), name)

    def jumpToSlice(self, volumeNode, sliceIndex: int):
        """Move the slice views to a canonical slice (a row of the per-slice table, counted from the
        feet): the axial view shows it, the others cross it at the volume's centre. Returns the RAS point."""
        segmentationNode, tableNode = self.resultsForVolume(volumeNode)
        self.checkBelongs(volumeNode, segmentationNode)
        table = tableNode.GetTable() if tableNode is not None else None
        z_of = {table.GetValueByName(i, "slice").ToInt(): table.GetValueByName(i, "z_mm").ToDouble()
                for i in range(table.GetNumberOfRows())} if table is not None else {}
        if int(sliceIndex) not in z_of:
            raise AdiposeSegError(f"slice {sliceIndex} is not in {volumeNode.GetName()}'s table")
        bounds = [0.0] * 6
        volumeNode.GetRASBounds(bounds)
        ras = [(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, z_of[int(sliceIndex)]]
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.scene, *ras, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        return ras

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


    # -- batch
    def processFiles(self, paths, outputDir, options: SegmentOptions | None = None, workers: int = 1, cancelEvent=None,
                     labelmapFormat: str | None = None):
        """Segment files from disk (one result folder each, summary.csv); bad files are reported, not fatal."""
        from ..running.batch import find_inputs

        inputs = find_inputs(paths)
        return run_batch(inputs, outputDir, self.model(), options or self.options, workers=workers,
                         control=RunControl(None, cancelEvent), labelmap_format=labelmapFormat)

    # -- DICOM export
    def exportDicom(self, volumeNode, segmentationNode, sourceFiles, outputDir, caseId: str | None = None,
                    contentCreator: str = "", overwrite: bool = False) -> dict:
        """The current (edited) segmentation as DICOM SEG + SR beside the source CT (dicom_export.py)."""
        from .dicom_export import export_dicom

        return export_dicom(self, volumeNode, segmentationNode, sourceFiles, outputDir, caseId, contentCreator, overwrite)

