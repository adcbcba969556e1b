"""SceneLogic with several volumes, partial re-runs, ground truth as a unit, and the child-process runner.

Each test reproduces a defect of the module as Slicer runs it (issue 8) on slicer-core's real MRML.
"""
import os
import signal
import time

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test requirements")

from scene_helpers import paint  # noqa: E402
from AdiposeSegLib.running.child_job import ChildRunError
from AdiposeSegLib.errors import AdiposeSegError, Cancelled
from AdiposeSegLib.reading.image_io import read_ct
from AdiposeSegLib.scene import EditedSegmentationError, SceneLogic, volume_node_from_image
from AdiposeSegLib.tissues import SegmentOptions


@pytest.fixture
def image(example_ct_sm):
    return read_ct(example_ct_sm)


@pytest.fixture
def two_cts(scene, image):
    """Two CTs on the same grid with different anatomy (the second is the first mirrored left-right)."""
    mirrored = sitk.GetImageFromArray(sitk.GetArrayFromImage(image)[:, :, ::-1].copy())
    mirrored.CopyInformation(image)
    return volume_node_from_image(scene, image, "CT1"), volume_node_from_image(scene, mirrored, "CT2")


def _import(scene, logic, seg_node, ct_node, labels):
    paint(scene, logic, seg_node, ct_node, labels)


def test_each_volume_keeps_its_own_segmentation_and_table(logic, two_cts, tmp_path):
    ct1, ct2 = two_cts
    seg1, table1 = logic.processVolume(ct1)
    labels1, _ = logic.labelsFromSegmentation(seg1, ct1)
    # the widget used to pass CT1's nodes back in with CT2 selected: that is refused, CT1's result untouched
    with pytest.raises(AdiposeSegError, match="holds the results of CT1"):
        logic.processVolume(ct2, segmentationNode=seg1, tableNode=table1)
    with pytest.raises(AdiposeSegError, match="statistics of CT1"):
        logic.processVolume(ct2, tableNode=table1)
    seg2, table2 = logic.processVolume(ct2)
    assert seg2 is not seg1 and table2 is not table1
    assert logic.resultsForVolume(ct1) == (seg1, table1)
    assert logic.resultsForVolume(ct2) == (seg2, table2)
    assert np.array_equal(logic.labelsFromSegmentation(seg1, ct1)[0], labels1)
    labels2, _ = logic.labelsFromSegmentation(seg2, ct2)
    assert not np.array_equal(labels2, labels1)  # different anatomy, different labels
    # statistics and ground truth refuse the wrong pair, and write nothing
    with pytest.raises(AdiposeSegError, match="holds the results of CT1"):
        logic.updateStatistics(seg1, ct2)
    with pytest.raises(AdiposeSegError, match="holds the results of CT1"):
        logic.saveAsGroundTruth(ct2, seg1, tmp_path / "gt")
    assert not (tmp_path / "gt").exists() or not any((tmp_path / "gt").rglob("*"))
    row = logic.saveAsGroundTruth(ct2, seg2, tmp_path / "gt")
    saved = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "gt" / row["segmentation"])))
    assert np.array_equal(saved, labels2)


def test_partial_rerun_replaces_only_its_slices(logic, scene, image):
    ct = volume_node_from_image(scene, image, "CT")
    seg, table = logic.processVolume(ct)
    full, _ = logic.labelsFromSegmentation(seg, ct)
    # the user edits slice 3 (outside the range about to be re-run)
    edited = full.copy()
    edited[3] = 0
    edited[3, 40:50, 40:50] = 1
    _import(scene, logic, seg, ct, edited)
    seg_again, table_again = logic.processVolume(ct, options=SegmentOptions(device="cpu", slices=(10, 13)))
    assert seg_again is seg and table_again is table
    after, _ = logic.labelsFromSegmentation(seg, ct)
    assert np.array_equal(after, edited)  # the re-run slices reproduce, every other slice (and the edit) is kept
    assert table.GetTable().GetNumberOfRows() == 30
    row3 = next(r for r in range(30) if table.GetTable().GetValueByName(r, "slice").ToInt() == 3)
    assert table.GetTable().GetValueByName(row3, "SAT_area_cm2").ToDouble() == pytest.approx(100 * 9 / 100)
    assert logic.editedSlices(seg, ct) == [3]
    # an edit inside the range is not replaced without asking
    edited[11] = 0
    _import(scene, logic, seg, ct, edited)
    with pytest.raises(EditedSegmentationError, match="slices 3,11|slices 11"):
        logic.processVolume(ct, options=SegmentOptions(device="cpu", slices=(10, 13)))
    logic.processVolume(ct, options=SegmentOptions(device="cpu", slices=(10, 13)), replaceEdited=True)
    after, _ = logic.labelsFromSegmentation(seg, ct)
    assert np.array_equal(after[11], full[11]) and np.array_equal(after[3], edited[3])
    assert logic.editedSlices(seg, ct) == [3]


