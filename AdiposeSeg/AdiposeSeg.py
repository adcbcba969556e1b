"""AdiposeSeg: subcutaneous / visceral fat and skeletal muscle on CT, in 3D Slicer.

Module, Widget, Logic and Test. The Widget is thin Qt glue; the Logic adds what needs the Slicer
application (settings, PyTorch install, layouts, display) to AdiposeSegLib.scene.SceneLogic, which
does the MRML work on top of the engine.
"""
import logging
import os
import tempfile
from typing import Annotated

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode

SETTINGS_MODELS = "AdiposeSeg/ModelDirs"
SETTINGS_MODEL = "AdiposeSeg/Model"
SETTINGS_DEVICE = "AdiposeSeg/Device"
SETTINGS_DATASET = "AdiposeSeg/DatasetDir"
DEVICES = ("auto", "cuda", "mps", "cpu")


class AdiposeSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("AdiposeSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["AdiposeSeg developers"]
        self.parent.helpText = _(
            "Segments subcutaneous fat (SAT), visceral fat (VAT), skeletal muscle and intermuscular fat (IMAT) "
            "on abdominal CT with a neural network gated by Hounsfield windows, and reports fat and muscle "
            "area per slice. Correct the result in the Segment Editor, update the statistics, and save it as "
            "ground truth for retraining.")
        self.parent.acknowledgementText = _("Tissue windows after Mitsiopoulos et al. 1998. Uses PyTorch, SimpleITK and numpy.")


@parameterNodeWrapper
class AdiposeSegParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode
    fatMin: Annotated[float, WithinRange(-1000, 0)] = -190.0
    fatMax: Annotated[float, WithinRange(-1000, 0)] = -30.0
    muscleMin: Annotated[float, WithinRange(-200, 300)] = -29.0
    muscleMax: Annotated[float, WithinRange(-200, 300)] = 150.0
    minIslandMm2: Annotated[float, WithinRange(0, 1000)] = 10.0
    includeImat: bool = True
    sliceStart: int = 0
    sliceStop: int = 0
    l3Slice: int = -1


class AdiposeSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self._poll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AdiposeSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AdiposeSegLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        for device in DEVICES:
            self.ui.deviceComboBox.addItem(device)
        self.ui.deviceComboBox.currentText = slicer.util.settingsValue(SETTINGS_DEVICE, "auto")
        self.ui.sliceModeComboBox.addItems([_("All slices"), _("Current slice (red view)"), _("Slice range")])
        self._fillModels()
        self.ui.datasetDirButton.directory = slicer.util.settingsValue(SETTINGS_DATASET, os.path.expanduser("~/AdiposeSegGroundTruth"))

        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.addModelButton.connect("clicked(bool)", self.onAddModel)
        self.ui.updateStatisticsButton.connect("clicked(bool)", self.onUpdateStatistics)
        self.ui.editButton.connect("clicked(bool)", self.onEdit)
        self.ui.saveGroundTruthButton.connect("clicked(bool)", self.onSaveGroundTruth)
        self.ui.falseColourCheckBox.connect("toggled(bool)", self.onFalseColour)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self._updateDeviceNote)
        self.ui.sliceModeComboBox.connect("currentIndexChanged(int)", self._updateSliceMode)
        self.initializeParameterNode()
        self._updateSliceMode()
        self._updateDeviceNote()

    def cleanup(self) -> None:
        if self._job is not None:
            self._job.cancel()
        self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        if self._job is not None:
            self._job.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

    # -- small GUI helpers
    def _fillModels(self) -> None:
        self.ui.modelComboBox.clear()
        for label, path in self.logic.availableModels():
            self.ui.modelComboBox.addItem(label, path)
        saved = slicer.util.settingsValue(SETTINGS_MODEL, "")
        index = self.ui.modelComboBox.findData(saved)
        self.ui.modelComboBox.currentIndex = max(index, 0)

    def _updateSliceMode(self, *args) -> None:
        ranged = self.ui.sliceModeComboBox.currentIndex == 2
        self.ui.sliceStartSpinBox.enabled = ranged
        self.ui.sliceStopSpinBox.enabled = ranged

    def _updateDeviceNote(self, *args) -> None:
        self.ui.deviceNoteLabel.text = self.logic.deviceNote(self.ui.deviceComboBox.currentText)

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        running = self._job is not None
        self.ui.segmentButton.enabled = bool(p and p.inputVolume) or running
        self.ui.segmentButton.text = _("Cancel") if running else _("Segment")
        hasResult = bool(p and p.inputVolume and p.outputSegmentation) and not running
        for button in (self.ui.updateStatisticsButton, self.ui.editButton, self.ui.saveGroundTruthButton):
            button.enabled = hasResult

    def _sliceRange(self):
        mode = self.ui.sliceModeComboBox.currentIndex
        if mode == 1:
            return self.logic.currentRedSlice(self._parameterNode.inputVolume)
        if mode == 2:
            return (self._parameterNode.sliceStart, self._parameterNode.sliceStop + 1)
        return None

    # -- actions
    def onSegment(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.ui.statusLabel.text = _("Cancelling...")
            return
        p = self._parameterNode
        qt.QSettings().setValue(SETTINGS_DEVICE, self.ui.deviceComboBox.currentText)
        qt.QSettings().setValue(SETTINGS_MODEL, self.ui.modelComboBox.currentData)
        with slicer.util.tryWithErrorDisplay(_("Segmentation could not start."), waitCursor=True):
            if not self.logic.ensureTorch():
                return
            from AdiposeSegLib.scene import EditedSegmentationError

            options = self.logic.options(p.fatMin, p.fatMax, p.muscleMin, p.muscleMax, p.minIslandMm2, p.includeImat,
                                         self._sliceRange(), self.ui.deviceComboBox.currentText)
            scene = self.logic.sceneLogic(self.ui.modelComboBox.currentData)
            args = dict(segmentationNode=p.outputSegmentation, tableNode=p.outputTable, options=options,
                        waitForCompletion=False, l3Slice=p.l3Slice if p.l3Slice >= 0 else None)
            try:
                self._job = scene.processVolume(p.inputVolume, **args)
            except EditedSegmentationError as exc:
                if not slicer.util.confirmYesNoDisplay(str(exc) + "\n\n" + _("Replace the edited segmentation?")):
                    return
                self._job = scene.processVolume(p.inputVolume, replaceEdited=True, **args)
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Segmenting...")
            self._timer.start()
            self._updateButtons()

    def _poll(self) -> None:
        job = self._job
        self.ui.progressBar.value = int(100 * job.fraction)
        self.ui.statusLabel.text = job.message
        if not job.done:
            return
        self._timer.stop()
        self._job = None
        from AdiposeSegLib.errors import Cancelled

        try:
            segmentationNode, tableNode = job.finish()
        except Cancelled:
            self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
            self.ui.progressBar.value = 0
        except Exception as exc:
            logging.exception("AdiposeSeg failed")
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(_("Segmentation failed: ") + str(exc))
        else:
            self._parameterNode.outputSegmentation = segmentationNode
            self._parameterNode.outputTable = tableNode
            self.logic.showResults(job.volume_node, segmentationNode, tableNode, self.ui.falseColourCheckBox.checked)
            self.ui.statusLabel.text = self.logic.summaryText(tableNode, segmentationNode)
        self._updateButtons()

    def onAddModel(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Choose a model folder (with model.json)"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("Not a usable model folder."), waitCursor=True):
            self.logic.addModel(folder)
            self._fillModels()
            self.ui.modelComboBox.currentIndex = self.ui.modelComboBox.findData(folder)

    def onUpdateStatistics(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Statistics could not be updated."), waitCursor=True):
            tableNode = self.logic.updateStatistics(p.outputSegmentation, p.inputVolume, p.outputTable,
                                                    p.l3Slice if p.l3Slice >= 0 else None)
            p.outputTable = tableNode
            self.ui.statusLabel.text = self.logic.summaryText(tableNode, p.outputSegmentation)

    def onEdit(self) -> None:
        p = self._parameterNode
        self.logic.openInSegmentEditor(p.outputSegmentation, p.inputVolume)

    def onSaveGroundTruth(self) -> None:
        p = self._parameterNode
        folder = self.ui.datasetDirButton.directory
        qt.QSettings().setValue(SETTINGS_DATASET, folder)
        with slicer.util.tryWithErrorDisplay(_("Saving as ground truth failed; nothing was overwritten."), waitCursor=True):
            row = self.logic.saveAsGroundTruth(p.inputVolume, p.outputSegmentation, folder)
            self.ui.statusLabel.text = _("Saved case {case} in {folder} (edited: {edited}).").format(
                case=row["case_id"], folder=folder, edited=row["edited"])

    def onFalseColour(self, checked) -> None:
        p = self._parameterNode
        if p and p.inputVolume:
            self.logic.setFalseColour(p.inputVolume, checked)


class AdiposeSegLogic(ScriptedLoadableModuleLogic):
    """The documented console API:

        logic = slicer.util.getModuleLogic("AdiposeSeg")
        segmentationNode, tableNode = logic.processVolume(volumeNode)            # waits
        outcomes, summaryCsv = logic.processFiles(["/data/a.nrrd", "/data/dicom1"], "/results")
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._sceneLogic = None

    def getParameterNode(self):
        return AdiposeSegParameterNode(super().getParameterNode())

    # -- dependencies
    def ensureTorch(self, askConfirmation: bool = True) -> bool:
        """PyTorch comes from the PyTorch extension; it is installed only after the user agrees."""
        try:
            import torch  # noqa: F401
            return True
        except ImportError:
            pass
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay(_("AdiposeSeg needs PyTorch. Install the 'PyTorch' extension from the Extensions Manager, restart Slicer, and try again."))
            return False
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation)
        return torch is not None

    def deviceNote(self, choice: str) -> str:
        try:
            import torch  # noqa: F401  (availability check)
        except ImportError:
            return _("PyTorch is not installed yet; it will be offered on the first run.")
        from AdiposeSegLib.device import available_devices

        found = available_devices()
        if choice not in ("auto",) and choice not in found:
            return _("{device} is not available here; available: {found}").format(device=choice, found=", ".join(found))
        if "cuda" not in found and "mps" not in found:
            return _("No usable GPU found: running on the CPU (a few seconds per 100 slices on a modern CPU).")
        return _("Available: ") + ", ".join(found)

    # -- models
    def availableModels(self):
        from AdiposeSegLib.model_card import read_card

        models = [(_("Bundled default"), "")]
        for folder in self._savedModelDirs():
            try:
                card = read_card(folder)
                models.append((f"{card.name} {card.version}", folder))
            except Exception:
                logging.warning(f"AdiposeSeg: model folder {folder} is no longer usable")
        return models

    def _savedModelDirs(self):
        value = slicer.util.settingsValue(SETTINGS_MODELS, [])
        return [value] if isinstance(value, str) else list(value or [])

    def addModel(self, folder: str) -> None:
        from AdiposeSegLib.model_card import read_card

        read_card(folder)  # raises a clear error for a folder without a usable card
        folders = self._savedModelDirs()
        if folder not in folders:
            folders.append(folder)
        qt.QSettings().setValue(SETTINGS_MODELS, folders)

    # -- the engine, through SceneLogic
    def options(self, fatMin=-190.0, fatMax=-30.0, muscleMin=-29.0, muscleMax=150.0, minIslandMm2=10.0,
                includeImat=True, slices=None, device="auto"):
        from AdiposeSegLib.tissues import HUWindows, SegmentOptions

        return SegmentOptions(windows=HUWindows(fat=(fatMin, fatMax), muscle=(muscleMin, muscleMax)),
                              min_island_mm2=minIslandMm2, include_imat=includeImat, slices=slices, device=device)

    def sceneLogic(self, modelDir: str | None = None):
        from AdiposeSegLib.scene import SceneLogic

        modelDir = modelDir or None
        if self._sceneLogic is None or self._sceneLogic.model_dir != modelDir or self._sceneLogic.scene is not slicer.mrmlScene:
            self._sceneLogic = SceneLogic(slicer.mrmlScene, model_dir=modelDir)
        return self._sceneLogic

    def processVolume(self, volumeNode, segmentationNode=None, tableNode=None, options=None, modelDir=None,
                      waitForCompletion=True, replaceEdited=False, l3Slice=None, showResult=False):
        if not self.ensureTorch():
            raise RuntimeError("PyTorch is not available")
        result = self.sceneLogic(modelDir).processVolume(volumeNode, segmentationNode, tableNode, options,
                                                          waitForCompletion=waitForCompletion,
                                                          replaceEdited=replaceEdited, l3Slice=l3Slice)
        if waitForCompletion and showResult:
            self.showResults(volumeNode, *result)
        return result

    def processFiles(self, paths, outputDir, options=None, modelDir=None, workers=1):
        if not self.ensureTorch():
            raise RuntimeError("PyTorch is not available")
        return self.sceneLogic(modelDir).processFiles(paths, outputDir, options=options, workers=workers)

    def updateStatistics(self, segmentationNode, volumeNode, tableNode=None, l3Slice=None):
        return self.sceneLogic().updateStatistics(segmentationNode, volumeNode, tableNode, l3Slice)

    def saveAsGroundTruth(self, volumeNode, segmentationNode, datasetDir, caseId=None):
        return self.sceneLogic().saveAsGroundTruth(volumeNode, segmentationNode, datasetDir, caseId)

    # -- what needs the application
    def currentRedSlice(self, volumeNode):
        """(start, stop) of the axial slice shown in the red view, in the engine's canonical order."""
        import numpy as np
        from AdiposeSegLib.orientation import to_canonical
        from AdiposeSegLib.scene import image_from_volume_node

        sliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        z = sliceNode.GetSliceToRAS().GetElement(2, 3)  # superior coordinate: the same in RAS and LPS
        canonical = to_canonical(image_from_volume_node(volumeNode))
        k = int(round((z - canonical.GetOrigin()[2]) / canonical.GetSpacing()[2]))
        k = int(np.clip(k, 0, canonical.GetSize()[2] - 1))
        return (k, k + 1)

    def showResults(self, volumeNode, segmentationNode, tableNode, falseColour=False) -> None:
        slicer.util.setSliceViewerLayers(background=volumeNode, fit=True)
        segmentationNode.GetDisplayNode().SetVisibility(True)
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(tableNode.GetID())
        from AdiposeSegLib.scene import PLOT_REFERENCE

        chart = segmentationNode.GetNodeReference(PLOT_REFERENCE)
        if chart is not None:
            slicer.app.applicationLogic().GetSelectionNode().SetActivePlotChartID(chart.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        slicer.app.applicationLogic().PropagatePlotChartSelection()
        self.setFalseColour(volumeNode, falseColour)

    def setFalseColour(self, volumeNode, enabled: bool) -> None:
        """The seeds' view: soft tissue gray, denser tissue in blue hues by density."""
        display = volumeNode.GetDisplayNode()
        if display is None:
            return
        if not enabled:
            display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
            return
        from AdiposeSegLib.overlay import DENSE_HU, GRAY_WINDOW, false_colour

        name = "AdiposeSeg false colour"
        colorNode = slicer.mrmlScene.GetFirstNodeByName(name)
        lo, hi = GRAY_WINDOW[0], DENSE_HU[1]
        if colorNode is None:
            import numpy as np

            colorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
            colorNode.SetTypeToUser()
            colorNode.SetNumberOfColors(256)
            values = np.linspace(lo, hi, 256)
            rgb = false_colour(values[None, :])[0] / 255.0
            for i, (r, g, b) in enumerate(rgb):
                colorNode.SetColor(i, f"{values[i]:.0f}", r, g, b, 1.0)
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(lo, hi)
        display.SetAndObserveColorNodeID(colorNode.GetID())

    def openInSegmentEditor(self, segmentationNode, volumeNode) -> None:
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.SegmentEditorWidget.editor
        editor.setSegmentationNode(segmentationNode)
        editor.setSourceVolumeNode(volumeNode)

    def summaryText(self, tableNode, segmentationNode) -> str:
        totals = dict(item.split("=") for item in (tableNode.GetAttribute("AdiposeSeg.Totals") or "").split(";") if "=" in item)
        parts = [f"{name} {float(totals.get(f'{name}_volume_cm3', 'nan')):.1f} cm³" for name in ("SAT", "VAT", "Muscle")]
        return _("Done: ") + ", ".join(parts) + _(" (areas per slice in the table)")


class AdiposeSegTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer on Slicer's sample abdominal CT: segment, check, edit, update, save, cancel."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_edit_save()
        self.setUp()
        self.test_cancel_leaves_scene_unchanged()

    def _sampleCT(self):
        import SampleData

        return SampleData.SampleDataLogic().downloadSample("CTAAbdomenPanoramix")

    def test_segment_edit_save(self):
        import numpy as np

        self.delayDisplay("Loading the sample abdominal CT")
        volumeNode = self._sampleCT()
        logic = AdiposeSegLogic()
        self.delayDisplay("Segmenting")
        segmentationNode, tableNode = logic.processVolume(volumeNode, showResult=True)
        segmentation = segmentationNode.GetSegmentation()
        self.assertEqual([segmentation.GetNthSegment(i).GetName() for i in range(4)], ["SAT", "VAT", "Muscle", "IMAT"])
        table = tableNode.GetTable()
        self.assertEqual(table.GetNumberOfRows(), volumeNode.GetImageData().GetDimensions()[2])
        sat = [table.GetValueByName(r, "SAT_area_cm2").ToDouble() for r in range(table.GetNumberOfRows())]
        self.assertGreater(max(sat), 10.0)  # an adult abdomen has well over 10 cm² of SAT on its fattest slice

        self.delayDisplay("Editing: erasing SAT on the slice with the most SAT")
        k = int(np.argmax(sat))
        row = next(r for r in range(table.GetNumberOfRows()) if table.GetValueByName(r, "slice").ToInt() == k)
        segmentId = segmentation.GetSegmentIdBySegmentName("SAT")
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
        mask[:] = 0
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentId, volumeNode)
        tableNode = logic.updateStatistics(segmentationNode, volumeNode, tableNode)
        self.assertEqual(tableNode.GetTable().GetValueByName(row, "SAT_area_cm2").ToDouble(), 0.0)

        self.delayDisplay("Saving as ground truth twice: nothing is overwritten")
        folder = tempfile.mkdtemp(prefix="AdiposeSegTest-")
        first = logic.saveAsGroundTruth(volumeNode, segmentationNode, folder)
        second = logic.saveAsGroundTruth(volumeNode, segmentationNode, folder)
        self.assertNotEqual(first["case_id"], second["case_id"])
        self.assertEqual(first["edited"], "yes")
        self.assertTrue(os.path.isfile(os.path.join(folder, first["prediction"])))
        self.delayDisplay("Test passed")

    def test_cancel_leaves_scene_unchanged(self):
        volumeNode = self._sampleCT()
        logic = AdiposeSegLogic()
        before = slicer.mrmlScene.GetNumberOfNodes()
        job = logic.processVolume(volumeNode, waitForCompletion=False)
        job.cancel()
        job.wait()
        from AdiposeSegLib.errors import Cancelled

        with self.assertRaises(Cancelled):
            job.finish()
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("Cancel test passed")
