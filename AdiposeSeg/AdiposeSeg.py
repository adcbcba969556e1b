"""AdiposeSeg: subcutaneous / visceral fat and skeletal muscle on CT, in 3D Slicer.

The Module and its Widget (thin Qt glue). The Logic (the console API), the parameter node and the
self-test live in AdiposeSegSlicer/ and are imported here, where Slicer looks for them by name; the
Logic adds what needs the Slicer application to AdiposeSegLib.scene.SceneLogic, which does the MRML
work on top of the engine.

Supported: Slicer 5.8 (Python 3.9) and later (5.10: Python 3.12); every file loads on Python 3.9.
"""
from __future__ import annotations

import logging
import os

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from AdiposeSegSlicer.logic import AdiposeSegLogic, loadTerminology
from AdiposeSegSlicer.parameters import AdiposeSegParameterNode
from AdiposeSegSlicer.review import ReviewPanel
from AdiposeSegSlicer.selftest import AdiposeSegTest

__all__ = ["AdiposeSeg", "AdiposeSegWidget", "AdiposeSegLogic", "AdiposeSegTest", "AdiposeSegParameterNode"]

SETTINGS_MODEL = "AdiposeSeg/Model"
SETTINGS_DEVICE = "AdiposeSeg/Device"
SETTINGS_DATASET = "AdiposeSeg/DatasetDir"
SETTINGS_DICOM_EXPORT = "AdiposeSeg/DicomExportDir"
DEVICES = ("auto", "cuda", "mps", "cpu")
HOMEPAGE = "https://github.com/adiposeseg/SlicerAdiposeSeg#readme"


class AdiposeSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("AdiposeSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["AdiposeSeg project (AdiposeSeg)"]
        self.parent.helpText = _(
            "Segments subcutaneous fat (SAT), visceral fat (VAT), skeletal muscle and intermuscular fat (IMAT) "
            "on abdominal CT with a neural network gated by Hounsfield windows, and reports fat and muscle "
            "area per slice. Correct the result in the Segment Editor, update the statistics, and save it as "
            "ground truth for retraining. The bundled model is for non-commercial use only: its real-CT training "
            "labels come from TotalSegmentator's tissue model, which is licensed for non-commercial use. "
            "See the <a href=\"{url}\">documentation</a>.").format(url=HOMEPAGE)
        self.parent.acknowledgementText = _("Tissue windows after Mitsiopoulos et al. 1998. Uses PyTorch, SimpleITK and numpy.")
        slicer.app.connect("startupCompleted()", loadTerminology)


class AdiposeSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._shownVolume = None
        self._job = None
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
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
        self.ui.exportDicomButton.connect("clicked(bool)", self.onExportDicom)
        self.ui.showL3Button.connect("clicked(bool)", self.onShowL3)
        self.ui.setL3Button.connect("clicked(bool)", self.onSetL3)
        self.ui.levelsTableView.setMRMLScene(slicer.mrmlScene)
        self.ui.levelsTableView.connect("clicked(QModelIndex)", self.onLevelsRowClicked)
        self.review = ReviewPanel(self.layout, self.logic, lambda: self._parameterNode.inputVolume if self._parameterNode
                                  else None, self._afterReviewChange)
        self.ui.falseColourCheckBox.connect("toggled(bool)", self.onFalseColour)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self._updateDeviceNote)
        self.ui.sliceModeComboBox.connect("currentIndexChanged(int)", self._updateSliceMode)
        self.initializeParameterNode()
        self._updateSliceMode()
        # torch is not imported here (seconds on first open, and a broken install must not empty the panel)
        self.ui.deviceNoteLabel.text = self.logic.deviceNote(self.ui.deviceComboBox.currentText, probe=False)

    def cleanup(self) -> None:
        self._stopJob()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self._stopJob()
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
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        self._shownVolume = None
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """The outputs shown are always the selected volume's own (never another volume's leftovers)."""
        p = self._parameterNode
        if p is not None and p.inputVolume is not self._shownVolume:
            self._shownVolume = p.inputVolume
            segmentationNode, tableNode = self.logic.resultsForVolume(p.inputVolume)
            if p.outputSegmentation is not segmentationNode:
                p.outputSegmentation = segmentationNode
            if p.outputTable is not tableNode:
                p.outputTable = tableNode
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
        hasResult = bool(p and p.inputVolume and self.logic.resultsForVolume(p.inputVolume)[0]) and not running
        for button in (self.ui.updateStatisticsButton, self.ui.editButton, self.ui.saveGroundTruthButton,
                       self.ui.exportDicomButton, self.ui.showL3Button, self.ui.setL3Button):
            button.enabled = hasResult

    def _sliceRange(self):
        mode = self.ui.sliceModeComboBox.currentIndex
        if mode == 1:
            return self.logic.currentRedSlice(self._parameterNode.inputVolume)
        if mode == 2:
            return (self._parameterNode.sliceStart, self._parameterNode.sliceStop + 1)
        return None

    def _stopJob(self) -> None:
        self._timer.stop()
        job, self._job = self._job, None
        if job is not None:
            job.cancel()
            job.runner.cleanup()

    # -- actions
    def onSegment(self) -> None:
        if self._job is not None:
            self._job.cancel()  # the child process ends at once; _poll reports it
            self.ui.statusLabel.text = _("Cancelling...")
            return
        p = self._parameterNode
        qt.QSettings().setValue(SETTINGS_DEVICE, self.ui.deviceComboBox.currentText)
        qt.QSettings().setValue(SETTINGS_MODEL, self.ui.modelComboBox.currentData)
        with slicer.util.tryWithErrorDisplay(_("Segmentation could not start."), waitCursor=True):
            if not self._ensureTorch():
                return
            from AdiposeSegLib.scene import EditedSegmentationError

            options = self.logic.options(p.fatMin, p.fatMax, p.muscleMin, p.muscleMax, p.minIslandMm2, p.includeImat,
                                         self._sliceRange(), self.ui.deviceComboBox.currentText, p.claimVisceralFat,
                                         p.includeArms)
            scene = self.logic.sceneLogic(self.ui.modelComboBox.currentData)
            # the volume's own results, never the parameter node's outputs of a previously selected volume
            args = dict(options=options, waitForCompletion=False, l3Slice=p.l3Slice if p.l3Slice >= 0 else None)
            try:
                self._job = scene.processVolume(p.inputVolume, **args)
            except EditedSegmentationError as exc:
                if not slicer.util.confirmYesNoDisplay(str(exc) + "\n\n" + _("Replace the edited slices?")):
                    return
                self._job = scene.processVolume(p.inputVolume, replaceEdited=True, **args)
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Segmenting...")
            self._timer.start()
            self._updateButtons()

    def _ensureTorch(self) -> bool:
        """Dialogs belong here, not in the Logic: ask before installing PyTorch."""
        if self.logic.torchAvailable():
            return True
        if not self.logic.pytorchExtensionInstalled():
            slicer.util.errorDisplay(_("AdiposeSeg needs PyTorch. Install the 'PyTorch' extension from the Extensions "
                                       "Manager, restart Slicer, and try again."))
            return False
        if not slicer.util.confirmOkCancelDisplay(_("AdiposeSeg needs PyTorch, which is not installed yet. Install it "
                                                    "now (this can take several minutes and a few GB)?")):
            return False
        return self.logic.installTorch()

    def _poll(self) -> None:
        job = self._job
        if job is None:  # the scene was closed or the module cleaned up meanwhile
            self._timer.stop()
            return
        try:
            done = job.done
            self.ui.progressBar.value = int(100 * job.fraction)
            self.ui.statusLabel.text = job.message
            if not done:
                return
            self._timer.stop()
            self._job = None
            from AdiposeSegLib.errors import Cancelled

            try:
                segmentationNode, tableNode = job.finish()
            except Cancelled:
                self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
                self.ui.progressBar.value = 0
                return
            except Exception as exc:
                logging.exception("AdiposeSeg failed")
                self.ui.statusLabel.text = _("Failed; the scene is unchanged.")
                slicer.util.errorDisplay(_("Segmentation failed: ") + str(exc))
                return
            self._shownVolume = job.volume_node
            self._parameterNode.outputSegmentation = segmentationNode
            self._parameterNode.outputTable = tableNode
            self.logic.showResults(job.volume_node, segmentationNode, tableNode, self.ui.falseColourCheckBox.checked)
            self.ui.levelsTableView.setMRMLTableNode(self.logic.levelsTable(segmentationNode))
            self.review.applyDisplay()   # the reader's opacity, fill, outline and hidden tissues
            self.ui.statusLabel.text = self.logic.summaryText(tableNode, segmentationNode)
            self._showLevelsPicture(job.volume_node, segmentationNode)
        except Exception as exc:  # never leave the button reading "Cancel"
            logging.exception("AdiposeSeg: showing the result failed")
            self.ui.statusLabel.text = _("Failed: ") + str(exc)
        finally:
            if self._job is None:
                self._timer.stop()
            self._updateButtons()

    def _showLevelsPicture(self, volumeNode, segmentationNode) -> None:
        """The levels picture under the levels table; an optional view, so a failure only clears it."""
        try:
            png = self.logic.levelsPicture(volumeNode, segmentationNode)
        except Exception:
            logging.exception("AdiposeSeg: the levels picture could not be drawn")
            png = None
        if not png:
            self.ui.levelsPictureLabel.clear()
            return
        pixmap = qt.QPixmap()
        pixmap.loadFromData(qt.QByteArray(png), "PNG")
        width = max(200, self.ui.levelsTableView.width)
        self.ui.levelsPictureLabel.setPixmap(pixmap.scaledToWidth(width, qt.Qt.SmoothTransformation))

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
            segmentationNode, tableNode = self.logic.resultsForVolume(p.inputVolume)
            tableNode = self.logic.updateStatistics(segmentationNode, p.inputVolume, tableNode,
                                                    p.l3Slice if p.l3Slice >= 0 else None)
            p.outputTable = tableNode
            self.ui.statusLabel.text = self.logic.summaryText(tableNode, segmentationNode)
            self._showLevelsPicture(p.inputVolume, segmentationNode)

    def _afterReviewChange(self) -> None:
        p = self._parameterNode
        segmentationNode, tableNode = self.logic.resultsForVolume(p.inputVolume)
        if tableNode is not None:
            self.ui.statusLabel.text = self.logic.summaryText(tableNode, segmentationNode)

    def onLevelsRowClicked(self, index) -> None:
        """A row of the levels table: the views move to that level's slice."""
        p = self._parameterNode
        segmentationNode, _table = self.logic.resultsForVolume(p.inputVolume)
        levels = self.logic.levelsTable(segmentationNode)
        if levels is None or not 0 <= index.row() < levels.GetTable().GetNumberOfRows():
            return
        with slicer.util.tryWithErrorDisplay(_("Could not move the views."), waitCursor=False):
            self.logic.jumpToSlice(p.inputVolume, levels.GetTable().GetValueByName(index.row(), "slice").ToInt())

    def onShowL3(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("L3 could not be shown."), waitCursor=True):
            segmentationNode, _table = self.logic.resultsForVolume(p.inputVolume)
            if self.logic.jumpToLevel(p.inputVolume, segmentationNode) is None:
                self.ui.statusLabel.text = _("No L3 was found on the bone; set it from the red slice.")

    def onSetL3(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("L3 could not be set."), waitCursor=True):
            segmentationNode, tableNode = self.logic.resultsForVolume(p.inputVolume)
            self.logic.setL3FromRedSlice(p.inputVolume, segmentationNode)
            self.ui.levelsTableView.setMRMLTableNode(self.logic.levelsTable(segmentationNode))
            self.review.applyDisplay()   # the reader's opacity, fill, outline and hidden tissues
            self.ui.statusLabel.text = self.logic.summaryText(tableNode, segmentationNode)
            self._showLevelsPicture(p.inputVolume, segmentationNode)

    def onEdit(self) -> None:
        p = self._parameterNode
        segmentationNode, _table = self.logic.resultsForVolume(p.inputVolume)
        self.logic.openInSegmentEditor(segmentationNode, p.inputVolume)

    def onSaveGroundTruth(self) -> None:
        p = self._parameterNode
        folder = self.ui.datasetDirButton.directory
        qt.QSettings().setValue(SETTINGS_DATASET, folder)
        with slicer.util.tryWithErrorDisplay(_("Saving as ground truth failed; nothing was written."), waitCursor=True):
            segmentationNode, _table = self.logic.resultsForVolume(p.inputVolume)
            row = self.logic.saveAsGroundTruth(p.inputVolume, segmentationNode, folder)
            self.ui.statusLabel.text = _("Saved case {case} in {folder} (edited: {edited}).").format(
                case=row["case_id"], folder=folder, edited=row["edited"])

    def onExportDicom(self) -> None:
        p = self._parameterNode
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Folder for the DICOM SEG and SR"),
                                                     slicer.util.settingsValue(SETTINGS_DICOM_EXPORT, os.path.expanduser("~")))
        if not folder:
            return
        qt.QSettings().setValue(SETTINGS_DICOM_EXPORT, folder)
        from AdiposeSegLib.errors import OutputError

        with slicer.util.tryWithErrorDisplay(_("DICOM export failed; the segmentation is unchanged."), waitCursor=True):
            segmentationNode, _table = self.logic.resultsForVolume(p.inputVolume)
            try:
                written = self.logic.exportDicom(p.inputVolume, segmentationNode, folder)
            except OutputError as exc:
                if "already exists" not in str(exc) or not slicer.util.confirmYesNoDisplay(
                        _("{error}\n\nReplace the earlier export? The new SR will name it as its predecessor.").format(error=exc)):
                    raise
                written = self.logic.exportDicom(p.inputVolume, segmentationNode, folder, overwrite=True)
            self.ui.statusLabel.text = "\n".join([_("Wrote {files}.").format(files=", ".join(sorted(written["files"].values())))]
                                                  + written["notes"])

    def onFalseColour(self, checked) -> None:
        p = self._parameterNode
        if p and p.inputVolume:
            self.logic.setFalseColour(p.inputVolume, checked)