def test_first_partial_run_then_another_range(logic, scene, image):
    ct = volume_node_from_image(scene, image, "CT")
    seg, table = logic.processVolume(ct, options=SegmentOptions(device="cpu", slices=(5, 7)))
    assert table.GetTable().GetNumberOfRows() == 2
    first, _ = logic.labelsFromSegmentation(seg, ct)
    logic.processVolume(ct, options=SegmentOptions(device="cpu", slices=(20, 21)))
    after, _ = logic.labelsFromSegmentation(seg, ct)
    assert np.array_equal(after[5:7], first[5:7]) and after[20].any()
    slices = [table.GetTable().GetValueByName(r, "slice").ToInt() for r in range(table.GetTable().GetNumberOfRows())]
    assert slices == [5, 6, 20]


def test_ground_truth_case_is_written_as_a_unit(logic, scene, image, tmp_path):
    ct = volume_node_from_image(scene, image, "CT")
    seg, _ = logic.processVolume(ct)
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "predictions").write_text("a file where the predictions folder should be")
    with pytest.raises(AdiposeSegError, match="nothing of this case was saved"):
        logic.saveAsGroundTruth(ct, seg, gt)
    assert sorted(p.name for p in gt.rglob("*")) == ["images", "labels", "predictions"]
    assert not any((gt / "images").iterdir()) and not any((gt / "labels").iterdir())
    assert not (gt / "manifest.csv").exists()


def test_background_run_in_a_child_process(logic, scene, image):
    ct = volume_node_from_image(scene, image, "CT")
    expected_seg, _ = logic.processVolume(ct)
    expected, _ = logic.labelsFromSegmentation(expected_seg, ct)
    scene.RemoveNode(expected_seg)
    ct2 = volume_node_from_image(scene, image, "CT again")
    job = logic.processVolume(ct2, waitForCompletion=False)
    pid = job.runner.process.pid
    assert pid != os.getpid()
    while not job.done:
        time.sleep(0.05)
    seg, table = job.finish()
    assert job.fraction == 1.0
    assert np.array_equal(logic.labelsFromSegmentation(seg, ct2)[0], expected)  # the same engine, the same labels
    assert not job.runner.folder.exists()  # the exchange folder is cleaned up


def test_cancel_after_the_child_finished_still_cancels(logic, scene, image):
    ct = volume_node_from_image(scene, image, "CT")
    before = scene.GetNumberOfNodes()
    job = logic.processVolume(ct, waitForCompletion=False)
    job.wait()
    job.cancel()  # the user clicked Cancel after the work's last step: the click wins
    with pytest.raises(Cancelled):
        job.finish()
    assert scene.GetNumberOfNodes() == before
    assert ct.GetNodeReference("AdiposeSegSegmentation") is None


def test_cancel_ends_the_child_at_once(scene, image, default_model):
    logic = SceneLogic(scene, options=SegmentOptions(device="cpu"))
    big = sitk.GetImageFromArray(np.repeat(sitk.GetArrayFromImage(image), 4, axis=0))
    big.SetSpacing(image.GetSpacing())
    ct = volume_node_from_image(scene, big, "CT")
    before = scene.GetNumberOfNodes()
    job = logic.processVolume(ct, waitForCompletion=False)
    while not job.done and job.fraction < 0.05:
        time.sleep(0.05)
    job.cancel()
    assert job.runner.process.poll() is not None  # the process has ended when cancel() returns
    with pytest.raises(Cancelled):
        job.finish()
    assert scene.GetNumberOfNodes() == before


def test_a_crashed_child_leaves_the_scene_and_says_so(logic, scene, image):
    ct = volume_node_from_image(scene, image, "CT")
    before = scene.GetNumberOfNodes()
    job = logic.processVolume(ct, waitForCompletion=False)
    os.kill(job.runner.process.pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    job.wait()
    with pytest.raises(ChildRunError, match=r"ended unexpectedly \(exit code -9\)"):
        job.finish()
    assert scene.GetNumberOfNodes() == before


def test_the_child_reports_its_own_error(scene, image, tmp_path):
    (tmp_path / "model").mkdir()
    logic = SceneLogic(scene, model_dir=str(tmp_path / "model"), options=SegmentOptions(device="cpu"))
    ct = volume_node_from_image(scene, image, "CT")
    job = logic.processVolume(ct, waitForCompletion=False)
    job.wait()
    with pytest.raises(ChildRunError, match="model.json"):
        job.finish()


def test_false_colour_off_restores_the_volume_display(logic, scene, image):
    ct = volume_node_from_image(scene, image, "CT")
    grey = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "Grey")
    display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
    display.SetAndObserveColorNodeID(grey.GetID())
    ct.SetAndObserveDisplayNodeID(display.GetID())
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(400.0, 40.0)  # the user's abdomen window
    logic.setFalseColour(ct, True)
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((-200.0, 1200.0))
    assert display.GetColorNode().GetName() == "AdiposeSeg false colour"
    logic.setFalseColour(ct, True)  # twice on, once off: still the user's settings come back
    logic.setFalseColour(ct, False)
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((400.0, 40.0))
    assert display.GetColorNodeID() == grey.GetID()
    logic.setFalseColour(ct, False)  # off when it was never on changes nothing
    assert display.GetColorNodeID() == grey.GetID()
