"""AdiposeSeg: subcutaneous / visceral fat and skeletal muscle on CT, in 3D Slicer.

Module, Widget, Logic and Test. The Widget is thin Qt glue; the Logic adds what needs the Slicer
application (settings, PyTorch install, layouts, display) to AdiposeSegLib.scene.SceneLogic, which
does the MRML work on top of the engine.

Supported: Slicer 5.8 (Python 3.9) and later (5.10: Python 3.12); every file loads on Python 3.9.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
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
SETTINGS_DICOM_EXPORT = "AdiposeSeg/DicomExportDir"
DEVICES = ("auto", "cuda", "mps", "cpu")
HOMEPAGE = "https://github.com/adiposeseg/SlicerAdiposeSeg#readme"
TORCH_REQUIREMENT = ">=1.13"  # torch.load(weights_only=True)


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


def loadTerminology() -> None:
    """Make the segments' SNOMED codes known to Slicer's terminology picker (Slicer's lists lack some)."""
    path = os.path.join(os.path.dirname(__file__), "Resources", "SegmentationCategoryTypeModifier-AdiposeSeg.term.json")
    try:
        slicer.modules.terminologies.logic().LoadTerminologyFromFile(path)
    except Exception:  # a missing Terminologies module must not stop AdiposeSeg from loading
        logging.exception("AdiposeSeg: could not load its terminology context")


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
    claimVisceralFat: bool = True
    includeArms: bool = False
    sliceStart: Annotated[int, WithinRange(0, 10000)] = 0
    sliceStop: Annotated[int, WithinRange(0, 10000)] = 0
    l3Slice: Annotated[int, WithinRange(-1, 10000)] = -1


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

    # -- dependencies (no dialogs here: the widget asks the user)
    @staticmethod
    def torchAvailable() -> bool:
        try:
            import torch  # noqa: F401
            return True
        except (ImportError, OSError):  # OSError: a broken install (missing shared library)
            return False

    @staticmethod
    def pytorchExtensionInstalled() -> bool:
        try:
            import PyTorchUtils  # noqa: F401
            return True
        except ImportError:
            return False

    def installTorch(self) -> bool:
        """Install torch through the PyTorch extension (the caller has asked the user)."""
        import PyTorchUtils

        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
        return torch is not None

    def requireTorch(self) -> None:
        if not self.torchAvailable():
            raise RuntimeError("AdiposeSeg needs PyTorch: open the AdiposeSeg module and click Segment to install it "
                               "(or install the 'PyTorch' extension and run PyTorchUtils)")

    def deviceNote(self, choice: str, probe: bool = True) -> str:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return _("PyTorch is not installed yet; it will be offered on the first run.")
        if not probe:
            return _("Device '{device}': checked when you segment (auto: CUDA or Apple GPU if present, else CPU).").format(device=choice)
        try:
            from AdiposeSegLib.model.device import available_devices

            found = available_devices()
        except (ImportError, OSError) as exc:
            return _("PyTorch is installed but does not load ({error}); reinstall it with the PyTorch extension.").format(error=exc)
        if choice not in ("auto",) and choice not in found:
            return _("{device} is not available here; available: {found}").format(device=choice, found=", ".join(found))
        if "cuda" not in found and "mps" not in found:
            return _("No usable GPU found: running on the CPU (a few seconds per 100 slices on a modern CPU).")
        return _("Available: ") + ", ".join(found)

    # -- models
    def availableModels(self):
        from AdiposeSegLib.model.model_card import read_card

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
        from AdiposeSegLib.model.model_card import read_card

        read_card(folder)  # raises a clear error for a folder without a usable card
        folders = self._savedModelDirs()
        if folder not in folders:
            folders.append(folder)
        qt.QSettings().setValue(SETTINGS_MODELS, folders)

    # -- the engine, through SceneLogic
    def options(self, fatMin=-190.0, fatMax=-30.0, muscleMin=-29.0, muscleMax=150.0, minIslandMm2=10.0,
                includeImat=True, slices=None, device="auto", claimVisceralFat=True, includeArms=False):
        from AdiposeSegLib.tissues import HUWindows, SegmentOptions

        return SegmentOptions(windows=HUWindows(fat=(fatMin, fatMax), muscle=(muscleMin, muscleMax)),
                              min_island_mm2=minIslandMm2, include_imat=includeImat, slices=slices, device=device,
                              claim_visceral_fat=claimVisceralFat, include_arms=includeArms)

    def sceneLogic(self, modelDir: str | None = None):
        from AdiposeSegLib.scene import SceneLogic

        modelDir = modelDir or None
        if self._sceneLogic is None or self._sceneLogic.model_dir != modelDir or self._sceneLogic.scene is not slicer.mrmlScene:
            # background runs use Slicer's own Python (PythonSlicer); inside Slicer sys.executable is the application
            self._sceneLogic = SceneLogic(slicer.mrmlScene, model_dir=modelDir,
                                          python=shutil.which("PythonSlicer") or sys.executable,
                                          work_root=slicer.app.temporaryPath)
        return self._sceneLogic

    def _sceneLogicAnyModel(self):
        """The current SceneLogic, for work that needs no model (results, statistics, saving, display):
        asking for the default one would replace a SceneLogic made for the user's chosen model."""
        if self._sceneLogic is not None and self._sceneLogic.scene is slicer.mrmlScene:
            return self._sceneLogic
        return self.sceneLogic()

    def processVolume(self, volumeNode, segmentationNode=None, tableNode=None, options=None, modelDir=None,
                      waitForCompletion=True, replaceEdited=False, l3Slice=None, showResult=False):
        """Segment a volume node; returns (segmentation, table), or a job (child process) to poll."""
        self.requireTorch()
        result = self.sceneLogic(modelDir).processVolume(volumeNode, segmentationNode, tableNode, options,
                                                          waitForCompletion=waitForCompletion,
                                                          replaceEdited=replaceEdited, l3Slice=l3Slice)
        if waitForCompletion and showResult:
            self.showResults(volumeNode, *result)
        return result

    def processFiles(self, paths, outputDir, options=None, modelDir=None, workers=1):
        self.requireTorch()
        return self.sceneLogic(modelDir).processFiles(paths, outputDir, options=options, workers=workers)

    def resultsForVolume(self, volumeNode):
        if volumeNode is None:
            return None, None
        return self._sceneLogicAnyModel().resultsForVolume(volumeNode)

    def updateStatistics(self, segmentationNode, volumeNode, tableNode=None, l3Slice=None):
        return self._sceneLogicAnyModel().updateStatistics(segmentationNode, volumeNode, tableNode, l3Slice)

    def saveAsGroundTruth(self, volumeNode, segmentationNode, datasetDir, caseId=None):
        return self._sceneLogicAnyModel().saveAsGroundTruth(volumeNode, segmentationNode, datasetDir, caseId)

    def exportDicom(self, volumeNode, segmentationNode, outputDir, caseId=None, contentCreator="", overwrite=False):
        """The segmentation as it is now as DICOM SEG + SR; the CT must come from Slicer's DICOM database."""
        from AdiposeSegLib.scene.dicom_export import dicom_source_files

        sourceFiles = dicom_source_files(volumeNode, slicer.dicomDatabase.fileForInstance) if slicer.dicomDatabase else []
        return self._sceneLogicAnyModel().exportDicom(volumeNode, segmentationNode, sourceFiles, outputDir, caseId,
                                                      contentCreator, overwrite)

    def levelsTable(self, segmentationNode):
        return self._sceneLogicAnyModel().levelsTable(segmentationNode)

    def levelsPicture(self, volumeNode, segmentationNode):
        """PNG bytes of the levels picture (sagittal, coronal bone slab, L3 slice), or None."""
        return self._sceneLogicAnyModel().levelsPicture(volumeNode, segmentationNode)

    def jumpToLevel(self, volumeNode, segmentationNode=None, name="L3"):
        return self._sceneLogicAnyModel().jumpToLevel(volumeNode, segmentationNode, name)

    # -- what needs the application
    def setL3FromRedSlice(self, volumeNode, segmentationNode=None) -> dict:
        """L3 = the axial slice the red view shows (its centre point), recorded as set by hand."""
        return self._sceneLogicAnyModel().setL3(volumeNode, segmentationNode, ras=self._redSliceCentre())

    def currentRedSlice(self, volumeNode):
        """(start, stop) of the axial slice shown in the red view, in the engine's canonical order."""
        from AdiposeSegLib.scene import image_from_volume_node
        from AdiposeSegLib.scene.levels import axial_slice_at

        k = axial_slice_at(image_from_volume_node(volumeNode), self._redSliceCentre(), clip=True)
        return (k, k + 1)

    @staticmethod
    def _redSliceCentre():
        sliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        return [sliceNode.GetSliceToRAS().GetElement(i, 3) for i in range(3)]

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
        if falseColour:  # otherwise the volume keeps the colours and window the user chose
            self.setFalseColour(volumeNode, True)
        self.jumpToLevel(volumeNode, segmentationNode, "L3")  # the views open on L3 when it was found

    def setFalseColour(self, volumeNode, enabled: bool) -> None:
        self._sceneLogicAnyModel().setFalseColour(volumeNode, enabled)

    def openInSegmentEditor(self, segmentationNode, volumeNode) -> None:
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.SegmentEditorWidget.editor
        editor.setSegmentationNode(segmentationNode)
        editor.setSourceVolumeNode(volumeNode)

    def summaryText(self, tableNode, segmentationNode) -> str:
        totals = dict(item.split("=") for item in (tableNode.GetAttribute("AdiposeSeg.Totals") or "").split(";") if "=" in item)
        parts = [f"{name} {float(totals.get(f'{name}_volume_cm3', 'nan')):.1f} cm³" for name in ("SAT", "VAT", "Muscle")]
        text = _("Done: ") + ", ".join(parts) + _(" (areas per slice in the table)")
        l3 = self._sceneLogicAnyModel().levels(segmentationNode).get("L3")
        if l3 and "SMA_cm2" in l3:
            how = _("set by hand") if l3["source"] == "manual" else _("{confidence} confidence").format(confidence=l3["confidence"])
            text += "\n" + _("L3 (slice {k}, {how}): SMA {sma:.1f} cm², SAT {sat:.1f} cm², VAT {vat:.1f} cm²").format(
                k=l3["slice"], how=how, sma=l3["SMA_cm2"], sat=l3["SAT_cm2"], vat=l3["VAT_cm2"])
        elif l3:
            text += "\n" + _("L3 found with low confidence at slice {k}: check it and set it from the red slice").format(k=l3["slice"])
        return text


class AdiposeSegTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer on Slicer's sample abdominal CT: segment, check, edit, update, save, cancel."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_edit_save()
        self.setUp()
        self.test_background_run()
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
        picture = logic.levelsPicture(volumeNode, segmentationNode)   # the panel's levels picture, when a level was found
        self.assertTrue(picture is None or picture.startswith(b"\x89PNG"))

        self.delayDisplay("Editing: erasing SAT on the slice with the most SAT, and only there")
        k = int(np.argmax(sat))
        row = next(r for r in range(table.GetNumberOfRows()) if table.GetValueByName(r, "slice").ToInt() == k)
        z = table.GetValueByName(row, "z_mm").ToDouble()  # the table's z is LPS; S is the same axis in RAS
        bounds = [0.0] * 6
        volumeNode.GetRASBounds(bounds)
        rasToIjk = vtk.vtkMatrix4x4()
        volumeNode.GetRASToIJKMatrix(rasToIjk)
        ijk = rasToIjk.MultiplyPoint(((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, z, 1.0))
        kVolume = int(round(ijk[2]))
        segmentId = segmentation.GetSegmentIdBySegmentName("SAT")
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
        satBefore = int(mask.sum())
        erased = int(mask[kVolume].sum())
        self.assertGreater(erased, 0)
        mask[kVolume] = 0
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentId, volumeNode)
        tableNode = logic.updateStatistics(segmentationNode, volumeNode, tableNode)
        table = tableNode.GetTable()
        row = next(r for r in range(table.GetNumberOfRows()) if table.GetValueByName(r, "slice").ToInt() == k)
        self.assertEqual(table.GetValueByName(row, "SAT_area_cm2").ToDouble(), 0.0)
        after = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
        self.assertEqual(int(after.sum()), satBefore - erased)  # every other slice kept its SAT

        self.delayDisplay("Saving as ground truth twice: nothing is overwritten")
        folder = tempfile.mkdtemp(prefix="AdiposeSegTest-")
        first = logic.saveAsGroundTruth(volumeNode, segmentationNode, folder)
        second = logic.saveAsGroundTruth(volumeNode, segmentationNode, folder)
        self.assertNotEqual(first["case_id"], second["case_id"])
        self.assertEqual(first["edited"], "yes")
        self.assertTrue(os.path.isfile(os.path.join(folder, first["prediction"])))

        self.delayDisplay("Vertebral levels: the views jump to L3; Set L3 from the red slice overrides it")
        levels = logic._sceneLogicAnyModel().levels(segmentationNode)
        if "L3" in levels:  # found on the bone when the sample's field of view holds the last rib or the sacrum
            ras = logic.jumpToLevel(volumeNode, segmentationNode, "L3")
            red = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
            self.assertAlmostEqual(red.GetSliceToRAS().GetElement(2, 3), ras[2], places=3)
            marks = logic._sceneLogicAnyModel().levelMarks(segmentationNode)
            self.assertEqual(marks.GetNthControlPointLabel(0), "L3")
        red = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        red.JumpSliceByCentering(*[red.GetSliceToRAS().GetElement(i, 3) for i in range(3)])
        manual = logic.setL3FromRedSlice(volumeNode, segmentationNode)
        self.assertEqual(manual["source"], "manual")
        third = logic.saveAsGroundTruth(volumeNode, segmentationNode, folder)
        self.assertEqual(third["l3_source"], "manual")
        self.assertEqual(third["l3_slice"], str(manual["slice"]))
        self.delayDisplay("Test passed")

    def test_background_run(self):
        """The Segment button's path: the engine in a PythonSlicer child process, polled from the GUI thread."""
        import time

        volumeNode = self._sampleCT()
        logic = AdiposeSegLogic()
        self.delayDisplay("Segmenting in a child process")
        job = logic.processVolume(volumeNode, waitForCompletion=False)
        seen = set()
        while not job.done:
            seen.add(round(job.fraction, 1))
            slicer.app.processEvents()
            time.sleep(0.1)
        segmentationNode, tableNode = job.finish()
        self.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), 4)
        self.assertIs(logic.resultsForVolume(volumeNode)[0], segmentationNode)
        self.assertGreater(len(seen), 1)  # progress was reported while it ran
        self.delayDisplay("Background run test passed")

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
