"""SceneLogic on slicer-core's real MRML scene: segments, geometry, table, edits, ground truth, batch."""
import csv

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test requirements")

from scene_helpers import paint  # noqa: E402
from AdiposeSegLib.reading.image_io import read_ct
from AdiposeSegLib.running.pipeline import segment_image
from AdiposeSegLib.scene import EditedSegmentationError, image_from_volume_node, volume_node_from_image
from AdiposeSegLib.tissues import COLORS, LABELS, NAMES, TERMINOLOGY, SegmentOptions


@pytest.fixture
def ct_node(scene, example_ct_sm):
    image = read_ct(example_ct_sm)
    node = volume_node_from_image(scene, image, "example_ct_sm")
    return node


def test_volume_node_geometry_round_trip(ct_node, example_ct_sm):
    image = read_ct(example_ct_sm)
    back = image_from_volume_node(ct_node)
    assert back.GetSize() == image.GetSize()
    assert back.GetOrigin() == pytest.approx(image.GetOrigin(), abs=1e-6)
    assert back.GetDirection() == pytest.approx(image.GetDirection(), abs=1e-9)
    # RAS in Slicer: the NIfTI's LPS origin (177.96, -11.32, 94.30) is RAS (-177.96, 11.32, 94.30)
    assert ct_node.GetOrigin() == pytest.approx((-image.GetOrigin()[0], -image.GetOrigin()[1], image.GetOrigin()[2]), abs=1e-6)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))


def test_process_volume_segments_table_and_geometry(logic, ct_node, tiny_model, example_ct_sm):
    seg_node, table_node = logic.processVolume(ct_node)
    segmentation = seg_node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["SAT", "VAT", "Muscle", "IMAT"]
    for label in LABELS:
        segment = segmentation.GetSegment(NAMES[label])
        assert segment.GetLabelValue() == label
        assert segment.GetColor() == pytest.approx([c / 255 for c in COLORS[label]], abs=1e-6)
        tag = vtk.reference("")
        assert segment.GetTag(segment.GetTerminologyEntryTagName(), tag)
        assert "AdiposeSeg~SCT^{}^{}~SCT^{}^{}~".format(*TERMINOLOGY[label][0], *TERMINOLOGY[label][1]) in str(tag)
    # the segments, read back on the volume's grid, are exactly the engine's label map
    expected = segment_image(read_ct(example_ct_sm), tiny_model, SegmentOptions(device="cpu"))
    labels, ignored = logic.labelsFromSegmentation(seg_node, ct_node)
    assert ignored == []
    assert np.array_equal(labels, sitk.GetArrayViewFromImage(expected.labels))
    # segmentation geometry is the volume's
    geometry = seg_node.GetSegmentation().GetConversionParameter("Reference image geometry")
    assert geometry.split(";")[-7:-1] == ["0", "121", "0", "100", "0", "29"]
    # table areas are voxel counts times the pixel area
    table = table_node.GetTable()
    assert table.GetNumberOfRows() == 30
    px = 3.0 * 3.0 / 100
    for row in range(30):
        k = int(table.GetValueByName(row, "slice").ToInt())
        for label in LABELS:
            value = table.GetValueByName(row, f"{NAMES[label]}_area_cm2").ToDouble()
            assert value == pytest.approx((labels[k] == label).sum() * px)
    assert ct_node.GetNodeReference("AdiposeSegSegmentation") is seg_node
    assert not logic.isEdited(seg_node, ct_node)


