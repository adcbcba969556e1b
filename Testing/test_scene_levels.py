"""Vertebral levels in the scene (issue 10 C) on slicer-core's real MRML: the level marks, the levels
table with L3 on top, slice views jumping to L3, "Set L3 from the red slice", and the override
kept through re-runs, statistics updates and Save as ground truth."""
import csv

import numpy as np
import pytest
import vtk

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test requirements")

from AdiposeSegLib.errors import AdiposeSegError
from AdiposeSegLib.reading.image_io import read_ct
from AdiposeSegLib.scene import volume_node_from_image
from AdiposeSegLib.tissues import SegmentOptions


def _table_column(table_node, name):
    column = table_node.GetTable().GetColumnByName(name)
    return [column.GetValue(i) for i in range(column.GetNumberOfValues())]


def _axial_view(scene, name="Red"):
    node = scene.AddNewNodeByClass("vtkMRMLSliceNode", name)
    node.SetLayoutName(name)
    node.SetOrientationToAxial()
    return node


def test_levels_marks_table_jump_and_manual_l3(logic, scene, example_ct, tmp_path):
    volume = volume_node_from_image(scene, read_ct(example_ct), "example_ct")
    segmentation, _ = logic.processVolume(volume, options=SegmentOptions(device="cpu", slices=(60, 90)))
    levels = logic.levels(segmentation)
    l3 = levels["L3"]
    assert l3["source"] == "auto" and abs(l3["slice"] - 73.8) <= 1.5 and "SMA_cm2" in l3

    marks = logic.levelMarks(segmentation)
    assert marks.GetNumberOfControlPoints() == len(levels) and marks.GetNthControlPointLabel(0) == "L3"
    position = marks.GetNthControlPointPosition(0)
    x, y, _ = l3["centre_lps_mm"]
    assert position == pytest.approx((-x, -y, l3["z_mm"]), abs=1e-3)   # LPS -> RAS, on the L3 slice
    assert marks.GetNthControlPointLocked(0)

    table = logic.levelsTable(segmentation)
    assert _table_column(table, "level")[0] == "L3" and _table_column(table, "slice")[0] == l3["slice"]
    assert _table_column(table, "SMA_cm2")[0] == pytest.approx(l3["SMA_cm2"])
    slices = _table_column(segmentation.GetNodeReference("AdiposeSegTable"), "slice")
    names = _table_column(segmentation.GetNodeReference("AdiposeSegTable"), "level")
    assert names[slices.index(l3["slice"])] == "L3"

    red = _axial_view(scene)
    ras = logic.jumpToLevel(volume, segmentation, "L3")
    matrix = red.GetSliceToRAS()
    assert [matrix.GetElement(i, 3) for i in range(3)] == pytest.approx(ras, abs=1e-3)

    # "Set L3 from the red slice": the red view now shows slice 70
    z70 = volume_node_ras_z(volume, 70)
    red.JumpSliceByCentering(0.0, 0.0, z70)
    centre = [red.GetSliceToRAS().GetElement(i, 3) for i in range(3)]
    manual = logic.setL3(volume, segmentation, ras=centre)
    assert (manual["slice"], manual["source"], manual["auto_slice"]) == (70, "manual", l3["slice"])
    assert _table_column(logic.levelsTable(segmentation), "slice")[0] == 70
    assert marks.GetNthControlPointPosition(0)[2] == pytest.approx(z70, abs=1e-3)
    assert "slice=70" in segmentation.GetNodeReference("AdiposeSegTable").GetAttribute("AdiposeSeg.L3")

    # the levels picture for the panel and the page: sagittal, coronal, L3 slice; the hand-set L3 in cyan
    import io

    import numpy as np
    from PIL import Image

    picture = np.asarray(Image.open(io.BytesIO(logic.levelsPicture(volume, segmentation))).convert("RGB"))
    assert picture.shape[0] == 480 and picture.shape[1] > 2 * 480 * 0.5
    cyan = (picture[..., 0] < 60) & (picture[..., 1] > 180) & (picture[..., 2] > 200)
    assert cyan.sum() > 20

    # kept by Update statistics and by a partial re-run; written to the ground truth's manifest
    logic.updateStatistics(segmentation, volume)
    assert logic.levels(segmentation)["L3"]["slice"] == 70
    logic.processVolume(volume, options=SegmentOptions(device="cpu", slices=(90, 95)))
    assert logic.levels(segmentation)["L3"]["source"] == "manual"
    logic.processVolume(volume, options=SegmentOptions(device="cpu"), replaceEdited=True)   # a whole re-run
    again = logic.levels(segmentation)["L3"]
    assert (again["source"], again["slice"]) == ("manual", 70) and "SMA_cm2" in again
    row = logic.saveAsGroundTruth(volume, segmentation, tmp_path / "dataset", "case")
    with open(tmp_path / "dataset" / "manifest.csv", newline="") as fh:
        saved = list(csv.DictReader(fh))[0]
    assert (row["l3_slice"], saved["l3_slice"], saved["l3_source"]) == ("70", "70", "manual")

    with pytest.raises(AdiposeSegError, match="outside the CT"):
        logic.setL3(volume, segmentation, ras=[0.0, 0.0, z70 + 10000.0])


def volume_node_ras_z(volume, k):
    """RAS z of canonical slice k of a volume node (this one runs feet to head)."""
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    return float(np.array(ijk_to_ras.MultiplyPoint((0, 0, k, 1)))[2])


def test_levels_csv_has_l3_first_with_units(logic, scene, example_ct):
    import csv as csv_module
    import io

    web_tables = pytest.importorskip("AdiposeSegWeb.tables")
    volume = volume_node_from_image(scene, read_ct(example_ct), "example_ct")
    segmentation, table = logic.processVolume(volume, options=SegmentOptions(device="cpu", slices=(60, 90)))
    rows = list(csv_module.DictReader(io.StringIO(web_tables.levels_csv(logic.levels(segmentation)))))
    assert rows[0]["level"] == "L3" and abs(float(rows[0]["slice"]) - 73.8) <= 1.5 and float(rows[0]["SMA_cm2"]) >= 0
    slices = list(csv_module.DictReader(io.StringIO(web_tables.table_csv(table))))
    assert len(slices) == table.GetTable().GetNumberOfRows() and "SAT_area_cm2" in slices[0]
