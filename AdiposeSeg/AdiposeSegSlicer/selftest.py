"""AdiposeSegTest: Slicer's own self-test of the module, run inside Slicer (Reload and Test, or the
extension's ctest) on Slicer's sample abdominal CT."""
from __future__ import annotations

import os
import tempfile

import vtk

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from .logic import AdiposeSegLogic


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

        self.delayDisplay("Review: patient data give SMI, the segments' display, the report")
        scene = logic.scene()
        scene.setPatient(segmentationNode, 1.75, 80.0, "M")
        l3 = scene.levelReports(segmentationNode)["L3"]
        self.assertAlmostEqual(l3["SMI_cm2_m2"], l3["SMA_cm2"] / 1.75 ** 2, places=6)
        shown = scene.setSegmentDisplay(segmentationNode, opacity=0.7, visible={"SAT": False})
        self.assertEqual((shown["opacity"], shown["visible"]["SAT"]), (0.7, False))
        written = scene.saveReport(volumeNode, segmentationNode, os.path.join(folder, "report.png"))
        self.assertTrue(all(os.path.getsize(path) > 1000 for path in written))
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