def test_edit_then_update_statistics(logic, ct_node, scene):
    seg_node, table_node = logic.processVolume(ct_node)
    labels, _ = logic.labelsFromSegmentation(seg_node, ct_node)
    before = table_node.GetTable().GetValueByName(12, "Muscle_area_cm2").ToDouble()
    assert before == pytest.approx((labels[12] == 3).sum() * 0.09)
    # the user erases slice 12's muscle and paints a 6 x 10 voxel block of muscle there instead
    edited = labels.copy()
    edited[12][edited[12] == 3] = 0
    edited[12, 50:56, 20:30] = 3
    assert (labels[12] == 3).sum() != 60  # so that the table must change
    paint(scene, logic, seg_node, ct_node, edited)
    assert logic.isEdited(seg_node, ct_node)
    table_node = logic.updateStatistics(seg_node, ct_node)
    after = table_node.GetTable().GetValueByName(12, "Muscle_area_cm2").ToDouble()
    assert after == pytest.approx(60 * 0.09) and after != pytest.approx(before)
    # re-running refuses to replace the edit unless told to
    with pytest.raises(EditedSegmentationError):
        logic.processVolume(ct_node)
    logic.processVolume(ct_node, replaceEdited=True)
    assert not logic.isEdited(seg_node, ct_node)


def test_save_as_ground_truth_reads_back_and_never_overwrites(logic, ct_node, tmp_path, example_ct_sm):
    from training.dataset import load_case, read_dataset

    seg_node, _ = logic.processVolume(ct_node)
    labels, _ = logic.labelsFromSegmentation(seg_node, ct_node)
    first = logic.saveAsGroundTruth(ct_node, seg_node, tmp_path / "gt")
    second = logic.saveAsGroundTruth(ct_node, seg_node, tmp_path / "gt")
    assert first["case_id"] == "example_ct_sm" and second["case_id"] == "example_ct_sm_2"
    assert first["edited"] == "no"
    assert (tmp_path / "gt" / first["prediction"]).is_file()
    specs = read_dataset(tmp_path / "gt")
    assert [s.case_id for s in specs] == ["example_ct_sm", "example_ct_sm_2"]
    case = load_case(specs[0])
    # the dataset reader returns canonical (LPS) arrays; the NIfTI's RAS-flipped x/y come back flipped
    original = read_ct(example_ct_sm)
    assert np.array_equal(case.hu, sitk.GetArrayFromImage(sitk.DICOMOrient(original, "LPS")))
    assert np.array_equal(case.labels, labels[:, ::-1, ::-1])
    mtime = (tmp_path / "gt" / first["segmentation"]).stat().st_mtime_ns
    logic.saveAsGroundTruth(ct_node, seg_node, tmp_path / "gt", caseId="example_ct_sm")
    assert (tmp_path / "gt" / first["segmentation"]).stat().st_mtime_ns == mtime
    with open(tmp_path / "gt" / "manifest.csv") as fh:
        assert [r["case_id"] for r in csv.DictReader(fh)] == ["example_ct_sm", "example_ct_sm_2", "example_ct_sm_3"]


def test_background_run_and_cancel_leave_scene_unchanged(logic, ct_node, scene):
    nodes_before = scene.GetNumberOfNodes()
    job = logic.processVolume(ct_node, waitForCompletion=False)
    job.cancel()
    job.wait()
    with pytest.raises(Exception, match="cancelled"):
        job.finish()
    assert scene.GetNumberOfNodes() == nodes_before
    job = logic.processVolume(ct_node, waitForCompletion=False)
    job.wait()
    seg_node, table_node = job.finish()
    assert job.fraction == 1.0
    assert seg_node.GetSegmentation().GetNumberOfSegments() == 4


def test_process_files_goes_past_a_corrupt_file(logic, tmp_path, example_ct_sm):
    scans = tmp_path / "scans"
    scans.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(example_ct_sm))[:, :, :5], str(scans / "good.nrrd"))
    (scans / "bad.nii.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    outcomes, summary = logic.processFiles(str(scans), tmp_path / "out")
    status = {o.case_id: o.status for o in outcomes}
    assert status == {"bad": "failed", "good": "done"}
    assert (tmp_path / "out" / "good" / "good.seg.nrrd").is_file()
    assert "bad" in summary.read_text()
