"""AdiposeSegLogic: the module's Logic and documented console API. It adds what needs the Slicer
application (settings, the PyTorch extension, layouts, the red slice view, the DICOM database) to
AdiposeSegLib.scene.SceneLogic, which does the MRML work on top of the engine. No dialogs here."""
from __future__ import annotations

import logging
import os
import shutil
import sys

import qt

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from .parameters import AdiposeSegParameterNode

SETTINGS_MODELS = "AdiposeSeg/ModelDirs"
TORCH_REQUIREMENT = ">=1.13"  # torch.load(weights_only=True)


def loadTerminology() -> None:
    """Make the segments' SNOMED codes known to Slicer's terminology picker (Slicer's lists lack some)."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "Resources", "SegmentationCategoryTypeModifier-AdiposeSeg.term.json")
    try:
        slicer.modules.terminologies.logic().LoadTerminologyFromFile(path)
    except Exception:  # a missing Terminologies module must not stop AdiposeSeg from loading
        logging.exception("AdiposeSeg: could not load its terminology context")


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

    def scene(self):
        """The SceneLogic for work that needs no model (display, patient data, report, jumps)."""
        return self._sceneLogicAnyModel()

    def jumpToSlice(self, volumeNode, sliceIndex: int):
        return self._sceneLogicAnyModel().jumpToSlice(volumeNode, sliceIndex)

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
        from AdiposeSegLib.scene.display import totals_of

        totals = totals_of(tableNode)
        parts = [f"{name} {totals.get(f'{name}_volume_cm3', float('nan')):.1f} cm³" for name in ("SAT", "VAT", "Muscle")]
        text = _("Done: ") + ", ".join(parts) + _(" (areas per slice in the table)")
        l3 = self._sceneLogicAnyModel().levelReports(segmentationNode).get("L3")
        if l3 and "SMA_cm2" in l3:
            how = _("set by hand") if l3["source"] == "manual" else _("{confidence} confidence").format(confidence=l3["confidence"])
            text += "\n" + _("L3 (slice {k}, {how}): SMA {sma:.1f} cm², SMD {smd:.1f} HU, SAT {sat:.1f} cm², "
                             "VAT {vat:.1f} cm²").format(k=l3["slice"], how=how, sma=l3["SMA_cm2"], smd=l3["SMD_HU"],
                                                         sat=l3["SAT_cm2"], vat=l3["VAT_cm2"])
            if "SMI_cm2_m2" in l3:
                text += _(", SMI {smi:.1f} cm²/m²").format(smi=l3["SMI_cm2_m2"])
        elif l3:
            text += "\n" + _("L3 found with low confidence at slice {k}: check it and set it from the red slice").format(k=l3["slice"])
        return text
